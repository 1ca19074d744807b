/**
 * The streamheal client SDK: one WebSocket to one of several gateways, with the positions of
 * every subscribed channel, so a lost connection is resumed on another gateway and the
 * application receives every message exactly once, in order.
 *
 * Runs in browsers and in Node: no Node-only imports here (Node 20 has no global WebSocket;
 * `./node.js` supplies the `ws` package's).
 *
 * Reconnecting: after any loss the client tries a different gateway at once, after a random
 * spread of 0..spreadMs so a gateway's clients do not stampede the others together; if that
 * fails it walks through the gateways with the seed's backoff (`seedBackoff`). A successful
 * resume resets the schedule. A close code whose advice is `never` ends the client.
 *
 * Heartbeat (seed 3.1, docs/protocol.md "Heartbeat"): browsers' WebSockets expose no control
 * frames, so liveness is checked in the application: the client answers the gateway's pings,
 * and pings the gateway with the 12-byte binary heartbeat frame whenever it has heard nothing
 * from it (no ping, no frame) for `intervalMs`. A gateway that leaves `misses` pings in a row
 * unanswered, each for `timeoutMs` (a frozen process whose kernel still acknowledges TCP), is
 * declared dead: `degraded`, then `disconnected` (1006), and the client resumes on another
 * gateway at once. One timer per client, re-armed for the next deadline and cleared with the
 * connection.
 */
import { SEED_BACKOFF, seedBackoff, type BackoffOptions, type Random } from '../backoff.js';
import { CHANNEL_NAME } from '../protocol/channels.js';
import { reconnectAdvice, type ReconnectAdvice } from '../protocol/closeCodes.js';
import type { ClientFrame, ErrorCode, Limits } from '../protocol/frames.js';
import {
  DEFAULT_HEARTBEAT,
  HeartbeatStep,
  HeartbeatTable,
  HeartbeatType,
  encodeHeartbeat,
  heartbeatBytes,
  heartbeatClock,
  heartbeatTimestamp,
  heartbeatType,
  pongFor,
  type HeartbeatOptions,
} from '../protocol/heartbeat.js';
import { TypedEmitter } from './events.js';

/** Method syntax makes the parameter bivariant, so both DOM's and `ws`'s sockets fit. */
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'];

/** The part of the WHATWG WebSocket the SDK uses; browsers' and the `ws` package's fit. */
/**
 * The client pings only after hearing nothing from the gateway for `intervalMs`: longer than
 * the gateway's ping interval (500 ms) plus its sweep's lateness (50 ms), so a client of a live
 * gateway sends no pings of its own, and a frozen gateway is found dead within
 * interval + 2 x probe + timeout = 1.4 s (`heartbeatDetectionBoundMs`).
 */
export const DEFAULT_CLIENT_HEARTBEAT: Readonly<HeartbeatOptions> = {
  ...DEFAULT_HEARTBEAT,
  intervalMs: 650,
};

export interface WebSocketLike {
  readonly readyState: number;
  /** Set to `'arraybuffer'` so binary (heartbeat) frames arrive as ArrayBuffer. */
  binaryType?: string;
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  /** Drops the connection at once, without a closing handshake (the `ws` package has it). */
  terminate?(): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface StreamhealClientOptions {
  /** Gateway base URLs (`http(s)://` or `ws(s)://`); the SDK connects to `<base>/v1/ws`. */
  urls: string[];
  /** @default globalThis.WebSocket */
  WebSocket?: WebSocketConstructor;
  /** Source of randomness for the start gateway, the spread and the jitter. @default Math.random */
  random?: Random;
  /** Upper bound of the random delay before the immediate reconnect. @default 50 */
  spreadMs?: number;
  /** Reconnect backoff; missing fields take the seed's values. */
  backoff?: Partial<BackoffOptions>;
  /** A socket that has not sent `welcome` within this time counts as a failed attempt. @default 10000 */
  connectTimeoutMs?: number;
  /**
   * The client's pings to the gateway (sent only after `intervalMs` without hearing from it):
   * missing fields take `DEFAULT_CLIENT_HEARTBEAT` (650 / 125 / 500 / 3);
   * `false` sends none (the gateway's pings are answered either way).
   */
  heartbeat?: Partial<HeartbeatOptions> | false;
}

export interface ClientMessage {
  channel: string;
  position: number;
  data: unknown;
  /** Milliseconds since the epoch, stamped by the store at publish. */
  time: number;
}

/**
 * Server error codes plus the client's own: `gap`, `fatal_close`, `bad_server_frame`, and
 * `move_failed` (a planned move was abandoned; the session stays where it was).
 */
export type ClientErrorCode =
  ErrorCode | 'gap' | 'fatal_close' | 'bad_server_frame' | 'move_failed';

export interface ClientErrorEvent {
  code: ClientErrorCode;
  message: string;
  channel?: string;
}

export interface StreamhealClientEvents {
  /** A gateway sent `welcome` (on every connection, the first and each reconnect). */
  connected: { url: string; session: string; node: string };
  /** An open connection was lost (the client's own close() excluded). */
  disconnected: { url: string; code: number; reason: string };
  /**
   * The gateway left `misses` pings in a row without a pong (heartbeat L2): the connection is
   * declared dead; `disconnected` (code 1006) and a reconnect to another gateway follow.
   */
  degraded: {
    url: string;
    node?: string;
    reason: 'heartbeat';
    misses: number;
    /** Milliseconds since the last pong (since the socket opened when there was none). */
    silentMs: number;
    /** Smoothed RTT of the connection, ms; -1 when no pong ever arrived. */
    srttMs: number;
  };
  /** A connection attempt is scheduled: `attempt` counts from 1 since the last success. */
  reconnecting: { url: string; attempt: number; delayMs: number };
  /** The session and its channels were resumed after a reconnect. */
  resumed: { url: string; session: string; channels: Record<string, number> };
  /**
   * A planned move completed (docs/protocol.md "Moves"): the session resumed on `to` and the
   * connection to `from` was closed after it; nothing was missed or repeated in between.
   */
  moved: { from: string; to: string; node: string };
  message: ClientMessage;
  /** History no longer reached the position held; delivery continues from `oldest`. */
  'history-lost': { channel: string; oldest: number; latest: number };
  error: ClientErrorEvent;
}

export interface ClientStats {
  /** Messages handed to the application. */
  messages: number;
  /** Messages dropped because their position was not beyond the one held. */
  duplicates: number;
  /**
   * Messages the new connection of a planned move repeated while the old one was still
   * delivering (expected, dropped, not counted as duplicates).
   */
  moveOverlap: number;
  /** Planned moves completed. */
  moves: number;
  /** Messages that skipped positions (never expected; each also emits an `error`). */
  gaps: number;
  historyLost: number;
  /** Connections re-established (a `welcome` after the first one). */
  reconnects: number;
  /** Connection attempts scheduled after a failure or a loss. */
  reconnectAttempts: number;
  /** Successful `resumed` answers. */
  resumes: number;
  /** Heartbeat L1: pings of this client the gateway left unanswered for `timeoutMs`. */
  heartbeatMisses: number;
  /** Heartbeat L2: connections declared dead for want of pongs. */
  heartbeatTimeouts: number;
}

/** Rejection reason of the SDK's promises. */
export class StreamhealClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly channel?: string,
  ) {
    super(message);
    this.name = 'StreamhealClientError';
  }
}

type Timer = ReturnType<typeof setTimeout>;

interface Waiter {
  resolve: (position: number) => void;
  reject: (error: Error) => void;
}

interface ChannelState {
  readonly name: string;
  /** Last position held; undefined until the first `subscribed`. */
  position?: number;
  /** Explicit start asked by subscribe() and not yet confirmed. */
  pendingAfter?: number;
  /** Subscribed on the current connection. */
  confirmed: boolean;
  /** Id of the subscribe or resume request in flight on the current connection. */
  inflight?: number;
  waiters: Waiter[];
  /** Consecutive retryable failures (store unavailable, rate limited). */
  retries: number;
  retryTimer?: Timer;
}

type Request =
  | { kind: 'subscribe'; channel: string }
  | { kind: 'unsubscribe'; channel: string; resolve: () => void }
  | { kind: 'resume' };

/** A planned move in progress: the connection to the target, not yet resumed there. */
interface Move {
  readonly ws: WebSocketLike;
  readonly url: string;
  /** The target's node id: the redirect's, then the one its `welcome` names (a redirect
   * through a load balancer names no node: "*"). */
  node: string;
  readonly token: string;
  readonly timer: Timer;
  /** Id of the `resume` sent on it, once welcomed. */
  resumeId?: number;
  /** Frames that arrived before `resumed`, replayed on the switch. */
  readonly early: string[];
}

const OPEN = 1;
const CLOSED = 3;
const noop = (): void => undefined;

/** `http://host:port` → `ws://host:port/v1/ws`; a URL already ending in /v1/ws is kept. */
export function websocketEndpoint(base: string): string {
  const url = new URL(base);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new TypeError(`unsupported gateway URL ${base}: use http(s):// or ws(s)://`);
  }
  if (!url.pathname.endsWith('/v1/ws')) url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/ws`;
  url.hash = '';
  return url.toString();
}

export class StreamhealClient extends TypedEmitter<StreamhealClientEvents> {
  private readonly bases: string[];
  private readonly endpoints: string[];
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly random: Random;
  private readonly spreadMs: number;
  private readonly backoff: BackoffOptions;
  private readonly connectTimeoutMs: number;
  /** One row: the current connection's. */
  private readonly heartbeats?: HeartbeatTable;

  private readonly channelStates = new Map<string, ChannelState>();
  private readonly requests = new Map<number, Request>();
  private readonly counters: ClientStats = {
    messages: 0,
    duplicates: 0,
    moveOverlap: 0,
    moves: 0,
    gaps: 0,
    historyLost: 0,
    reconnects: 0,
    reconnectAttempts: 0,
    resumes: 0,
    heartbeatMisses: 0,
    heartbeatTimeouts: 0,
  };

  private ws?: WebSocketLike;
  private move?: Move;
  /**
   * After a move, per channel, the position held at the switch: the new connection may repeat
   * up to it (the old one delivered meanwhile), which is not a duplicate.
   */
  private moveOverlap = new Map<string, number>();
  private urlIndex = 0;
  private started = false;
  private closed = false;
  private opened = false;
  private welcomed = false;
  /** Welcomed and, on a reconnect, resumed: requests go straight out. */
  private ready = false;
  private everWelcomed = false;
  private sessionId?: string;
  private resumeToken?: string;
  /** The welcome of the current connection, adopted if the resume is refused outright. */
  private welcome?: { session: string; resumeToken: string };
  private resumeId?: number;
  private nextId = 1;
  /** Consecutive failed or scheduled attempts since the last success. */
  private tries = 0;
  private backoffAttempt = 0;
  private reconnectTimer?: Timer;
  private connectTimer?: Timer;
  private connecting?: Promise<void>;
  private connectWaiter?: { resolve: () => void; reject: (error: Error) => void };
  private serverLimits?: Limits;
  private serverNode?: string;
  /** The current connection's row in `heartbeats`, from its `open` on; -1: none. */
  private heartbeatRow = -1;
  private heartbeatTimer?: Timer;
  /** Smoothed RTT of the last connection that measured one. */
  private lastSrttMs?: number;

  constructor(options: StreamhealClientOptions) {
    super();
    if (!options.urls.length)
      throw new TypeError('StreamhealClient needs at least one gateway URL');
    this.bases = [...options.urls];
    this.endpoints = this.bases.map(websocketEndpoint);
    const impl =
      options.WebSocket ??
      ((globalThis as { WebSocket?: unknown }).WebSocket as WebSocketConstructor | undefined);
    if (typeof impl !== 'function') {
      throw new TypeError(
        'StreamhealClient: no WebSocket implementation. Pass options.WebSocket, or in Node 20 use ' +
          'createNodeClient() from the SDK node entry point (it supplies the `ws` package).',
      );
    }
    this.WebSocketImpl = impl;
    this.random = options.random ?? Math.random;
    this.spreadMs = Math.max(0, options.spreadMs ?? 50);
    this.backoff = { ...SEED_BACKOFF, ...options.backoff };
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    if (options.heartbeat !== false) {
      const heartbeat = { ...DEFAULT_CLIENT_HEARTBEAT };
      for (const key of ['intervalMs', 'probeMs', 'timeoutMs', 'misses'] as const) {
        const value = options.heartbeat?.[key];
        if (value === undefined) continue;
        if (!(Number.isFinite(value) && value > 0))
          throw new TypeError(`heartbeat.${key} must be a positive number, got ${value}`);
        heartbeat[key] = value;
      }
      if (!Number.isInteger(heartbeat.misses))
        throw new TypeError(`heartbeat.misses must be an integer, got ${heartbeat.misses}`);
      this.heartbeats = new HeartbeatTable(heartbeat);
    }
  }

  // Public API

  /** Live counters; read-only for callers. */
  get stats(): Readonly<ClientStats> {
    return this.counters;
  }

  /** Session id (the resumed one after a reconnect). */
  get session(): string | undefined {
    return this.sessionId;
  }

  /** Base URL of the gateway currently connected or being tried. */
  get url(): string | undefined {
    return this.started ? this.bases[this.urlIndex] : undefined;
  }

  /** Node id of the gateway that sent the last welcome. */
  get node(): string | undefined {
    return this.serverNode;
  }

  /** Whether requests go straight to a gateway (welcomed and resumed). */
  get isConnected(): boolean {
    return this.ready;
  }

  /** Smoothed heartbeat round-trip time to the gateway, ms (undefined before the first pong). */
  get rttMs(): number | undefined {
    const srtt = this.heartbeatRow >= 0 ? this.heartbeats!.srttMs(this.heartbeatRow) : -1;
    return srtt >= 0 ? srtt : this.lastSrttMs;
  }

  /** Limits announced by the gateway's last welcome. */
  get limits(): Limits | undefined {
    return this.serverLimits;
  }

  /** Channels subscribed or being subscribed. */
  channels(): string[] {
    return [...this.channelStates.keys()];
  }

  /** Last position held on `channel`, or undefined when not (yet) subscribed. */
  position(channel: string): number | undefined {
    return this.channelStates.get(channel)?.position;
  }

  /**
   * Starts connecting (from a random gateway) and resolves on the first `welcome`. Failed
   * attempts are retried; the promise rejects only if the client is closed first or a gateway
   * closes with advice `never`.
   */
  connect(): Promise<void> {
    if (this.connecting) return this.connecting;
    if (this.closed) return Promise.reject(this.closedError());
    this.connecting = new Promise<void>((resolve, reject) => {
      this.connectWaiter = { resolve, reject };
    });
    // Rejected by close(): not an unhandled rejection when the caller did not wait for it.
    this.connecting.catch(noop);
    this.started = true;
    this.urlIndex = Math.min(Math.floor(this.random() * this.bases.length), this.bases.length - 1);
    this.open();
    return this.connecting;
  }

  /**
   * Subscribes and resolves with the start position (messages follow from the next one).
   * `after`: receive every message after this position; omitted: from now on. Made while
   * disconnected, the request is sent once connected. Subscribing again to a channel returns
   * its position, unless a different `after` is given: that replaces (rewinds) the subscription.
   */
  subscribe(channel: string, options: { after?: number } = {}): Promise<number> {
    if (this.closed) return Promise.reject(this.closedError());
    if (!CHANNEL_NAME.test(channel)) {
      return Promise.reject(
        new StreamhealClientError(
          'invalid_channel',
          `invalid channel name ${JSON.stringify(channel)}`,
          channel,
        ),
      );
    }
    const after = options.after;
    if (after !== undefined && !(Number.isSafeInteger(after) && after >= 0)) {
      return Promise.reject(
        new StreamhealClientError(
          'bad_frame',
          `after must be a non-negative integer, got ${after}`,
          channel,
        ),
      );
    }
    const existing = this.channelStates.get(channel);
    if (existing && (after === undefined || after === existing.pendingAfter)) {
      if (existing.position !== undefined && existing.pendingAfter === undefined) {
        return Promise.resolve(existing.position);
      }
      return new Promise((resolve, reject) => existing.waiters.push({ resolve, reject }));
    }
    const state: ChannelState = {
      name: channel,
      pendingAfter: after,
      confirmed: false,
      waiters: existing ? existing.waiters : [],
      retries: 0,
    };
    if (existing) clearTimeout(existing.retryTimer);
    this.channelStates.set(channel, state);
    const promise = new Promise<number>((resolve, reject) =>
      state.waiters.push({ resolve, reject }),
    );
    if (this.ready) this.sendSubscribe(state);
    return promise;
  }

  /** Stops a subscription; resolves when the gateway confirmed it (or at once when offline). */
  unsubscribe(channel: string): Promise<void> {
    const state = this.channelStates.get(channel);
    if (!state) return Promise.resolve();
    this.channelStates.delete(channel);
    clearTimeout(state.retryTimer);
    this.rejectWaiters(
      state,
      new StreamhealClientError('unsubscribed', `unsubscribed from ${channel}`, channel),
    );
    if (!this.welcomed || (!state.confirmed && state.inflight === undefined))
      return Promise.resolve();
    return new Promise((resolve) => this.sendUnsubscribe(channel, resolve));
  }

  /**
   * Closes the connection and every timer; the client cannot be reused. Pending promises
   * reject. Resolves once the socket reports closed.
   */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.shutdown(this.closedError());
  }

  // Connection lifecycle

  private open(): void {
    const url = this.endpoints[this.urlIndex]!;
    let ws: WebSocketLike;
    try {
      ws = new this.WebSocketImpl(url);
    } catch {
      // e.g. a browser's SecurityError: count it as a failed attempt.
      this.ws = undefined;
      this.opened = false;
      this.scheduleReconnect(reconnectAdvice(1006));
      return;
    }
    this.ws = ws;
    this.opened = false;
    try {
      ws.binaryType = 'arraybuffer';
    } catch {
      // an implementation without binaryType: binary data is decoded from whatever it gives
    }
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.opened = true;
      this.startHeartbeat();
    };
    ws.onmessage = (event) => {
      if (ws === this.ws) this.onFrame(event.data);
    };
    ws.onerror = noop; // a close event always follows
    ws.onclose = (event) => {
      if (ws === this.ws) this.lost(event.code, event.reason);
    };
    this.connectTimer = setTimeout(() => {
      this.connectTimer = undefined;
      if (ws === this.ws && !this.welcomed)
        this.lost(1006, `no welcome within ${this.connectTimeoutMs} ms`);
    }, this.connectTimeoutMs);
  }

  /** The current socket is gone (closed by either side, failed, or timed out). */
  private lost(code: number, reason: string): void {
    const ws = this.ws;
    if (!ws) return;
    this.abandonMove('the connection being moved was lost first');
    const opened = this.opened;
    this.ws = undefined;
    this.discard(ws);
    this.resetConnection();
    if (opened) this.emit('disconnected', { url: this.bases[this.urlIndex]!, code, reason });
    if (this.closed) return;
    const advice = reconnectAdvice(code);
    if (advice === 'never') {
      const message = `gateway closed the connection with ${code}${reason ? ` (${reason})` : ''}; not reconnecting`;
      this.emit('error', { code: 'fatal_close', message });
      void this.shutdown(new StreamhealClientError('fatal_close', message));
      return;
    }
    this.scheduleReconnect(advice);
  }

  private scheduleReconnect(advice: ReconnectAdvice): void {
    let delay: number;
    if (this.tries === 0 && advice === 'immediately') {
      delay = this.random() * this.spreadMs;
      this.urlIndex = this.otherUrlIndex();
    } else {
      delay = seedBackoff(this.backoffAttempt++, this.backoff, this.random);
      this.urlIndex = (this.urlIndex + 1) % this.bases.length;
    }
    this.tries++;
    this.counters.reconnectAttempts++;
    this.emit('reconnecting', {
      url: this.bases[this.urlIndex]!,
      attempt: this.tries,
      delayMs: delay,
    });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.closed) this.open();
    }, delay);
  }

  // Heartbeat

  private startHeartbeat(): void {
    if (!this.heartbeats) return;
    this.heartbeatRow = this.heartbeats.add(heartbeatClock());
    this.heartbeatDue();
  }

  /** The one heartbeat timer: sends due pings, counts L1 timeouts, declares L2. */
  private readonly heartbeatDue = (): void => {
    this.heartbeatTimer = undefined;
    const heartbeats = this.heartbeats;
    const row = this.heartbeatRow;
    const ws = this.ws;
    if (!heartbeats || row < 0 || !ws) return;
    const now = heartbeatClock();
    const step = heartbeats.step(row, now);
    if (step === HeartbeatStep.dead) return this.heartbeatLost(ws, heartbeats, row, now);
    if (step === HeartbeatStep.resend || step === HeartbeatStep.miss)
      this.counters.heartbeatMisses++;
    if (step === HeartbeatStep.ping || step === HeartbeatStep.resend)
      this.sendBinary(encodeHeartbeat(HeartbeatType.ping, now));
    this.heartbeatTimer = setTimeout(
      this.heartbeatDue,
      Math.max(0, heartbeats.nextDeadline(row) - heartbeatClock()),
    );
  };

  private onHeartbeatFrame(data: unknown): boolean {
    const bytes = heartbeatBytes(data);
    const type = bytes ? heartbeatType(bytes) : 0;
    if (type === HeartbeatType.ping) {
      this.sendBinary(pongFor(bytes!));
      this.heardFromGateway();
      return true;
    }
    if (type === HeartbeatType.pong) {
      const row = this.heartbeatRow;
      if (row >= 0 && this.heartbeats!.pong(row, heartbeatClock(), heartbeatTimestamp(bytes!)) >= 0)
        this.lastSrttMs = this.heartbeats!.srttMs(row);
      return true;
    }
    return false;
  }

  /** Any valid frame proves the gateway alive: our own pings wait for a silence. */
  private heardFromGateway(): void {
    if (this.heartbeatRow >= 0) this.heartbeats!.heard(this.heartbeatRow, heartbeatClock());
  }

  /** L2: the gateway stopped answering; drop the socket now and reconnect elsewhere. */
  private heartbeatLost(
    ws: WebSocketLike,
    heartbeats: HeartbeatTable,
    row: number,
    now: number,
  ): void {
    this.counters.heartbeatTimeouts++;
    const { misses, timeoutMs } = heartbeats.options;
    this.emit('degraded', {
      url: this.bases[this.urlIndex]!,
      ...(this.welcomed && this.serverNode !== undefined ? { node: this.serverNode } : {}),
      reason: 'heartbeat',
      misses: heartbeats.misses(row),
      silentMs: now - heartbeats.lastHeard(row),
      srttMs: heartbeats.srttMs(row),
    });
    if (ws !== this.ws) return; // a listener closed the client
    try {
      ws.terminate?.();
    } catch {
      // already gone
    }
    this.lost(
      1006,
      `heartbeat timeout: ${misses} pings in a row without a pong within ${timeoutMs} ms`,
    );
  }

  private sendBinary(bytes: Uint8Array): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return;
    try {
      ws.send(bytes);
    } catch {
      // closing: the close event follows
    }
  }

  /** A random gateway other than the current one (the same when there is only one). */
  private otherUrlIndex(): number {
    const n = this.bases.length;
    if (n === 1) return this.urlIndex;
    const offset = 1 + Math.min(Math.floor(this.random() * (n - 1)), n - 2);
    return (this.urlIndex + offset) % n;
  }

  /** Forgets everything tied to the connection that just ended. */
  private resetConnection(): void {
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    if (this.heartbeatRow >= 0) this.heartbeats!.remove(this.heartbeatRow);
    this.heartbeatRow = -1;
    this.opened = false;
    this.welcomed = false;
    this.ready = false;
    this.resumeId = undefined;
    this.welcome = undefined;
    for (const request of this.requests.values()) {
      // The next connection starts without the channel: nothing left to unsubscribe.
      if (request.kind === 'unsubscribe') request.resolve();
    }
    this.requests.clear();
    for (const state of this.channelStates.values()) {
      state.confirmed = false;
      state.inflight = undefined;
      clearTimeout(state.retryTimer);
      state.retryTimer = undefined;
    }
  }

  private discard(ws: WebSocketLike): void {
    ws.onopen = noop;
    ws.onmessage = noop;
    ws.onerror = noop;
    ws.onclose = noop;
    if (ws.readyState === CLOSED) return;
    try {
      ws.close(1000, 'client closed');
    } catch {
      // already closing
    }
  }

  private shutdown(reason: Error): Promise<void> {
    this.closed = true;
    this.abandonMove('the client is closing');
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const ws = this.ws;
    this.ws = undefined;
    this.resetConnection();
    this.connectWaiter?.reject(reason);
    this.connectWaiter = undefined;
    for (const state of this.channelStates.values()) this.rejectWaiters(state, reason);
    if (!ws || ws.readyState === CLOSED) {
      if (ws) this.discard(ws);
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.discard(ws);
      ws.onclose = () => resolve();
    });
  }

  private closedError(): StreamhealClientError {
    return new StreamhealClientError('closed', 'the client is closed');
  }

  // Frames from the gateway

  private onFrame(data: unknown): void {
    let frame: Record<string, unknown>;
    try {
      if (typeof data !== 'string') {
        if (this.onHeartbeatFrame(data)) return;
        throw new Error('a binary frame that is not a heartbeat');
      }
      const parsed: unknown = JSON.parse(data);
      if (
        typeof parsed !== 'object' ||
        parsed === null ||
        typeof (parsed as { type?: unknown }).type !== 'string'
      ) {
        throw new Error('not a frame object');
      }
      frame = parsed as Record<string, unknown>;
    } catch (error) {
      this.emit('error', {
        code: 'bad_server_frame',
        message: `unreadable frame from the gateway: ${error instanceof Error ? error.message : String(error)}`,
      });
      return;
    }
    this.heardFromGateway();
    switch (frame.type) {
      case 'welcome':
        return this.onWelcome(frame);
      case 'subscribed':
        return this.onSubscribed(frame);
      case 'unsubscribed':
        return this.onUnsubscribed(frame);
      case 'resumed':
        return this.onResumed(frame);
      case 'message':
        return this.onMessage(frame);
      case 'error':
        return this.onError(frame);
      case 'redirect':
        return this.onRedirect(frame);
      default:
        return; // frames of later protocol versions
    }
  }

  // Planned moves (make-before-break)

  /** The gateway asks us to move: connect to the target now, switch once resumed there. */
  private onRedirect(frame: Record<string, unknown>): void {
    if (this.move || !this.ready || this.closed) return; // one move at a time, once settled
    const url = String(frame.url);
    const ttlMs = typeof frame.ttlMs === 'number' && frame.ttlMs > 0 ? frame.ttlMs : 30_000;
    let ws: WebSocketLike;
    try {
      ws = new this.WebSocketImpl(websocketEndpoint(url));
    } catch (error) {
      this.emit('error', { code: 'move_failed', message: `cannot open ${url}: ${String(error)}` });
      return;
    }
    try {
      ws.binaryType = 'arraybuffer';
    } catch {
      // as in open()
    }
    const move: Move = {
      ws,
      url,
      node: String(frame.node),
      token: String(frame.token),
      timer: setTimeout(() => this.abandonMove(`not resumed within ${ttlMs} ms`), ttlMs),
      early: [],
    };
    this.move = move;
    ws.onmessage = (event) => {
      if (this.move === move) this.onMoveFrame(move, event.data);
    };
    ws.onerror = noop;
    ws.onclose = (event) => {
      if (this.move === move)
        this.abandonMove(`the target closed the connection (${event.code} ${event.reason})`);
    };
  }

  private onMoveFrame(move: Move, data: unknown): void {
    if (typeof data !== 'string') {
      // The target pings from the upgrade on; answer so it keeps the connection.
      const bytes = heartbeatBytes(data);
      if (bytes && heartbeatType(bytes) === HeartbeatType.ping) move.ws.send(pongFor(bytes));
      return;
    }
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(data) as Record<string, unknown>;
    } catch {
      return this.abandonMove('unreadable frame from the target');
    }
    if (frame.type === 'welcome' && move.resumeId === undefined) {
      if (typeof frame.node === 'string') move.node = frame.node;
      move.resumeId = this.nextId++;
      const channels: Record<string, number> = {};
      for (const state of this.channelStates.values())
        if (state.position !== undefined) channels[state.name] = state.position;
      move.ws.send(
        JSON.stringify({ type: 'resume', id: move.resumeId, token: move.token, channels }),
      );
    } else if (frame.id === move.resumeId && frame.type === 'error') {
      this.abandonMove(
        `the target refused the move: ${String(frame.code)} ${String(frame.message)}`,
      );
    } else if (frame.id === move.resumeId && frame.type === 'resumed') {
      this.completeMove(move, data);
    } else if (move.resumeId !== undefined) {
      move.early.push(data);
    }
  }

  /** Resumed on the target: it becomes the connection, then the old one closes. */
  private completeMove(move: Move, resumed: string): void {
    clearTimeout(move.timer);
    this.move = undefined;
    const old = this.ws!;
    const from = this.bases[this.urlIndex]!;
    this.resetConnection();
    let index = this.bases.indexOf(move.url);
    if (index < 0) {
      index = this.bases.push(move.url) - 1;
      this.endpoints.push(websocketEndpoint(move.url));
    }
    this.urlIndex = index;
    this.ws = move.ws;
    this.opened = true;
    this.welcomed = true;
    this.serverNode = move.node;
    move.ws.onmessage = (event) => {
      if (move.ws === this.ws) this.onFrame(event.data);
    };
    move.ws.onclose = (event) => {
      if (move.ws === this.ws) this.lost(event.code, event.reason);
    };
    this.startHeartbeat();
    this.moveOverlap.clear();
    const id = move.resumeId!;
    for (const state of this.channelStates.values()) {
      if (state.position === undefined) continue;
      this.moveOverlap.set(state.name, state.position);
      state.inflight = id;
    }
    this.resumeId = id;
    this.requests.set(id, { kind: 'resume' });
    for (const frame of move.early) this.onFrame(frame);
    this.onFrame(resumed);
    this.discard(old);
    this.counters.moves++;
    this.emit('moved', { from, to: move.url, node: move.node });
  }

  private abandonMove(reason: string): void {
    const move = this.move;
    if (!move) return;
    this.move = undefined;
    clearTimeout(move.timer);
    this.discard(move.ws);
    this.emit('error', {
      code: 'move_failed',
      message: `move to ${move.url} abandoned: ${reason}`,
    });
  }

  private onWelcome(frame: Record<string, unknown>): void {
    if (this.welcomed) return;
    const session = String(frame.session);
    const resumeToken = String(frame.resumeToken);
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.welcomed = true;
    this.welcome = { session, resumeToken };
    this.serverNode = String(frame.node);
    if (typeof frame.limits === 'object' && frame.limits !== null)
      this.serverLimits = frame.limits as Limits;
    if (this.everWelcomed) this.counters.reconnects++;
    this.everWelcomed = true;
    this.emit('connected', { url: this.bases[this.urlIndex]!, session, node: this.serverNode });
    if (this.closed || !this.welcomed) return; // a listener closed the client
    if (this.resumeToken !== undefined) {
      this.sendResume();
    } else {
      this.sessionId = session;
      this.resumeToken = resumeToken;
      this.becomeReady();
    }
    this.connectWaiter?.resolve();
    this.connectWaiter = undefined;
  }

  /** One `resume` frame with the previous token and every position held (or asked for). */
  private sendResume(): void {
    const id = this.nextId++;
    const channels: Record<string, number> = {};
    for (const state of this.channelStates.values()) {
      const position = state.pendingAfter ?? state.position;
      if (position === undefined) continue;
      channels[state.name] = position;
      state.inflight = id;
    }
    this.resumeId = id;
    this.requests.set(id, { kind: 'resume' });
    this.send({ type: 'resume', id, token: this.resumeToken!, channels });
  }

  private becomeReady(): void {
    this.ready = true;
    this.tries = 0;
    this.backoffAttempt = 0;
    for (const state of this.channelStates.values()) {
      if (!state.confirmed && state.inflight === undefined && !state.retryTimer)
        this.sendSubscribe(state);
    }
  }

  private onSubscribed(frame: Record<string, unknown>): void {
    const channel = String(frame.channel);
    const id = typeof frame.id === 'number' ? frame.id : undefined;
    const position = Number(frame.position);
    if (id !== undefined && this.requests.get(id)?.kind === 'subscribe') this.requests.delete(id);
    const state = this.channelStates.get(channel);
    if (!state) {
      // Unsubscribed while the subscription was being made: undo it on the gateway.
      this.sendUnsubscribe(channel, noop);
      return;
    }
    if (state.inflight === undefined || (id !== undefined && id !== state.inflight)) return; // superseded
    state.inflight = undefined;
    state.confirmed = true;
    state.retries = 0;
    // On a resume the gateway starts where the client said; the client's own count stays the
    // reference, so a different answer shows up as a gap rather than as silent replays.
    if (state.pendingAfter !== undefined || state.position === undefined) state.position = position;
    state.pendingAfter = undefined;
    const waiters = state.waiters.splice(0);
    for (const waiter of waiters) waiter.resolve(position);
  }

  private onUnsubscribed(frame: Record<string, unknown>): void {
    const id = typeof frame.id === 'number' ? frame.id : undefined;
    const request = id === undefined ? undefined : this.requests.get(id);
    if (id === undefined || request?.kind !== 'unsubscribe') return;
    this.requests.delete(id);
    request.resolve();
  }

  private onResumed(frame: Record<string, unknown>): void {
    const id = typeof frame.id === 'number' ? frame.id : undefined;
    if (this.resumeId === undefined || id !== this.resumeId) return;
    this.requests.delete(id);
    this.resumeId = undefined;
    this.sessionId = String(frame.session);
    this.resumeToken = String(frame.resumeToken);
    this.counters.resumes++;
    for (const state of this.channelStates.values()) {
      if (state.inflight === id) state.inflight = undefined; // neither answered nor refused: resend
    }
    const channels =
      typeof frame.channels === 'object' && frame.channels !== null
        ? { ...(frame.channels as Record<string, number>) }
        : {};
    this.emit('resumed', { url: this.bases[this.urlIndex]!, session: this.sessionId, channels });
    if (this.ws && !this.closed) this.becomeReady();
  }

  private onMessage(frame: Record<string, unknown>): void {
    const state = this.channelStates.get(String(frame.channel));
    const position = frame.position;
    if (!state || state.position === undefined || typeof position !== 'number') return;
    if (position <= state.position) {
      const overlap = this.moveOverlap.get(state.name);
      if (overlap !== undefined && position <= overlap) this.counters.moveOverlap++;
      else this.counters.duplicates++;
      return;
    }
    this.moveOverlap.delete(state.name);
    if (position > state.position + 1) {
      this.counters.gaps++;
      this.emit('error', {
        code: 'gap',
        message: `${state.name}: received position ${position} while holding ${state.position}; ${position - state.position - 1} missing`,
        channel: state.name,
      });
    }
    state.position = position;
    this.counters.messages++;
    this.emit('message', {
      channel: state.name,
      position,
      data: frame.data,
      time: typeof frame.time === 'number' ? frame.time : Date.now(),
    });
  }

  private onError(frame: Record<string, unknown>): void {
    const code = String(frame.code) as ErrorCode;
    const message = typeof frame.message === 'string' ? frame.message : code;
    const channel = typeof frame.channel === 'string' ? frame.channel : undefined;
    const id = typeof frame.id === 'number' ? frame.id : undefined;
    if (code === 'history_lost' && channel !== undefined) {
      return this.onHistoryLost(channel, Number(frame.oldest), Number(frame.latest));
    }
    const request = id === undefined ? undefined : this.requests.get(id);
    if (request?.kind === 'resume') {
      if (code === 'invalid_token' || code === 'token_expired') {
        // The gateway resumes the positions under a new session; `resumed` follows.
        this.emit('error', { code, message });
        return;
      }
      if (channel !== undefined) return this.channelFailed(channel, code, message, id);
      return this.resumeRefused(id!, code, message);
    }
    if (request?.kind === 'subscribe') {
      this.requests.delete(id!);
      return this.channelFailed(request.channel, code, message, id);
    }
    if (request?.kind === 'unsubscribe') {
      this.requests.delete(id!);
      request.resolve();
      return;
    }
    if (channel !== undefined && this.channelStates.has(channel)) {
      // e.g. a catch-up that failed: the gateway dropped the subscription.
      return this.channelFailed(channel, code, message, undefined);
    }
    this.emit('error', { code, message, ...(channel === undefined ? {} : { channel }) });
  }

  private onHistoryLost(channel: string, oldest: number, latest: number): void {
    const state = this.channelStates.get(channel);
    if (!state) return;
    this.counters.historyLost++;
    if (Number.isFinite(oldest) && (state.position === undefined || state.position < oldest - 1)) {
      state.position = oldest - 1;
    }
    this.emit('history-lost', { channel, oldest, latest });
  }

  /** The whole resume was refused (e.g. too many channels): subscribe channel by channel. */
  private resumeRefused(id: number, code: ErrorCode, message: string): void {
    this.requests.delete(id);
    this.resumeId = undefined;
    if (this.welcome) {
      this.sessionId = this.welcome.session;
      this.resumeToken = this.welcome.resumeToken;
    }
    for (const state of this.channelStates.values()) {
      if (state.inflight === id) state.inflight = undefined;
    }
    this.emit('error', { code, message });
    this.becomeReady();
  }

  /** A subscription was refused or dropped by the gateway. */
  private channelFailed(
    channel: string,
    code: ErrorCode,
    message: string,
    id: number | undefined,
  ): void {
    const state = this.channelStates.get(channel);
    if (!state) return;
    if (id !== undefined && state.inflight !== id) return; // answer to a superseded request
    state.inflight = undefined;
    state.confirmed = false;
    if (code === 'store_unavailable' || code === 'rate_limited') {
      this.emit('error', { code, message, channel });
      this.retryChannel(state);
      return;
    }
    this.channelStates.delete(channel);
    clearTimeout(state.retryTimer);
    if (state.waiters.length > 0) {
      this.rejectWaiters(state, new StreamhealClientError(code, message, channel));
    } else {
      this.emit('error', { code, message, channel });
    }
  }

  private retryChannel(state: ChannelState): void {
    clearTimeout(state.retryTimer);
    const delay = seedBackoff(state.retries++, this.backoff, this.random);
    state.retryTimer = setTimeout(() => {
      state.retryTimer = undefined;
      if (
        this.ready &&
        this.channelStates.get(state.name) === state &&
        !state.confirmed &&
        state.inflight === undefined
      ) {
        this.sendSubscribe(state);
      }
    }, delay);
  }

  // Requests

  private sendSubscribe(state: ChannelState): void {
    const id = this.nextId++;
    state.inflight = id;
    this.requests.set(id, { kind: 'subscribe', channel: state.name });
    const after = state.pendingAfter ?? state.position;
    this.send({
      type: 'subscribe',
      id,
      channel: state.name,
      ...(after === undefined ? {} : { after }),
    });
  }

  private sendUnsubscribe(channel: string, resolve: () => void): void {
    if (!this.welcomed) return resolve();
    const id = this.nextId++;
    this.requests.set(id, { kind: 'unsubscribe', channel, resolve });
    this.send({ type: 'unsubscribe', id, channel });
  }

  private send(frame: ClientFrame): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return; // the close event follows and the resume covers it
    try {
      ws.send(JSON.stringify(frame));
    } catch {
      // closing: the close event follows
    }
  }

  private rejectWaiters(state: ChannelState, error: Error): void {
    const waiters = state.waiters.splice(0);
    for (const waiter of waiters) waiter.reject(error);
  }
}
