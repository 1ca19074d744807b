/**
 * One WebSocket of the control link (see LinkClient, which pools them): requests and their
 * answers, watch events, a ping to notice a server that stopped answering. It does not
 * reconnect: when it breaks it tells the pool (`lost`) and fails its pending requests, and the
 * pool decides what opens next.
 *
 * - Never hangs: a request fails with StoreUnavailableError when the connection goes down while
 *   it waits, or when no answer came by its deadline. Deadlines are checked by one interval
 *   timer while requests are pending, not a timer each.
 * - Frames queued in one turn of the event loop leave as one WebSocket frame (a JSON array).
 */
import type { Logger } from 'pino';
import { WebSocket, type RawData } from 'ws';
import {
  ConditionFailedError,
  LeaseExpiredError,
  StoreUnavailableError,
  StreamhealError,
} from '../errors.js';
import type { ConnectContext } from '../pool/ConnectionPool.js';
import type { LinkError, LinkOp } from './LinkServer.js';
import { Outbox } from './Outbox.js';

export interface LinkConnectionOptions {
  url: string;
  /** The `Authorization` header value. */
  authorization: string;
  /** Handshake timeout; also how long a request may wait for its answer. */
  timeoutMs: number;
  pingIntervalMs: number;
  logger: Logger;
  /** One event frame of watch `watch` arrived on `connection`. */
  onEvent(connection: LinkConnection, watch: number, event: unknown): void;
}

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

export class LinkConnection {
  private readonly pending = new Map<number, Pending>();
  private readonly outbox: Outbox;
  private nextId = 1;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly pingTimer: NodeJS.Timeout;
  private awaitingPong = false;
  private lastError: Error | undefined;
  private ended = false;
  private readonly closedPromise: Promise<void>;

  /** Opens a connection; rejects with the reason when the attempt fails or is aborted. */
  static open(options: LinkConnectionOptions, context: ConnectContext): Promise<LinkConnection> {
    return new Promise((resolve, reject) => {
      if (context.signal.aborted) {
        reject(new Error('aborted'));
        return;
      }
      const ws = new WebSocket(options.url, {
        headers: { authorization: options.authorization },
        perMessageDeflate: false,
        handshakeTimeout: options.timeoutMs,
      });
      let failure: Error | undefined;
      const abort = (): void => {
        failure = new Error('aborted');
        ws.terminate();
      };
      const onError = (error: Error): void => {
        failure ??= error;
      };
      const onClose = (): void => {
        context.signal.removeEventListener('abort', abort);
        reject(failure ?? new Error('closed before it opened'));
      };
      context.signal.addEventListener('abort', abort, { once: true });
      ws.on('error', onError);
      ws.once('close', onClose);
      ws.once('open', () => {
        context.signal.removeEventListener('abort', abort);
        ws.off('error', onError);
        ws.off('close', onClose);
        resolve(new LinkConnection(ws, options, context.lost));
      });
    });
  }

  private constructor(
    private readonly ws: WebSocket,
    private readonly options: LinkConnectionOptions,
    private readonly lost: (error: Error) => void,
  ) {
    this.outbox = new Outbox(ws);
    this.closedPromise = new Promise((resolve) => ws.once('close', () => resolve()));
    ws.on('message', (data, isBinary) => {
      if (!isBinary) this.receive(data);
    });
    ws.on('pong', () => (this.awaitingPong = false));
    ws.on('error', (error) => {
      this.lastError = error;
      options.logger.debug({ err: error }, 'control link error');
    });
    ws.once('close', () => this.closed());
    this.pingTimer = setInterval(() => this.ping(), options.pingIntervalMs);
    this.pingTimer.unref();
  }

  get isOpen(): boolean {
    return !this.ended;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Sends one request (`argsJson`: the args array as JSON); rejects after `deadline`. */
  request<T>(op: LinkOp, argsJson: string, deadline: number): Promise<T> {
    if (this.ended) return Promise.reject(this.unavailable('link down'));
    const id = this.nextId++;
    const text = `{"id":${id},"op":"${op}","args":${argsJson}}`;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, op, deadline });
      if (this.sweepTimer === undefined) this.startSweep();
      this.outbox.push(text);
    });
  }

  /** Closes it without reporting it lost; pending requests fail with "link closed". */
  close(): Promise<void> {
    if (!this.ended) {
      this.end('link closed');
      this.ws.terminate();
    }
    return this.closedPromise;
  }

  // ------------------------------------------------------------------ internals

  private closed(): void {
    if (this.ended) return;
    const reason = this.lastError?.message ?? 'connection closed';
    // The pool hears first, so whoever reacts to the loss does so before the rejections.
    this.lost(new Error(reason));
    this.end(`link down (${reason})`);
  }

  private end(reason: string): void {
    this.ended = true;
    clearInterval(this.pingTimer);
    this.outbox.close();
    const pending = [...this.pending.values()];
    this.pending.clear();
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const request of pending) request.reject(this.unavailable(reason));
  }

  private ping(): void {
    if (this.ended) return;
    if (this.awaitingPong) {
      this.lastError = new Error('no pong from the control link server');
      this.options.logger.warn(
        { url: this.options.url },
        'control link server stopped answering; dropping the connection',
      );
      this.ws.terminate();
      return;
    }
    this.awaitingPong = true;
    this.ws.ping();
  }

  private receive(data: RawData): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(data.toString());
    } catch (error) {
      this.options.logger.warn({ err: error }, 'control link: unreadable frame');
      return;
    }
    if (Array.isArray(parsed)) for (const frame of parsed) this.handle(frame as Answer);
    else this.handle(parsed as Answer);
  }

  private handle(frame: Answer): void {
    if (frame.watch !== undefined) {
      this.options.onEvent(this, frame.watch, frame.event);
      return;
    }
    if (frame.id === undefined) return;
    const pending = this.pending.get(frame.id);
    if (pending === undefined) return; // timed out meanwhile
    this.pending.delete(frame.id);
    if (frame.ok === true) pending.resolve(frame.value);
    else pending.reject(remoteError(frame.error));
  }

  private startSweep(): void {
    const tick = Math.max(10, Math.min(250, Math.floor(this.options.timeoutMs / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), tick);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const now = Date.now();
    // Requests sit in the map in the order they were sent, so deadlines only grow along it
    // (requests that waited for the first connection are sent first, with earlier deadlines).
    for (const [id, pending] of this.pending) {
      if (pending.deadline > now) break;
      this.pending.delete(id);
      pending.reject(
        this.unavailable(`${pending.op} timed out after ${this.options.timeoutMs} ms`),
      );
    }
    if (this.pending.size === 0) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  private unavailable(reason: string): StoreUnavailableError {
    return new StoreUnavailableError(`control link ${this.options.url}: ${reason}`);
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
