/**
 * A pool of multiplexed connections (several requests in flight on each) that grows and
 * shrinks by the seed's policy (section 2.2, decided in scaling.ts) and opens connections with
 * the seed's retries and backoff (`nextConnectAttempt`). What a connection is belongs to the
 * caller: `connect` opens one, `disconnect` closes one.
 *
 * - Load. The caller brackets every request with `begin(member)` / `end(member)`; a member's
 *   in-flight count against the per-connection `capacity` is how busy it is. For the policy a
 *   connection's worth of requests in flight (`capacity` of them) counts as one connection in
 *   use, so "at least 90 % of the connections in use" reads "requests in flight ≥ 90 % of
 *   size × capacity". Capacity is a measure, not a cap: `pick()` still lends the least busy
 *   connection when all are full.
 * - Long-lived use. `pin(member)` marks a connection that carries something that must stay on
 *   it (a watch); a pinned connection is never idle, so never reclaimed.
 * - When the policy is asked. Every `evaluateEveryMs` (default 1 s), and once more between two
 *   ticks when requests in flight cross the nearly-full line, so growth does not wait for the
 *   tick. Idle connections are reclaimed only when the policy is asked (lazy reclamation).
 * - Connecting. Each connection is opened by a series of attempts: a fresh attempt at once
 *   after one or two failures, then with seedBackoff, and after `maxAttempts` (5) failures the
 *   series gives up with a `PoolConnectError` (its `cause` is the last failure), reported by a
 *   `connectFailed` event; `ready()` then rejects with it while no connection is open. A growth
 *   series ends there. The floor (`minSize`) series, with `recover` (the default), keeps trying
 *   at the backoff's pace (doubling to its 60 s cap), because a pool that stops for good can
 *   never heal; without `recover` it stops until something else (a lost connection) starts a
 *   new series.
 * - Time. `clock` (default `Date.now`) stamps idleness and the cool-down, so tests can move it.
 *   Backoff delays and the evaluation tick are real timers.
 * - Closing. `close()` (or aborting `signal`) stops every timer, aborts connections still being
 *   opened, removes the listener on `signal` and disconnects every connection.
 */
import { seedBackoff, type Random } from '../backoff.js';
import { StreamhealError } from '../errors.js';
import { EWMA_ALPHA, Ewma } from '../health/score.js';
import {
  CONNECT_RETRY_DEFAULTS,
  POOL_SCALING_DEFAULTS,
  type PoolConnectError,
  decideScaling,
  nextConnectAttempt,
  type ConnectRetryOptions,
  type PoolScalingOptions,
  type ScalingDecision,
} from './scaling.js';

export interface PoolClock {
  now(): number;
}

export const systemClock: PoolClock = { now: () => Date.now() };

/** Given to `connect` for one attempt. */
export interface ConnectContext {
  /** Aborted when the pool closes meanwhile: close whatever is half open and reject. */
  readonly signal: AbortSignal;
  /** 1-based attempt number within its series. */
  readonly attempt: number;
  /** Call once when the connection breaks after it opened (not for a failed attempt). */
  lost(error?: Error): void;
}

export interface PoolMember<C> {
  /** Unique in this pool, e.g. "c3". */
  readonly id: string;
  readonly connection: C;
  /** Requests between `begin` and `end`. */
  readonly inFlight: number;
  /** Long-lived users (`pin`). */
  readonly pins: number;
  readonly openedAtMs: number;
  /** When it last had nothing in flight and nothing pinned (meaningful only when idle). */
  readonly idleSinceMs: number;
}

export type PoolState =
  /** Nothing open yet and no attempt has failed. */
  | 'connecting'
  | 'open'
  /** Nothing open; trying. */
  | 'down'
  /** Nothing open and the floor series gave up (reported); with `recover` still trying. */
  | 'failed'
  | 'closed';

export type PoolEvent<C> =
  | { type: 'opened'; member: PoolMember<C>; size: number }
  | { type: 'lost'; member: PoolMember<C>; size: number; error?: Error }
  /** One attempt failed; `retryInMs` is undefined when the series gave up on it. */
  | { type: 'attemptFailed'; attempt: number; error: unknown; retryInMs?: number }
  | { type: 'connectFailed'; error: PoolConnectError; growth: boolean }
  | { type: 'scaleUp'; add: number; targetSize: number; inFlight: number; cpu: number }
  | { type: 'reclaim'; closed: string[]; size: number }
  | { type: 'state'; state: PoolState };

export interface PoolStats {
  state: PoolState;
  /** Connections open or being opened (the policy's size). */
  size: number;
  open: number;
  opening: number;
  /** Requests in flight over all connections (busy). */
  inFlight: number;
  /** Per-connection capacity. */
  capacity: number;
  /** inFlight / (open × capacity); 0 with nothing open. */
  busyShare: number;
  /** Pins over all connections. */
  pinned: number;
  /** Last CPU reading given to the policy (0–1 of one core). */
  cpu: number;
  /** Counters since the pool was made. */
  scaleUps: number;
  reclaimed: number;
  lost: number;
  connectFailures: number;
  members: Array<{ id: string; inFlight: number; pins: number }>;
}

export type PoolScalingOverrides = Partial<Omit<PoolScalingOptions, 'minSize' | 'maxSize'>>;

export interface ConnectionPoolOptions<C> {
  connect(context: ConnectContext): Promise<C>;
  disconnect(connection: C): void | Promise<void>;
  /** Requests in flight on one connection that count as full use. Default 128. */
  capacity?: number;
  /** Connections kept open (and reopened when lost). Default 1. */
  minSize?: number;
  /** Never more than this many connections. Default 8. */
  maxSize?: number;
  /** The seed's triggers; override for tests only. */
  scaling?: PoolScalingOverrides;
  connectRetry?: Partial<ConnectRetryOptions>;
  /** Keep retrying the floor after reporting a give-up. Default true. */
  recover?: boolean;
  /** CPU utilisation (0–1), sustained. Default: this process, see `processCpuReading`. */
  cpu?: () => number;
  clock?: PoolClock;
  /** Ask the policy this often. Default 1000 ms. */
  evaluateEveryMs?: number;
  random?: Random;
  /** Aborting it closes the pool. */
  signal?: AbortSignal;
  /** Metrics and logs; called synchronously, must not throw (errors are swallowed). */
  onEvent?(event: PoolEvent<C>): void;
}

export const DEFAULT_CAPACITY = 128;

/** `close()` was called: nothing more will open. */
export class PoolClosedError extends StreamhealError {
  constructor() {
    super('pool_closed', 'the connection pool is closed');
  }
}

interface Member<C> extends PoolMember<C> {
  inFlight: number;
  pins: number;
  idleSinceMs: number;
  removed: boolean;
}

interface Series {
  readonly growth: boolean;
  readonly controller: AbortController;
  failures: number;
  gaveUp: boolean;
  timer?: NodeJS.Timeout;
}

export class ConnectionPool<C> {
  private readonly options: ConnectionPoolOptions<C>;
  private readonly capacity: number;
  private readonly minSize: number;
  private readonly maxSize: number;
  private readonly scaling: Partial<PoolScalingOptions>;
  private readonly activeShareAtLeast: number;
  private readonly retry: ConnectRetryOptions;
  private readonly recover: boolean;
  private readonly cpu: () => number;
  private readonly clock: PoolClock;
  private readonly random: Random;
  private readonly lifetime = new AbortController();
  /** Open connections, oldest first. */
  private readonly open: Member<C>[] = [];
  private readonly opening = new Set<Series>();
  private readonly disconnecting = new Set<Promise<void>>();
  private readonly waiters = new Set<{ resolve(): void; reject(error: Error): void }>();
  private readonly tick: NodeJS.Timeout;
  private poolState: PoolState = 'connecting';
  private inFlightTotal = 0;
  private lastScalingAtMs: number | undefined;
  private askedSinceTick = false;
  private lastCpu = 0;
  private lastFailure: PoolConnectError | undefined;
  private nextMemberId = 1;
  private counters = { scaleUps: 0, reclaimed: 0, lost: 0, connectFailures: 0 };

  constructor(options: ConnectionPoolOptions<C>) {
    this.options = options;
    this.capacity = options.capacity ?? DEFAULT_CAPACITY;
    this.minSize = options.minSize ?? 1;
    this.maxSize = options.maxSize ?? 8;
    if (!(this.capacity >= 1)) throw new RangeError('capacity must be at least 1');
    if (!(this.minSize >= 0 && this.maxSize >= Math.max(1, this.minSize))) {
      throw new RangeError('need 0 <= minSize <= maxSize and maxSize >= 1');
    }
    this.scaling = { ...options.scaling, minSize: this.minSize, maxSize: this.maxSize };
    this.activeShareAtLeast =
      options.scaling?.activeShareAtLeast ?? POOL_SCALING_DEFAULTS.activeShareAtLeast;
    this.retry = { ...CONNECT_RETRY_DEFAULTS, ...options.connectRetry };
    this.recover = options.recover ?? true;
    this.cpu = options.cpu ?? processCpuReading();
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.tick = setInterval(() => {
      this.askedSinceTick = false;
      this.evaluate();
    }, options.evaluateEveryMs ?? 1_000);
    this.tick.unref();
    const external = options.signal;
    if (external?.aborted) {
      void this.close();
      return;
    }
    external?.addEventListener('abort', () => void this.close(), {
      once: true,
      signal: this.lifetime.signal,
    });
    this.ensureFloor();
  }

  get state(): PoolState {
    return this.poolState;
  }

  /** Open connections, oldest first. */
  get members(): readonly PoolMember<C>[] {
    return this.open;
  }

  /** The last give-up, until a connection opens again. */
  get lastError(): PoolConnectError | undefined {
    return this.lastFailure;
  }

  /** The open connection with the fewest requests in flight (the oldest among equals). */
  pick(): PoolMember<C> | undefined {
    let best: Member<C> | undefined;
    for (const member of this.open) {
      if (best === undefined || member.inFlight < best.inFlight) best = member;
      if (best.inFlight === 0) break;
    }
    return best;
  }

  /** The oldest open connection: the steadiest place for things that must stay put. */
  oldest(): PoolMember<C> | undefined {
    return this.open[0];
  }

  begin(member: PoolMember<C>): void {
    const m = member as Member<C>;
    m.inFlight++;
    this.inFlightTotal++;
    if (
      !this.askedSinceTick &&
      this.inFlightTotal >= this.activeShareAtLeast * this.size * this.capacity
    ) {
      this.askedSinceTick = true;
      this.evaluate();
    }
  }

  end(member: PoolMember<C>): void {
    const m = member as Member<C>;
    if (m.inFlight === 0) return;
    m.inFlight--;
    this.inFlightTotal--;
    this.touch(m);
  }

  pin(member: PoolMember<C>): void {
    (member as Member<C>).pins++;
  }

  unpin(member: PoolMember<C>): void {
    const m = member as Member<C>;
    if (m.pins === 0) return;
    m.pins--;
    this.touch(m);
  }

  isOpen(member: PoolMember<C>): boolean {
    return !(member as Member<C>).removed;
  }

  /** Resolves once a connection is open; rejects with the give-up while failed, or on close. */
  ready(): Promise<void> {
    if (this.poolState === 'open') return Promise.resolve();
    if (this.poolState === 'closed') return Promise.reject(new PoolClosedError());
    if (this.poolState === 'failed' && this.lastFailure !== undefined) {
      return Promise.reject(this.lastFailure);
    }
    return new Promise((resolve, reject) => this.waiters.add({ resolve, reject }));
  }

  stats(): PoolStats {
    const open = this.open.length;
    let pinned = 0;
    for (const member of this.open) pinned += member.pins;
    return {
      state: this.poolState,
      size: this.size,
      open,
      opening: this.opening.size,
      inFlight: this.inFlightTotal,
      capacity: this.capacity,
      busyShare: open === 0 ? 0 : this.inFlightTotal / (open * this.capacity),
      pinned,
      cpu: this.lastCpu,
      ...this.counters,
      members: this.open.map((m) => ({ id: m.id, inFlight: m.inFlight, pins: m.pins })),
    };
  }

  /** Asks the policy now and carries out its answer (the tick does this by itself). */
  evaluate(): ScalingDecision {
    if (this.poolState === 'closed') return { kind: 'hold', reason: 'steady' };
    const now = this.clock.now();
    this.lastCpu = this.cpu();
    const size = this.size;
    const idle = this.open
      .filter((m) => m.inFlight === 0 && m.pins === 0)
      .map((m) => ({ id: m.id, idleSinceMs: m.idleSinceMs }));
    const decision = decideScaling(
      {
        size,
        // A connection's worth of requests in flight is one connection in use.
        active: Math.min(size, this.inFlightTotal / this.capacity),
        cpuUtilisation: this.lastCpu,
        idle,
        lastScalingAtMs: this.lastScalingAtMs,
      },
      now,
      this.scaling,
    );
    if (decision.kind === 'scaleUp') {
      this.lastScalingAtMs = now;
      this.counters.scaleUps++;
      for (let i = 0; i < decision.add; i++) this.startSeries(true);
      this.emit({
        type: 'scaleUp',
        add: decision.add,
        targetSize: decision.targetSize,
        inFlight: this.inFlightTotal,
        cpu: this.lastCpu,
      });
    } else if (decision.kind === 'reclaim') {
      this.lastScalingAtMs = now;
      const close = new Set(decision.close);
      for (const member of this.open.filter((m) => close.has(m.id))) this.remove(member);
      this.counters.reclaimed += decision.close.length;
      this.emit({ type: 'reclaim', closed: decision.close, size: this.size });
      this.updateState();
    }
    return decision;
  }

  async close(): Promise<void> {
    if (this.poolState === 'closed') {
      await Promise.all(this.disconnecting);
      return;
    }
    this.setState('closed');
    clearInterval(this.tick);
    this.lifetime.abort();
    for (const series of this.opening) {
      clearTimeout(series.timer);
      series.controller.abort();
    }
    this.opening.clear();
    for (const member of [...this.open]) this.remove(member);
    const closed = new PoolClosedError();
    for (const waiter of this.waiters) waiter.reject(closed);
    this.waiters.clear();
    await Promise.all(this.disconnecting);
  }

  // ------------------------------------------------------------------ internals

  private get size(): number {
    return this.open.length + this.opening.size;
  }

  private touch(member: Member<C>): void {
    if (member.inFlight === 0 && member.pins === 0) member.idleSinceMs = this.clock.now();
  }

  private ensureFloor(): void {
    while (this.poolState !== 'closed' && this.size < this.minSize) this.startSeries(false);
  }

  private startSeries(growth: boolean): void {
    const series: Series = {
      growth,
      controller: new AbortController(),
      failures: 0,
      gaveUp: false,
    };
    this.opening.add(series);
    this.attempt(series);
  }

  private attempt(series: Series): void {
    series.timer = undefined;
    const signal = series.controller.signal;
    if (signal.aborted) return;
    let member: Member<C> | undefined;
    let lostEarly: Error | undefined;
    let settled = false;
    const context: ConnectContext = {
      signal,
      attempt: series.failures + 1,
      lost: (error) => {
        if (member !== undefined) this.lose(member, error);
        else lostEarly ??= error ?? new Error('connection lost while opening');
      },
    };
    let opening: Promise<C>;
    try {
      opening = this.options.connect(context);
    } catch (error) {
      opening = Promise.reject(error);
    }
    opening.then(
      (connection) => {
        if (settled) return;
        settled = true;
        if (signal.aborted || this.poolState === 'closed') {
          this.disconnect(connection);
          return;
        }
        if (lostEarly !== undefined) {
          this.disconnect(connection);
          this.failed(series, lostEarly);
          return;
        }
        this.opening.delete(series);
        const now = this.clock.now();
        member = {
          id: `c${this.nextMemberId++}`,
          connection,
          inFlight: 0,
          pins: 0,
          openedAtMs: now,
          idleSinceMs: now,
          removed: false,
        };
        this.open.push(member);
        this.lastFailure = undefined;
        this.updateState(); // open before anyone hears of the connection, so it can be used
        this.emit({ type: 'opened', member, size: this.size });
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        if (signal.aborted || this.poolState === 'closed') return;
        this.failed(series, error);
      },
    );
  }

  private failed(series: Series, error: unknown): void {
    series.failures++;
    const attempt = series.failures;
    const decision = nextConnectAttempt(attempt, this.retry, error, this.random);
    let delayMs: number | undefined;
    if (decision.kind === 'retry') {
      delayMs = decision.delayMs;
    } else if (!series.gaveUp) {
      series.gaveUp = true;
      this.counters.connectFailures++;
      this.lastFailure = decision.error;
      this.emit({ type: 'connectFailed', error: decision.error, growth: series.growth });
      if (!series.growth && this.recover) {
        delayMs = this.backoffAfter(attempt);
      }
    } else {
      // Recovering after a reported give-up: keep doubling towards the cap.
      delayMs = this.backoffAfter(attempt);
    }
    this.emit({ type: 'attemptFailed', attempt, error, retryInMs: delayMs });
    if (delayMs === undefined) {
      this.opening.delete(series);
      if (this.open.length === 0 && !series.growth) this.setState('failed');
      else this.updateState();
      return;
    }
    if (this.open.length === 0 && !series.growth) {
      this.setState(series.gaveUp ? 'failed' : 'down');
    }
    series.timer = setTimeout(() => this.attempt(series), delayMs);
    series.timer.unref();
  }

  private backoffAfter(failures: number): number {
    return seedBackoff(
      Math.max(0, failures - this.retry.backoffAfterFailures),
      this.retry.backoff,
      this.random,
    );
  }

  private lose(member: Member<C>, error: Error | undefined): void {
    if (member.removed) return;
    this.detach(member);
    this.counters.lost++;
    this.updateState();
    this.emit({ type: 'lost', member, size: this.size, error });
    this.ensureFloor();
  }

  /** Takes a member out of the pool and disconnects it (reclaimed, or the pool closes). */
  private remove(member: Member<C>): void {
    if (member.removed) return;
    this.detach(member);
    this.disconnect(member.connection);
  }

  private detach(member: Member<C>): void {
    member.removed = true;
    const index = this.open.indexOf(member);
    if (index !== -1) this.open.splice(index, 1);
    this.inFlightTotal -= member.inFlight;
    member.inFlight = 0;
  }

  private disconnect(connection: C): void {
    let closing: Promise<void>;
    try {
      closing = Promise.resolve(this.options.disconnect(connection));
    } catch (error) {
      closing = Promise.reject(error);
    }
    const tracked = closing
      .catch(() => undefined)
      .then(() => {
        this.disconnecting.delete(tracked);
      });
    this.disconnecting.add(tracked);
  }

  private updateState(): void {
    if (this.poolState === 'closed') return;
    if (this.open.length > 0) this.setState('open');
    else if (this.poolState === 'open') this.setState('down');
  }

  private setState(state: PoolState): void {
    if (this.poolState === state || this.poolState === 'closed') return;
    this.poolState = state;
    if (state === 'open') {
      for (const waiter of this.waiters) waiter.resolve();
      this.waiters.clear();
    } else if (state === 'failed' && this.lastFailure !== undefined) {
      for (const waiter of this.waiters) waiter.reject(this.lastFailure);
      this.waiters.clear();
    }
    this.emit({ type: 'state', state });
  }

  private emit(event: PoolEvent<C>): void {
    try {
      this.options.onEvent?.(event);
    } catch {
      // A metrics hook must not break the pool.
    }
  }
}

/**
 * This process's CPU utilisation (CPU time of all its threads over wall time, 1 = one core
 * busy), sampled at most every `sampleMs` when read and smoothed by an EWMA with the seed's
 * α = 0.1 from a start at 0, so only sustained load reads high (about 16 one-second samples of
 * a full core to pass 80 %). No timer: it samples when read.
 */
export function processCpuReading(
  options: { sampleMs?: number; alpha?: number } = {},
): () => number {
  const sampleMs = options.sampleMs ?? 1_000;
  const ewma = new Ewma(options.alpha ?? EWMA_ALPHA);
  // Start from idle: one busy second right after start is not sustained load.
  ewma.update(0);
  let lastUsage = process.cpuUsage();
  let lastAt = performance.now();
  return () => {
    const now = performance.now();
    if (now - lastAt >= sampleMs) {
      const used = process.cpuUsage(lastUsage);
      ewma.update((used.user + used.system) / 1_000 / (now - lastAt));
      lastUsage = process.cpuUsage();
      lastAt = now;
    }
    return ewma.value ?? 0;
  };
}
