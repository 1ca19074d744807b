/**
 * Reconnect backoff, exactly as the seed's section 2.2 defines it:
 *   delay = max(min(base * 2^attempt, cap) * (1 + U[0, jitter)), floor)
 * with base 0.5 s, cap 60 s, jitter 0.3, floor 100 ms; `attempt` counts from 0.
 * Full and decorrelated jitter (AWS Architecture Blog, "Exponential Backoff And Jitter") are
 * offered for pools where many peers retry the same target.
 */
export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  jitter: number;
  floorMs: number;
}

export const SEED_BACKOFF: BackoffOptions = {
  baseMs: 500,
  capMs: 60_000,
  jitter: 0.3,
  floorMs: 100,
};

export type Random = () => number;

/** min(base * 2^attempt, cap): the envelope both jittered schedules start from. */
function capped(attempt: number, options: BackoffOptions): number {
  return Math.min(options.baseMs * 2 ** Math.max(0, attempt), options.capMs);
}

export function seedBackoff(
  attempt: number,
  options = SEED_BACKOFF,
  random: Random = Math.random,
): number {
  return Math.max(capped(attempt, options) * (1 + random() * options.jitter), options.floorMs);
}

/** Full jitter: U[0, min(cap, base * 2^attempt)), never below the floor. */
export function fullJitterBackoff(
  attempt: number,
  options = SEED_BACKOFF,
  random: Random = Math.random,
): number {
  return Math.max(random() * capped(attempt, options), options.floorMs);
}

/** Decorrelated jitter: min(cap, U[base, previous * 3)); pass the previous delay (base at first). */
export function decorrelatedJitterBackoff(
  previousMs: number,
  options = SEED_BACKOFF,
  random: Random = Math.random,
): number {
  const upper = Math.max(options.baseMs, previousMs * 3);
  const delay = options.baseMs + random() * (upper - options.baseMs);
  return Math.max(Math.min(delay, options.capMs), options.floorMs);
}
