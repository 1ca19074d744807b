/**
 * The control link, client side: a pool of WebSockets to the control process (LinkServer)
 * carrying requests, their answers and watch events; shared by a RemoteStore and a RemoteBus.
 * The pool (shared/pool/ConnectionPool.ts) grows and shrinks by the seed's policy; see
 * docs/pools.md.
 *
 * - Requests go to the open connection with the fewest requests in flight.
 * - Streams (watches, subscriptions, and the bus's ordered lane) ride one connection each: the
 *   oldest open one, so growth connections carry only requests and can be reclaimed when idle.
 *   A stream's own requests (`request(op, args, streamId)`) go on its connection. When that
 *   connection is lost the stream hears `lost()` (before the connection's pending requests are
 *   rejected) and is told to `resubscribe()` on the oldest connection still open, or on the next
 *   one to open; events from any other connection are ignored.
 * - Never hangs: a request fails with StoreUnavailableError when no connection is open, when its
 *   connection goes down while it waits, or when no answer came within `requestTimeoutMs`.
 *   Requests made before the very first connection is open wait for it (within their timeout).
 *   After the pool has given up (5 failed attempts in a row, the seed's maxAttempts) the error
 *   says so and carries the PoolConnectError as its cause; the pool keeps trying at the seed
 *   backoff's pace, so a control process that comes back is found again.
 * - Frames queued in one turn of the event loop leave each connection as one WebSocket frame.
 */
import { pino, type Logger } from 'pino';
import { SEED_BACKOFF, seedBackoff, type BackoffOptions } from '../backoff.js';
import { StoreUnavailableError } from '../errors.js';
import {
  ConnectionPool,
  type PoolClock,
  type PoolEvent,
  type PoolMember,
  type PoolScalingOverrides,
  type PoolState,
  type PoolStats,
} from '../pool/ConnectionPool.js';
import type { ConnectRetryOptions, ScalingDecision } from '../pool/scaling.js';
import { LinkConnection, type LinkConnectionOptions } from './LinkConnection.js';
import type { LinkOp } from './LinkServer.js';

export { remoteError } from './LinkConnection.js';

/** Defaults of the control link's pool (docs/pools.md). */
export const LINK_POOL_DEFAULTS = {
  minSize: 1,
  maxSize: 4,
  /**
   * Requests in flight per connection that count as a busy connection. One socket carries
   * thousands (requests of one event-loop turn leave as one frame), but they share one TCP
   * stream, so a large answer (a history page, a list) holds up everything behind it; past a
   * few hundred in flight a second socket shortens that queue.
   */
  capacity: 128,
} as const;

export interface LinkPoolOptions {
  /** Connections kept open. Default 1. */
  minSize?: number;
  /** Default 4: one control process on loopback gains nothing from more sockets. */
  maxSize?: number;
  /** Requests in flight per connection counted as full use. Default 128. */
  capacity?: number;
  /** The seed's scaling triggers (busy CPU, 90 % in use, idle 5 min, cool-down 30 s, step 2). */
  scaling?: PoolScalingOverrides;
  /** The seed's connect retries (5 attempts, backoff from the 3rd failure). */
  connectRetry?: Partial<Omit<ConnectRetryOptions, 'backoff'>>;
  /** Keep trying after reporting a give-up. Default true. */
  recover?: boolean;
  /** Sustained CPU utilisation 0–1. Default: this process's, smoothed (processCpuReading). */
  cpu?: () => number;
  clock?: PoolClock;
  /** Ask the scaling policy this often. Default 1000 ms. */
  evaluateEveryMs?: number;
  /** Metrics: every pool event (opened, lost, scaleUp, reclaim, attemptFailed, …). */
  onEvent?(event: PoolEvent<LinkConnection>): void;
}

export interface LinkClientOptions {
  /** e.g. ws://127.0.0.1:7400/v1/control-link */
  url: string;
  secret: string;
  /** Default 2000 ms. */
  requestTimeoutMs?: number;
  /** Connect and resubscribe delays (default: the seed's 0.5 s base, 60 s cap, 30 % jitter). */
  backoff?: BackoffOptions;
  /** Ping each connection this often; no pong by the next ping drops it. Default 5000 ms. */
  pingIntervalMs?: number;
  logger?: Logger;
  pool?: LinkPoolOptions;
  /** Aborting it closes the client. */
  signal?: AbortSignal;
}

/** A watch, subscription or ordered lane carried by the link. */
export interface LinkStream {
  /** Its connection is (again) open: subscribe. A rejection is retried with backoff. */
  resubscribe(): Promise<void>;
  /** One event frame for this stream. */
  event(event: unknown): void;
  /** Its connection was lost; called before that connection's pending requests are rejected. */
  lost?(): void;
}

export type LinkState = PoolState;

interface StreamEntry {
  readonly stream: LinkStream;
  member?: PoolMember<LinkConnection>;
}

interface Parked {
  op: LinkOp;
  argsJson: string;
  via: number | undefined;
  deadline: number;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class LinkClient {
  private readonly url: string;
  private readonly timeoutMs: number;
  private readonly backoff: BackoffOptions;
  private readonly logger: Logger;
  private readonly pool: ConnectionPool<LinkConnection>;
  private readonly onPoolEvent: ((event: PoolEvent<LinkConnection>) => void) | undefined;
  private readonly signal: AbortSignal | undefined;
  private readonly streams = new Map<number, StreamEntry>();
  private nextStreamId = 1;
  private parked: Parked[] = [];
  private parkTimer: NodeJS.Timeout | undefined;
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly openListeners = new Set<() => void>();
  private readonly downListeners = new Set<() => void>();
  private generationCount = 0;
  private closed = false;

  constructor(options: LinkClientOptions) {
    this.url = options.url;
    this.timeoutMs = options.requestTimeoutMs ?? 2_000;
    this.backoff = options.backoff ?? SEED_BACKOFF;
    this.logger = options.logger ?? pino({ level: 'silent' });
    const pool = options.pool ?? {};
    this.onPoolEvent = pool.onEvent;
    const connection: LinkConnectionOptions = {
      url: options.url,
      authorization: `Bearer ${options.secret}`,
      timeoutMs: this.timeoutMs,
      pingIntervalMs: options.pingIntervalMs ?? 5_000,
      logger: this.logger,
      onEvent: (from, watch, event) => this.event(from, watch, event),
    };
    this.pool = new ConnectionPool<LinkConnection>({
      connect: (context) => LinkConnection.open(connection, context),
      disconnect: (c) => c.close(),
      capacity: pool.capacity ?? LINK_POOL_DEFAULTS.capacity,
      minSize: pool.minSize ?? LINK_POOL_DEFAULTS.minSize,
      maxSize: pool.maxSize ?? LINK_POOL_DEFAULTS.maxSize,
      scaling: pool.scaling,
      connectRetry: { ...pool.connectRetry, backoff: this.backoff },
      recover: pool.recover,
      cpu: pool.cpu,
      clock: pool.clock,
      evaluateEveryMs: pool.evaluateEveryMs,
      onEvent: (event) => this.poolEvent(event),
    });
    this.signal = options.signal;
    if (this.signal?.aborted) void this.close();
    else this.signal?.addEventListener('abort', this.abort, { once: true });
  }

  get state(): LinkState {
    return this.closed ? 'closed' : this.pool.state;
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Counts connections opened. */
  get generation(): number {
    return this.generationCount;
  }

  /** Size, busy (requests in flight), per-connection load and counters: for gauges. */
  poolStats(): PoolStats {
    return this.pool.stats();
  }

  /** Asks the scaling policy now (the pool also does so every `evaluateEveryMs`). */
  evaluatePool(): ScalingDecision {
    return this.pool.evaluate();
  }

  /** Resolves when the link is open; StoreUnavailableError after `timeoutMs` or on close. */
  waitOpen(timeoutMs = this.timeoutMs): Promise<void> {
    if (this.state === 'open') return Promise.resolve();
    if (this.closed) return Promise.reject(this.unavailable('link closed'));
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.openListeners.delete(onOpen);
        this.downListeners.delete(onClosed);
      };
      const onOpen = (): void => {
        done();
        resolve();
      };
      const onClosed = (): void => {
        if (!this.closed) return;
        done();
        reject(this.unavailable('link closed'));
      };
      const timer = setTimeout(() => {
        done();
        const failure = this.pool.lastError;
        reject(
          failure === undefined
            ? this.unavailable(`link not open after ${timeoutMs} ms`)
            : this.downError(),
        );
      }, timeoutMs);
      timer.unref();
      this.openListeners.add(onOpen);
      this.downListeners.add(onClosed);
    });
  }

  /**
   * Sends one request; `args` is serialized now, so later changes to it do not matter. With
   * `via` (a stream id) it goes on that stream's connection.
   */
  request<T = unknown>(op: LinkOp, args: unknown[], via?: number): Promise<T> {
    let argsJson: string;
    try {
      argsJson = JSON.stringify(args);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return this.requestJson<T>(op, argsJson, via);
  }

  /** Like `request`, with the args array already serialized as JSON. */
  requestJson<T = unknown>(op: LinkOp, argsJson: string, via?: number): Promise<T> {
    if (this.closed) return Promise.reject(this.unavailable('link closed'));
    if (this.pool.state === 'connecting') return this.park<T>(op, argsJson, via);
    const member = via === undefined ? this.pool.pick() : this.streamMember(via);
    if (member === undefined) return Promise.reject(this.downError());
    return this.send<T>(member, op, argsJson, Date.now() + this.timeoutMs);
  }

  /** Registers a stream and returns its id (unique on this client, kept across reconnects). */
  addStream(stream: LinkStream): number {
    const id = this.nextStreamId++;
    this.streams.set(id, { stream });
    return id;
  }

  /** Forgets a stream (one whose subscription never started, or a lane). */
  removeStream(id: number): void {
    const entry = this.streams.get(id);
    if (entry === undefined) return;
    this.streams.delete(id);
    if (entry.member !== undefined) this.pool.unpin(entry.member);
  }

  /** Forgets a stream and ends its watch on the server (`unwatch`) if its connection is open. */
  endStream(id: number): void {
    const member = this.streams.get(id)?.member;
    if (member !== undefined && this.pool.isOpen(member) && !this.closed) {
      this.send(member, 'unwatch', `[${id}]`, Date.now() + this.timeoutMs).catch(() => undefined);
    }
    this.removeStream(id);
  }

  /** Subscribes a registered stream now if the link is open (retried with backoff on failure). */
  subscribeStream(id: number): void {
    const entry = this.streams.get(id);
    if (entry === undefined || this.state !== 'open') return;
    const member = this.assign(entry);
    if (member !== undefined) this.resubscribe(id, entry, member, 0);
  }

  /** Called whenever the link becomes open (a first connection after none), after streams resubscribed. */
  onOpen(listener: () => void): () => void {
    this.openListeners.add(listener);
    return () => this.openListeners.delete(listener);
  }

  /** Called when the link's last open connection goes down, before its requests are rejected. */
  onDown(listener: () => void): () => void {
    this.downListeners.add(listener);
    return () => this.downListeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.abort);
    this.rejectParked('link closed');
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    const entries = [...this.streams.values()];
    this.streams.clear();
    for (const entry of entries) if (entry.member !== undefined) this.lostStream(entry);
    this.notify(this.downListeners);
    this.openListeners.clear();
    this.downListeners.clear();
    await this.pool.close();
  }

  // ------------------------------------------------------------------ pool

  private readonly abort = (): void => void this.close();

  private poolEvent(event: PoolEvent<LinkConnection>): void {
    switch (event.type) {
      case 'opened':
        this.opened(event.member);
        break;
      case 'lost':
        this.lost(event.member, event.error);
        break;
      case 'state':
        if (event.state === 'down' || event.state === 'failed') {
          // Requests wait only for the very first connection.
          this.rejectParked(event.state === 'failed' ? undefined : 'link down');
        }
        break;
      case 'connectFailed':
        this.logger[event.growth ? 'warn' : 'error'](
          { url: this.url, err: event.error.cause, attempts: event.error.attempts },
          event.growth
            ? 'control link: could not open an extra connection; the pool stays as it is'
            : 'control link: could not connect; requests fail until a connection opens',
        );
        break;
      case 'scaleUp':
        this.logger.info(
          { url: this.url, add: event.add, size: event.targetSize, inFlight: event.inFlight },
          'control link pool growing',
        );
        break;
      case 'reclaim':
        this.logger.info(
          { url: this.url, closed: event.closed.length, size: event.size },
          'control link pool reclaimed idle connections',
        );
        break;
      default:
        break;
    }
    try {
      this.onPoolEvent?.(event);
    } catch (error) {
      this.logger.warn({ err: error }, 'control link pool event hook threw');
    }
  }

  private opened(member: PoolMember<LinkConnection>): void {
    if (this.closed) return;
    this.generationCount++;
    this.logger.info({ url: this.url, connection: member.id }, 'control link open');
    const first = this.pool.members.length === 1;
    this.dispatchParked();
    for (const [id, entry] of this.streams) {
      if (entry.member !== undefined) continue;
      const assigned = this.assign(entry);
      if (assigned !== undefined) this.resubscribe(id, entry, assigned, 0);
    }
    if (first) this.notify(this.openListeners);
  }

  private lost(member: PoolMember<LinkConnection>, error: Error | undefined): void {
    if (this.closed) return;
    this.logger.warn(
      { url: this.url, connection: member.id, reason: error?.message },
      'control link connection down',
    );
    const moved: Array<[number, StreamEntry]> = [];
    for (const [id, entry] of this.streams) {
      if (entry.member !== member) continue;
      this.lostStream(entry);
      moved.push([id, entry]);
    }
    if (this.pool.members.length === 0) {
      this.notify(this.downListeners);
      return;
    }
    for (const [id, entry] of moved) {
      if (this.streams.get(id) !== entry || entry.member !== undefined) continue;
      const assigned = this.assign(entry);
      if (assigned !== undefined) this.resubscribe(id, entry, assigned, 0);
    }
  }

  private lostStream(entry: StreamEntry): void {
    entry.member = undefined;
    try {
      entry.stream.lost?.();
    } catch (error) {
      this.logger.warn({ err: error }, 'control link: stream lost handler threw');
    }
  }

  // ------------------------------------------------------------------ streams

  /** The stream's connection; a stream without one is placed on the oldest open connection. */
  private streamMember(id: number): PoolMember<LinkConnection> | undefined {
    const entry = this.streams.get(id);
    return entry === undefined ? undefined : this.assign(entry);
  }

  private assign(entry: StreamEntry): PoolMember<LinkConnection> | undefined {
    if (entry.member !== undefined) return entry.member;
    const member = this.pool.oldest();
    if (member === undefined) return undefined;
    entry.member = member;
    this.pool.pin(member);
    return member;
  }

  private resubscribe(
    id: number,
    entry: StreamEntry,
    member: PoolMember<LinkConnection>,
    attempt: number,
  ): void {
    const current = (): boolean =>
      !this.closed && this.streams.get(id) === entry && entry.member === member;
    let subscribing: Promise<void>;
    try {
      subscribing = entry.stream.resubscribe();
    } catch (error) {
      subscribing = Promise.reject(error);
    }
    subscribing.catch((error: unknown) => {
      if (!current()) return;
      this.logger.warn({ err: error, stream: id }, 'control link: resubscribe failed; retrying');
      const timer = setTimeout(
        () => {
          this.retryTimers.delete(timer);
          if (current()) this.resubscribe(id, entry, member, attempt + 1);
        },
        seedBackoff(attempt, this.backoff),
      );
      timer.unref();
      this.retryTimers.add(timer);
    });
  }

  private event(from: LinkConnection, watch: number, event: unknown): void {
    const entry = this.streams.get(watch);
    // Closed meanwhile, or an event from a connection the stream has left.
    if (entry === undefined || entry.member?.connection !== from) return;
    try {
      entry.stream.event(event);
    } catch (error) {
      this.logger.warn({ err: error }, 'control link: watch listener threw');
    }
  }

  // ------------------------------------------------------------------ requests

  private send<T>(
    member: PoolMember<LinkConnection>,
    op: LinkOp,
    argsJson: string,
    deadline: number,
  ): Promise<T> {
    this.pool.begin(member);
    return member.connection
      .request<T>(op, argsJson, deadline)
      .finally(() => this.pool.end(member));
  }

  /** Holds a request made before the first connection opened, until it opens or its deadline. */
  private park<T>(op: LinkOp, argsJson: string, via: number | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.parked.push({
        op,
        argsJson,
        via,
        deadline: Date.now() + this.timeoutMs,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      if (this.parkTimer === undefined) this.armParkTimer();
    });
  }

  private armParkTimer(): void {
    const head = this.parked[0];
    if (head === undefined) return;
    this.parkTimer = setTimeout(
      () => {
        this.parkTimer = undefined;
        const now = Date.now();
        while (this.parked.length > 0 && (this.parked[0] as Parked).deadline <= now) {
          const expired = this.parked.shift() as Parked;
          expired.reject(this.unavailable(`${expired.op} timed out after ${this.timeoutMs} ms`));
        }
        this.armParkTimer();
      },
      Math.max(0, head.deadline - Date.now()),
    );
    this.parkTimer.unref();
  }

  private dispatchParked(): void {
    const parked = this.parked;
    if (parked.length === 0) return;
    this.parked = [];
    clearTimeout(this.parkTimer);
    this.parkTimer = undefined;
    for (const request of parked) {
      const member = request.via === undefined ? this.pool.pick() : this.streamMember(request.via);
      if (member === undefined) request.reject(this.downError());
      else {
        this.send(member, request.op, request.argsJson, request.deadline).then(
          request.resolve,
          request.reject,
        );
      }
    }
  }

  /** Fails the parked requests (`reason` undefined: with the pool's give-up). */
  private rejectParked(reason: string | undefined): void {
    const parked = this.parked;
    this.parked = [];
    clearTimeout(this.parkTimer);
    this.parkTimer = undefined;
    for (const request of parked) {
      request.reject(reason === undefined ? this.downError() : this.unavailable(reason));
    }
  }

  private notify(listeners: Set<() => void>): void {
    for (const listener of [...listeners]) {
      try {
        listener();
      } catch (error) {
        this.logger.warn({ err: error }, 'control link listener threw');
      }
    }
  }

  /** Why nothing can be sent now: down, or the pool gave up (said, with it as the cause). */
  private downError(): StoreUnavailableError {
    const failure = this.pool.lastError;
    if (this.pool.state !== 'failed' || failure === undefined) return this.unavailable('link down');
    const cause = failure.cause instanceof Error ? ` (${failure.cause.message})` : '';
    return new StoreUnavailableError(`control link ${this.url}: ${failure.message}${cause}`, {
      cause: failure,
    });
  }

  private unavailable(reason: string): StoreUnavailableError {
    return new StoreUnavailableError(`control link ${this.url}: ${reason}`);
  }
}
