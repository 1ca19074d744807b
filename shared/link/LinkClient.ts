/**
 * The control link, client side: one WebSocket to the control process (LinkServer) carrying
 * requests, their answers and watch events; shared by a RemoteStore and a RemoteBus.
 *
 * - Never hangs: a request fails with StoreUnavailableError when the link is down, when it goes
 *   down while the request waits, or when no answer came within `requestTimeoutMs`. Requests
 *   made before the very first connection is open wait for it (within their timeout).
 * - Reconnects by itself with the seed's backoff. Streams (watches, subscriptions) registered
 *   with `addStream` are told to subscribe again on every new connection, before `onOpen`
 *   listeners run.
 * - Frames queued in one turn of the event loop leave as one WebSocket frame (a JSON array).
 *   Timeouts are checked by one interval timer while requests are pending, not a timer each.
 */
import { pino, type Logger } from 'pino';
import { WebSocket, type RawData } from 'ws';
import { SEED_BACKOFF, seedBackoff, type BackoffOptions } from '../backoff.js';
import {
  ConditionFailedError,
  LeaseExpiredError,
  StoreUnavailableError,
  StreamhealError,
} from '../errors.js';
import type { LinkError, LinkOp } from './LinkServer.js';

export interface LinkClientOptions {
  /** e.g. ws://127.0.0.1:7400/v1/control-link */
  url: string;
  secret: string;
  /** Default 2000 ms. */
  requestTimeoutMs?: number;
  /** Reconnect delays (default: the seed's 0.5 s base, 60 s cap, 30 % jitter, 100 ms floor). */
  backoff?: BackoffOptions;
  /** Ping the server this often; no pong by the next ping drops the link. Default 5000 ms. */
  pingIntervalMs?: number;
  logger?: Logger;
}

/** A watch or subscription carried by the link. */
export interface LinkStream {
  /** A new connection is open: subscribe again. A rejection is retried with backoff. */
  resubscribe(): Promise<void>;
  /** One event frame for this stream. */
  event(event: unknown): void;
}

export type LinkState = 'connecting' | 'open' | 'down' | 'closed';

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  op: string;
  deadline: number;
}

interface Answer {
  id?: number;
  ok?: boolean;
  value?: unknown;
  error?: LinkError;
  watch?: number;
  event?: unknown;
}

export class LinkClient {
  private readonly url: string;
  private readonly authorization: string;
  private readonly timeoutMs: number;
  private readonly backoff: BackoffOptions;
  private readonly pingIntervalMs: number;
  private readonly logger: Logger;
  private ws: WebSocket | undefined;
  private linkState: LinkState = 'connecting';
  private generationCount = 0;
  private attempt = 0;
  private nextId = 1;
  private nextStreamId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly streams = new Map<number, LinkStream>();
  private outbox: string[] = [];
  private flushScheduled = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private awaitingPong = false;
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private readonly openListeners = new Set<() => void>();
  private readonly downListeners = new Set<() => void>();
  private lastError: Error | undefined;

  constructor(options: LinkClientOptions) {
    this.url = options.url;
    this.authorization = `Bearer ${options.secret}`;
    this.timeoutMs = options.requestTimeoutMs ?? 2_000;
    this.backoff = options.backoff ?? SEED_BACKOFF;
    this.pingIntervalMs = options.pingIntervalMs ?? 5_000;
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.connect();
  }

  get state(): LinkState {
    return this.linkState;
  }

  get isOpen(): boolean {
    return this.linkState === 'open';
  }

  /** Counts connections; a stream compares it to ignore answers from an older connection. */
  get generation(): number {
    return this.generationCount;
  }

  /** Resolves when the link is open; StoreUnavailableError after `timeoutMs` or on close. */
  waitOpen(timeoutMs = this.timeoutMs): Promise<void> {
    if (this.linkState === 'open') return Promise.resolve();
    if (this.linkState === 'closed') return Promise.reject(this.unavailable('link closed'));
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
        if (this.linkState !== 'closed') return;
        done();
        reject(this.unavailable('link closed'));
      };
      const timer = setTimeout(() => {
        done();
        reject(this.unavailable(`link not open after ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.openListeners.add(onOpen);
      this.downListeners.add(onClosed);
    });
  }

  /** Sends one request; `args` is serialized now, so later changes to it do not matter. */
  request<T = unknown>(op: LinkOp, args: unknown[]): Promise<T> {
    let argsJson: string;
    try {
      argsJson = JSON.stringify(args);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return this.requestJson<T>(op, argsJson);
  }

  /** Like `request`, with the args array already serialized as JSON. */
  requestJson<T = unknown>(op: LinkOp, argsJson: string): Promise<T> {
    const state = this.linkState;
    if (state === 'down' || state === 'closed') {
      return Promise.reject(this.unavailable(state === 'closed' ? 'link closed' : 'link down'));
    }
    const id = this.nextId++;
    const text = `{"id":${id},"op":"${op}","args":${argsJson}}`;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, {
        resolve: resolve as (value: unknown) => void,
        reject,
        op,
        deadline: Date.now() + this.timeoutMs,
      });
      if (this.sweepTimer === undefined) this.startSweep();
      this.enqueue(text);
    });
  }

  /** Registers a stream and returns its id (unique on this client, kept across reconnects). */
  addStream(stream: LinkStream): number {
    const id = this.nextStreamId++;
    this.streams.set(id, stream);
    return id;
  }

  removeStream(id: number): void {
    this.streams.delete(id);
  }

  /** Subscribes a registered stream now if the link is open (retried with backoff on failure). */
  subscribeStream(id: number): void {
    const stream = this.streams.get(id);
    if (stream !== undefined && this.linkState === 'open') this.resubscribe(id, stream, 0);
  }

  /** Called after every (re)connection, once streams have resubscribed. */
  onOpen(listener: () => void): () => void {
    this.openListeners.add(listener);
    return () => this.openListeners.delete(listener);
  }

  /** Called when the link goes down, before its pending requests are rejected. */
  onDown(listener: () => void): () => void {
    this.downListeners.add(listener);
    return () => this.downListeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.linkState === 'closed') return;
    this.linkState = 'closed';
    clearTimeout(this.reconnectTimer);
    this.stopPing();
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    this.streams.clear();
    this.outbox = [];
    this.failPending('link closed');
    this.notify(this.downListeners);
    this.openListeners.clear();
    this.downListeners.clear();
    const ws = this.ws;
    this.ws = undefined;
    if (ws === undefined || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.terminate();
    });
  }

  // ------------------------------------------------------------------ connection

  private connect(): void {
    this.reconnectTimer = undefined;
    if (this.linkState === 'closed') return;
    const ws = new WebSocket(this.url, {
      headers: { authorization: this.authorization },
      perMessageDeflate: false,
      handshakeTimeout: this.timeoutMs,
    });
    this.ws = ws;
    ws.on('open', () => this.opened(ws));
    ws.on('message', (data, isBinary) => {
      if (ws === this.ws && !isBinary) this.receive(data);
    });
    ws.on('pong', () => (this.awaitingPong = false));
    ws.on('error', (error) => {
      this.lastError = error;
      this.logger.debug({ err: error }, 'control link error');
    });
    ws.on('close', () => this.closed(ws));
  }

  private opened(ws: WebSocket): void {
    if (ws !== this.ws || this.linkState === 'closed') return;
    this.linkState = 'open';
    this.generationCount++;
    this.attempt = 0;
    this.lastError = undefined;
    this.logger.info({ url: this.url }, 'control link open');
    this.startPing();
    this.flush(); // requests made while the first connection was being opened
    for (const [id, stream] of this.streams) this.resubscribe(id, stream, 0);
    this.notify(this.openListeners);
  }

  private closed(ws: WebSocket): void {
    if (ws !== this.ws) return;
    this.ws = undefined;
    this.stopPing();
    if (this.linkState === 'closed') return;
    const wasOpen = this.linkState === 'open';
    this.linkState = 'down';
    this.outbox = [];
    const reason = this.lastError?.message ?? 'connection closed';
    if (wasOpen) this.logger.warn({ url: this.url, reason }, 'control link down');
    else this.logger.debug({ url: this.url, reason }, 'control link connect failed');
    this.notify(this.downListeners);
    this.failPending(`link down (${reason})`);
    const delay = seedBackoff(this.attempt++, this.backoff);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
    this.reconnectTimer.unref();
  }

  private resubscribe(id: number, stream: LinkStream, attempt: number): void {
    const generation = this.generationCount;
    const current = (): boolean =>
      this.linkState === 'open' &&
      this.generationCount === generation &&
      this.streams.get(id) === stream;
    let subscribing: Promise<void>;
    try {
      subscribing = stream.resubscribe();
    } catch (error) {
      subscribing = Promise.reject(error);
    }
    subscribing.catch((error: unknown) => {
      if (!current()) return;
      this.logger.warn({ err: error, stream: id }, 'control link: resubscribe failed; retrying');
      const timer = setTimeout(
        () => {
          this.retryTimers.delete(timer);
          if (current()) this.resubscribe(id, stream, attempt + 1);
        },
        seedBackoff(attempt, this.backoff),
      );
      timer.unref();
      this.retryTimers.add(timer);
    });
  }

  private startPing(): void {
    this.awaitingPong = false;
    this.pingTimer = setInterval(() => {
      const ws = this.ws;
      if (ws === undefined) return;
      if (this.awaitingPong) {
        this.lastError = new Error('no pong from the control link server');
        this.logger.warn({ url: this.url }, 'control link server stopped answering; reconnecting');
        ws.terminate();
        return;
      }
      this.awaitingPong = true;
      ws.ping();
    }, this.pingIntervalMs);
    this.pingTimer.unref();
  }

  private stopPing(): void {
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  // ------------------------------------------------------------------ frames

  private enqueue(text: string): void {
    this.outbox.push(text);
    if (!this.flushScheduled && this.linkState === 'open') {
      this.flushScheduled = true;
      setImmediate(this.scheduledFlush);
    }
  }

  private readonly scheduledFlush = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  private flush(): void {
    const outbox = this.outbox;
    const ws = this.ws;
    if (outbox.length === 0 || ws === undefined || ws.readyState !== WebSocket.OPEN) return;
    const payload = outbox.length === 1 ? (outbox[0] as string) : `[${outbox.join(',')}]`;
    outbox.length = 0;
    ws.send(payload);
  }

  private receive(data: RawData): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(data.toString());
    } catch (error) {
      this.logger.warn({ err: error }, 'control link: unreadable frame');
      return;
    }
    if (Array.isArray(parsed)) for (const frame of parsed) this.handle(frame as Answer);
    else this.handle(parsed as Answer);
  }

  private handle(frame: Answer): void {
    if (frame.watch !== undefined) {
      const stream = this.streams.get(frame.watch);
      if (stream === undefined) return; // closed meanwhile
      try {
        stream.event(frame.event);
      } catch (error) {
        this.logger.warn({ err: error }, 'control link: watch listener threw');
      }
      return;
    }
    if (frame.id === undefined) return;
    const pending = this.pending.get(frame.id);
    if (pending === undefined) return; // timed out meanwhile
    this.pending.delete(frame.id);
    if (frame.ok === true) pending.resolve(frame.value);
    else pending.reject(remoteError(frame.error));
  }

  // ------------------------------------------------------------------ timeouts

  private startSweep(): void {
    const tick = Math.max(10, Math.min(250, Math.floor(this.timeoutMs / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), tick);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const now = Date.now();
    // Requests sit in the map in the order they were made, so deadlines only grow along it.
    for (const [id, pending] of this.pending) {
      if (pending.deadline > now) break;
      this.pending.delete(id);
      pending.reject(this.unavailable(`${pending.op} timed out after ${this.timeoutMs} ms`));
    }
    if (this.pending.size === 0) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  private failPending(reason: string): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const request of pending) request.reject(this.unavailable(reason));
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

  private unavailable(reason: string): StoreUnavailableError {
    return new StoreUnavailableError(`control link ${this.url}: ${reason}`);
  }
}

/** Rebuilds an error sent by the server, as the same class where streamheal has one. */
export function remoteError(error: LinkError | undefined): StreamhealError {
  const code = typeof error?.code === 'string' ? error.code : 'internal_error';
  const message = typeof error?.message === 'string' ? error.message : 'remote error';
  let rebuilt: StreamhealError;
  switch (code) {
    case 'condition_failed':
      rebuilt = new ConditionFailedError('');
      break;
    case 'lease_expired':
      rebuilt = new LeaseExpiredError('');
      break;
    case 'store_unavailable':
      rebuilt = new StoreUnavailableError();
      break;
    default:
      rebuilt = new StreamhealError(code, message);
  }
  rebuilt.message = message;
  return rebuilt;
}
