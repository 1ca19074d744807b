/**
 * Building and checking bus events. Every adapter checks envelopes with `validateEvent`, so a
 * malformed event fails the same way on the in-process router and on the network.
 */
import { randomUUID } from 'node:crypto';
import { StreamhealError } from '../errors.js';
import type { BusEvent } from './EventBus.js';

/** The `source` of every event streamheal publishes; rules and subscriptions match on these. */
export const Sources = {
  gateway: 'streamheal.gateway',
  control: 'streamheal.control',
} as const;

export type Source = (typeof Sources)[keyof typeof Sources];

export function makeEvent<D extends object>(
  source: string,
  detailType: string,
  detail: D,
  resources?: string[],
): BusEvent<D> {
  return {
    id: randomUUID(),
    source,
    'detail-type': detailType,
    time: new Date().toISOString(),
    detail,
    ...(resources === undefined ? {} : { resources }),
  };
}

export class InvalidEventError extends StreamhealError {
  constructor(message: string) {
    super('invalid_event', message);
  }
}

/** Throws an InvalidEventError naming the first bad field; `label` says which event it was. */
export function validateEvent(event: unknown, label = 'event'): asserts event is BusEvent {
  const problem = envelopeProblem(event);
  if (problem !== undefined) throw new InvalidEventError(`${label}: ${problem}`);
}

function envelopeProblem(event: unknown): string | undefined {
  if (!isRecord(event)) return 'must be an object';
  for (const field of ['id', 'source', 'detail-type'] as const) {
    if (typeof event[field] !== 'string' || event[field] === '') {
      return `"${field}" must be a non-empty string`;
    }
  }
  if (typeof event.time !== 'string' || Number.isNaN(Date.parse(event.time))) {
    return '"time" must be an ISO-8601 timestamp';
  }
  if (!isRecord(event.detail)) return '"detail" must be an object';
  const { resources } = event;
  if (resources !== undefined) {
    if (!Array.isArray(resources) || !resources.every((resource) => typeof resource === 'string')) {
      return '"resources" must be an array of strings';
    }
  }
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
