/**
 * What DynamoStore hands each of its parts (DynamoChannelLog, DynamoRecords): the same caller
 * (deadline, retries), clock and error sinks, and one list of best-effort writes so that
 * close() can wait for both parts' writes at once. Also the JSON encoding both use for the
 * values they store.
 */
import { StreamhealError } from '../../errors.js';
import type { DynamoCaller } from './client.js';

export interface StorePartOptions {
  caller: DynamoCaller;
  now: () => number;
  onListenerError: (error: unknown) => void;
  /** A watch poll failed; `polled` names what (a channel, a record prefix). */
  onPollError: (polled: string, error: unknown) => void;
  /** Tracks best-effort writes, so close() can wait for them. */
  background: (task: Promise<unknown>) => void;
}

/** A value as the JSON text an attribute holds; `what` names it in the invalid_argument error. */
export function encodeJson(value: unknown, what: string): string {
  let encoded: string | undefined;
  try {
    encoded = JSON.stringify(value);
  } catch (error) {
    throw new StreamhealError('invalid_argument', `${what} is not JSON: ${String(error)}`, {
      cause: error,
    });
  }
  if (encoded === undefined) {
    throw new StreamhealError('invalid_argument', `${what} is not JSON (${typeof value})`);
  }
  return encoded;
}
