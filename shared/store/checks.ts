/**
 * Argument checks every StateStore adapter makes, in one place so that each adapter refuses the
 * same bad input with the same StreamhealError('invalid_argument'), whatever it runs on.
 */
import { StreamhealError } from '../errors.js';

/** `maxBytes`: a backend's own limit on names (UTF-8 bytes), where it has one. */
export function checkChannel(channel: string, maxBytes?: number): void {
  if (typeof channel !== 'string' || channel.length === 0) {
    throw new StreamhealError('invalid_argument', 'channel must be a non-empty string');
  }
  if (maxBytes !== undefined && Buffer.byteLength(channel) > maxBytes) {
    throw new StreamhealError('invalid_argument', `channel names are limited to ${maxBytes} bytes`);
  }
}

/** `maxBytes`: a backend's own limit on keys (UTF-8 bytes), where it has one. */
export function checkKey(key: string, maxBytes?: number): void {
  if (typeof key !== 'string' || key.length === 0) {
    throw new StreamhealError('invalid_argument', 'key must be a non-empty string');
  }
  if (maxBytes !== undefined && Buffer.byteLength(key) > maxBytes) {
    throw new StreamhealError('invalid_argument', `keys are limited to ${maxBytes} bytes`);
  }
}

export function checkPosition(position: number): void {
  if (!Number.isSafeInteger(position) || position < 0) {
    throw new StreamhealError('invalid_argument', 'position must be a whole number >= 0');
  }
}

/** The `limit` of a read: how many messages at most. */
export function checkLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 0) {
    throw new StreamhealError('invalid_argument', 'limit must be a whole number >= 0');
  }
}

/** Durations and sizes that must be above zero; returns `value` so options can be checked inline. */
export function checkPositive(value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new StreamhealError('invalid_argument', `${name} must be a positive number`);
  }
  return value;
}
