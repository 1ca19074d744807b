import { SEED_BACKOFF, seedBackoff, type BackoffOptions, type Random } from '../backoff.js';
import { StreamhealError } from '../errors.js';

/**
 * Connection pool policy, seed section 2.2, as pure decisions over plain data: the caller
 * (a pool of connections to other gateways or to the store) describes its state and carries
 * out what comes back. Time is passed in.
 *
 * Scaling, at most one action per cool-down:
 *   grow by `scaleUpStep` (2) when the process is busy (CPU > 80 %) AND at least 90 % of the
 *   pool's connections are in use; growth takes precedence, since shrinking a busy pool helps
 *   nobody;
 *   otherwise close idle connections that have been idle longer than 5 minutes (lazy
 *   reclamation: the pool only shrinks when asked to decide, never on a timer of its own).
 * Connecting: see `nextConnectAttempt`.
 */
export interface PoolScalingOptions {
  /** Busy means CPU utilisation (0–1) above this. Seed: 80 %. */
  busyCpuAbove: number;
  /** Share of the pool's connections in use at which it is nearly full. Seed: 90 %. */
  activeShareAtLeast: number;
  /** Connections added per scale-up. Seed: 2. */
  scaleUpStep: number;
  /** Idle longer than this and a connection may be reclaimed. Seed: 5 min. */
  idleTimeoutMs: number;
  /** Minimum time between two scaling actions. Seed: 30 s. */
  cooldownMs: number;
  /** Never reclaim below this many connections. */
  minSize: number;
  /** Never grow beyond this many connections. */
  maxSize: number;
}

export const POOL_SCALING_DEFAULTS: PoolScalingOptions = {
  busyCpuAbove: 0.8,
  activeShareAtLeast: 0.9,
  scaleUpStep: 2,
  idleTimeoutMs: 5 * 60_000,
  cooldownMs: 30_000,
  minSize: 0,
  maxSize: Number.POSITIVE_INFINITY,
};

export interface IdleConnection {
  id: string;
  /** When it was last returned to the pool. */
  idleSinceMs: number;
}

export interface PoolSnapshot {
  /** Connections the pool holds (its capacity), in use or idle. */
  size: number;
  /** Connections currently lent out. */
  active: number;
  /**
   * CPU utilisation (0–1) of the process using the pool. The seed asks for *sustained* load:
   * pass a smoothed figure (an `Ewma` of samples, or a `thresholdFor` rule's verdict).
   */
  cpuUtilisation: number;
  idle: readonly IdleConnection[];
  /** When the last scaling action was carried out; absent if never. */
  lastScalingAtMs?: number;
}

export type ScalingDecision =
  | { kind: 'scaleUp'; add: number; targetSize: number }
  /** Close these idle connections, longest idle first. */
  | { kind: 'reclaim'; close: string[] }
  /** Something is due but the cool-down runs until `untilMs`; ask again then. */
  | { kind: 'coolingDown'; untilMs: number; pending: 'scaleUp' | 'reclaim' }
  | { kind: 'hold'; reason: 'steady' | 'atMaxSize' | 'atMinSize' };

/**
 * What the pool should do now. After carrying out a `scaleUp` or `reclaim`, record
 * `lastScalingAtMs = nowMs` for the next call; that is the whole of the cool-down's state.
 */
export function decideScaling(
  pool: PoolSnapshot,
  nowMs: number,
  options: Partial<PoolScalingOptions> = {},
): ScalingDecision {
  const o = { ...POOL_SCALING_DEFAULTS, ...options };
  const wanted = wantedAction(pool, nowMs, o);
  if (wanted.kind === 'hold') return wanted;
  const untilMs = (pool.lastScalingAtMs ?? Number.NEGATIVE_INFINITY) + o.cooldownMs;
  if (nowMs < untilMs) return { kind: 'coolingDown', untilMs, pending: wanted.kind };
  return wanted;
}

function wantedAction(
  pool: PoolSnapshot,
  nowMs: number,
  o: PoolScalingOptions,
): Exclude<ScalingDecision, { kind: 'coolingDown' }> {
  const busy = pool.cpuUtilisation > o.busyCpuAbove;
  const nearlyFull = pool.active >= o.activeShareAtLeast * pool.size;
  if (busy && nearlyFull) {
    const add = Math.min(o.scaleUpStep, o.maxSize - pool.size);
    if (add <= 0) return { kind: 'hold', reason: 'atMaxSize' };
    return { kind: 'scaleUp', add, targetSize: pool.size + add };
  }
  const expired = pool.idle
    .filter((connection) => nowMs - connection.idleSinceMs > o.idleTimeoutMs)
    .sort((a, b) => a.idleSinceMs - b.idleSinceMs);
  if (expired.length === 0) return { kind: 'hold', reason: 'steady' };
  const closable = Math.min(expired.length, pool.size - o.minSize);
  if (closable <= 0) return { kind: 'hold', reason: 'atMinSize' };
  return { kind: 'reclaim', close: expired.slice(0, closable).map((connection) => connection.id) };
}

// ---------------------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------------------

export interface ConnectRetryOptions {
  /** Attempts in all, the first included; after the last one fails, give up. Seed: 5. */
  maxAttempts: number;
  /**
   * From this many consecutive failures on, wait `seedBackoff` before the next attempt; below
   * it, try a fresh connection at once. Seed (2.2 flow chart): 3 — one or two failures are
   * usually a stale pooled socket, and a new one fixes it without waiting. Set 1 to back
   * off before every retry.
   */
  backoffAfterFailures: number;
  backoff: BackoffOptions;
}

export const CONNECT_RETRY_DEFAULTS: ConnectRetryOptions = {
  maxAttempts: 5,
  backoffAfterFailures: 3,
  backoff: SEED_BACKOFF,
};

/** Every attempt to open a pool connection failed. */
export class PoolConnectError extends StreamhealError {
  constructor(
    readonly attempts: number,
    options?: ErrorOptions,
  ) {
    super('pool_connect_failed', `could not connect after ${attempts} attempts`, options);
  }
}

export type ConnectRetryDecision =
  /** Make attempt number `attempt` (1-based) after `delayMs`. */
  { kind: 'retry'; attempt: number; delayMs: number } | { kind: 'giveUp'; error: PoolConnectError };

/**
 * What to do after `failures` consecutive failed attempts (≥ 1). With the defaults: retry at
 * once twice, then after seedBackoff(0) ≈ 0.5–0.65 s and seedBackoff(1) ≈ 1–1.3 s, and after
 * the fifth failure give up with a `PoolConnectError` (its `cause` is `lastError`).
 */
export function nextConnectAttempt(
  failures: number,
  options: Partial<ConnectRetryOptions> = {},
  lastError?: unknown,
  random: Random = Math.random,
): ConnectRetryDecision {
  const o = { ...CONNECT_RETRY_DEFAULTS, ...options };
  if (failures >= o.maxAttempts) {
    return {
      kind: 'giveUp',
      error: new PoolConnectError(
        failures,
        lastError === undefined ? undefined : { cause: lastError },
      ),
    };
  }
  const backoffAttempt = failures - o.backoffAfterFailures;
  const delayMs = backoffAttempt < 0 ? 0 : seedBackoff(backoffAttempt, o.backoff, random);
  return { kind: 'retry', attempt: failures + 1, delayMs };
}
