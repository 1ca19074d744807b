/**
 * At most one completed run per event id, over any StateStore (the same idea as Powertools
 * idempotency, without tying it to DynamoDB): a claim `decisions/<eventId>` written only if
 * absent (`ifVersion: 0`) with a TTL, marked completed with the run's result when it ends.
 *
 *   absent                    → claim (in progress), run, mark completed
 *   completed                 → duplicate: not run again; the stored result is returned
 *   in progress, not expired  → InProgressError (another invocation runs it now; Lambda retries)
 *   in progress, expired      → the earlier run died: taken over (conditional on its version)
 *   the run throws            → the claim is released so a redelivery runs it again
 */
import { errorCode, StreamhealError } from '../errors.js';
import type { StateStore } from '../store/StateStore.js';
import { DECISION_PREFIX } from './types.js';

export interface IdempotencyOptions {
  /** How long a completed claim is kept (duplicates later than this run again). @default 3_600_000 */
  ttlMs: number;
  /** How long a claim in progress is respected before it is taken over. @default 60_000 */
  inProgressMs: number;
  now: () => number;
}

export const DEFAULT_IDEMPOTENCY: IdempotencyOptions = {
  ttlMs: 3_600_000,
  inProgressMs: 60_000,
  now: Date.now,
};

interface Claim<T> {
  status: 'in_progress' | 'completed';
  function: string;
  claimedAt: number;
  /** In progress: when the claim may be taken over. */
  expiresAt?: number;
  result?: T;
}

/** The event is being handled by another invocation right now. */
export class InProgressError extends StreamhealError {
  constructor(eventId: string) {
    super('in_progress', `event ${eventId} is being handled by another invocation`);
  }
}

export type OnceResult<T> = { duplicate: false; result: T } | { duplicate: true; result?: T };

export async function runOnce<T>(
  store: StateStore,
  eventId: string,
  functionName: string,
  run: () => Promise<T>,
  options: Partial<IdempotencyOptions> = {},
): Promise<OnceResult<T>> {
  const { ttlMs, inProgressMs, now } = { ...DEFAULT_IDEMPOTENCY, ...options };
  const key = DECISION_PREFIX + eventId;
  const claim = (): Claim<T> => {
    const at = now();
    return {
      status: 'in_progress',
      function: functionName,
      claimedAt: at,
      expiresAt: at + inProgressMs,
    };
  };
  let version: number;
  try {
    version = await store.put(key, claim(), { ifVersion: 0, ttlMs });
  } catch (error) {
    if (errorCode(error) !== 'condition_failed') throw error;
    const existing = await store.get<Claim<T>>(key);
    if (existing === undefined) {
      // Expired between the two calls: claim again (a lost race here is an in-progress run).
      try {
        version = await store.put(key, claim(), { ifVersion: 0, ttlMs });
      } catch (again) {
        if (errorCode(again) === 'condition_failed') throw new InProgressError(eventId);
        throw again;
      }
    } else if (existing.value.status === 'completed') {
      return { duplicate: true, result: existing.value.result };
    } else if ((existing.value.expiresAt ?? 0) > now()) {
      throw new InProgressError(eventId);
    } else {
      try {
        version = await store.put(key, claim(), { ifVersion: existing.version, ttlMs });
      } catch (again) {
        if (errorCode(again) === 'condition_failed') throw new InProgressError(eventId);
        throw again;
      }
    }
  }
  let result: T;
  try {
    result = await run();
  } catch (error) {
    await store.delete(key, { ifVersion: version }).catch(() => undefined);
    throw error;
  }
  const completed: Claim<T> = {
    status: 'completed',
    function: functionName,
    claimedAt: now(),
    ...(result === undefined ? {} : { result }),
  };
  // Lost only if the claim was taken over meanwhile; the run is done either way.
  await store.put(key, completed, { ifVersion: version, ttlMs }).catch((error: unknown) => {
    if (errorCode(error) !== 'condition_failed') throw error;
  });
  return { duplicate: false, result };
}
