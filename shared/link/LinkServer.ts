/**
 * The control link, server side: the control process's state store and event bus, offered to
 * the gateway processes over one WebSocket each on loopback (see LinkClient, RemoteStore,
 * RemoteBus).
 *
 * Upgrade on `path` only, with `Authorization: Bearer <secret>` (else HTTP 401, no upgrade).
 * Frames are JSON text. Either side may send several frames as one JSON array.
 *
 *   client -> server   {"id": n, "op": "<op>", "args": [...]}
 *   server -> client   {"id": n, "ok": true, "value": ...}
 *                      {"id": n, "ok": false, "error": {"code": "condition_failed", "message": "..."}}
 *                      {"watch": w, "event": ...}        one event of watch / subscription w
 *
 * Ops and args (w: a watch id chosen by the client, unique on its connection):
 *   append [channel, data, trace?]  read [channel, after, limit]  channels []
 *   watchChannel [w, channel, after|null] -> {startedAfter}; events are ChannelWatchEvent
 *   get [key]  put [key, value, options?]  delete [key, options?]  list [prefix]
 *   watch [w, prefix] -> {records}: a list of the prefix taken after the watch started;
 *                        events are RecordWatchEvent
 *   grantLease [ttlMs]  keepAlive [lease]  revokeLease [lease]
 *   busPut [events]  (bus puts of one connection run one after another, in arrival order)
 *   subscribe [w, pattern]; events are BusEvent
 *   unwatch [w]   ends a channel watch, record watch or subscription; all end with the socket.
 * A watch id that is reused replaces its old watch.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { BusEvent, EventBus, EventPattern } from '../bus/EventBus.js';
import { errorCode, StreamhealError } from '../errors.js';
import type {
  ChannelMessage,
  ChannelWatchEvent,
  PutOptions,
  RecordWatchEvent,
  StateStore,
} from '../store/StateStore.js';
import { Outbox } from './Outbox.js';

export type LinkOp =
  | 'append'
  | 'read'
  | 'watchChannel'
  | 'channels'
  | 'get'
  | 'put'
  | 'delete'
  | 'list'
  | 'watch'
  | 'grantLease'
  | 'keepAlive'
  | 'revokeLease'
  | 'busPut'
  | 'subscribe'
  | 'unwatch';

export interface LinkError {
  code: string;
  message: string;
}

export interface LinkServerOptions {
  server: Server;
  path: string;
  secret: string;
  store: StateStore;
  bus: EventBus;
  logger?: Logger;
  /** Ping every connection this often and drop those that did not answer the last ping. */
  pingIntervalMs?: number;
  /** Drop a connection whose unsent data exceeds this (it reconnects and resumes its watches). */
  maxBufferedBytes?: number;
}

/** JSON of each stored message, made once however many watchers and replies carry it. */
const messageJson = new WeakMap<ChannelMessage, string>();

function jsonOf(message: ChannelMessage): string {
  let json = messageJson.get(message);
  if (json === undefined) {
    json = JSON.stringify(message);
    messageJson.set(message, json);
  }
  return json;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export function serveLink(options: LinkServerOptions): { close(): Promise<void> } {
  const { server, path, store, bus } = options;
  const logger = options.logger ?? pino({ level: 'silent' });
  const expected = digest(`Bearer ${options.secret}`);
  const context: Context = {
    store,
    bus,
    logger,
    maxBufferedBytes: options.maxBufferedBytes ?? 64 * 1024 * 1024,
  };
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const connections = new Set<Connection>();
  let closed = false;

  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = request.url ?? '';
    const query = url.indexOf('?');
    if ((query === -1 ? url : url.slice(0, query)) !== path) return; // someone else's upgrade
    const authorization = request.headers.authorization;
    if (
      closed ||
      typeof authorization !== 'string' ||
      !timingSafeEqual(digest(authorization), expected)
    ) {
      logger.warn({ remote: request.socket.remoteAddress }, 'control link refused: bad secret');
      socket.once('finish', () => socket.destroy());
      socket.end(
        'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nConnection: close\r\n' +
          'Content-Length: 0\r\n\r\n',
      );
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      if (closed) {
        ws.terminate();
        return;
      }
      const connection = new Connection(ws, context);
      connections.add(connection);
      ws.once('close', () => connections.delete(connection));
      logger.info({ remote: request.socket.remoteAddress }, 'control link connected');
    });
  };
  server.on('upgrade', onUpgrade);

  const pinger = setInterval(() => {
    for (const connection of connections) connection.ping();
  }, options.pingIntervalMs ?? 10_000);
  pinger.unref();

  return {
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      server.off('upgrade', onUpgrade);
      clearInterval(pinger);
      for (const connection of connections) connection.terminate();
      connections.clear();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

interface Context {
  store: StateStore;
  bus: EventBus;
  logger: Logger;
  maxBufferedBytes: number;
}

interface Slot {
  close?: () => void;
  closed: boolean;
}

interface Frame {
  id?: unknown;
  op?: unknown;
  args?: unknown;
}

class Connection {
  private readonly watches = new Map<number, Slot>();
  private readonly outbox: Outbox;
  private busQueue: Promise<unknown> = Promise.resolve();
  private answered = true;
  private ended = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly context: Context,
  ) {
    this.outbox = new Outbox(ws, () => this.dropIfNotReading());
    ws.on('message', (data, isBinary) => this.receive(data, isBinary));
    ws.on('pong', () => (this.answered = true));
    ws.on('error', (error) => context.logger.warn({ err: error }, 'control link socket error'));
    ws.once('close', () => this.end());
  }

  ping(): void {
    if (this.ended) return;
    if (!this.answered) {
      this.context.logger.warn('control link client stopped answering pings; dropping it');
      this.terminate();
      return;
    }
    this.answered = false;
    this.ws.ping();
  }

  terminate(): void {
    this.end();
    this.ws.terminate();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.outbox.close();
    for (const slot of this.watches.values()) closeSlot(slot);
    this.watches.clear();
  }

  private receive(data: RawData, isBinary: boolean): void {
    let parsed: unknown;
    try {
      if (isBinary) throw new Error('binary frame');
      parsed = JSON.parse(data.toString());
    } catch (error) {
      this.context.logger.warn({ err: error }, 'control link: unreadable frame; dropping client');
      this.terminate();
      return;
    }
    if (Array.isArray(parsed)) for (const frame of parsed) this.handle(frame as Frame);
    else this.handle(parsed as Frame);
  }

  private handle(frame: Frame): void {
    const id = frame?.id;
    if (typeof id !== 'number') {
      this.context.logger.warn('control link: frame without a request id ignored');
      return;
    }
    let result: Promise<string>;
    try {
      const args = frame.args;
      if (typeof frame.op !== 'string' || !Array.isArray(args)) {
        throw new StreamhealError('bad_request', 'a request needs an op and an args array');
      }
      result = this.dispatch(frame.op as LinkOp, args);
    } catch (error) {
      this.send(failure(id, error));
      return;
    }
    result.then(
      (valueJson) => this.send(`{"id":${id},"ok":true,"value":${valueJson}}`),
      (error: unknown) => this.send(failure(id, error)),
    );
  }

  /** Runs one op; resolves to the JSON of its value. */
  private dispatch(op: LinkOp, args: unknown[]): Promise<string> {
    const { store, bus } = this.context;
    switch (op) {
      case 'append':
        return store
          .append(args[0] as string, args[1], (args[2] ?? undefined) as Record<string, string>)
          .then(jsonOf);
      case 'read':
        return store.read(args[0] as string, args[1] as number, args[2] as number).then(json);
      case 'watchChannel':
        return this.watchChannel(watchId(args[0]), args[1] as string, args[2]);
      case 'channels':
        return store.channels().then(json);
      case 'get':
        return store.get(args[0] as string).then(json);
      case 'put':
        return store
          .put(args[0] as string, args[1], (args[2] ?? undefined) as PutOptions | undefined)
          .then(json);
      case 'delete':
        return store
          .delete(args[0] as string, (args[1] ?? undefined) as { ifVersion?: number } | undefined)
          .then(json);
      case 'list':
        return store.list(args[0] as string).then(json);
      case 'watch':
        return this.watchRecords(watchId(args[0]), args[1] as string);
      case 'grantLease':
        return store.grantLease(args[0] as number).then(json);
      case 'keepAlive':
        return store.keepAlive(args[0] as string).then(json);
      case 'revokeLease':
        return store.revokeLease(args[0] as string).then(json);
      case 'busPut': {
        const events = args[0] as BusEvent[];
        const done = this.busQueue.then(() => bus.put(events));
        this.busQueue = done.catch(() => undefined);
        return done.then(json);
      }
      case 'subscribe':
        return this.subscribe(watchId(args[0]), args[1] as EventPattern);
      case 'unwatch': {
        const id = watchId(args[0]);
        const slot = this.watches.get(id);
        if (slot !== undefined) {
          this.watches.delete(id);
          closeSlot(slot);
        }
        return Promise.resolve('true');
      }
      default:
        throw new StreamhealError('unknown_op', `unknown control link op ${String(op)}`);
    }
  }

  private async watchChannel(id: number, channel: string, after: unknown): Promise<string> {
    const slot = this.open(id);
    const prefix = `{"watch":${id},"event":`;
    const listener = (event: ChannelWatchEvent): void => {
      if (slot.closed) return;
      this.send(
        event.type === 'message'
          ? `${prefix}{"type":"message","message":${jsonOf(event.message)}}}`
          : `${prefix}${JSON.stringify(event)}}`,
      );
    };
    try {
      const watch = await this.context.store.watchChannel(
        channel,
        typeof after === 'number' ? after : undefined,
        listener,
      );
      this.attach(slot, () => watch.close());
      return `{"startedAfter":${watch.startedAfter}}`;
    } catch (error) {
      this.release(id, slot);
      throw error;
    }
  }

  private async watchRecords(id: number, prefix: string): Promise<string> {
    const slot = this.open(id);
    const head = `{"watch":${id},"event":`;
    try {
      const watch = await this.context.store.watch(prefix, (event: RecordWatchEvent) => {
        if (!slot.closed) this.send(`${head}${JSON.stringify(event)}}`);
      });
      this.attach(slot, () => watch.close());
      const records = await this.context.store.list(prefix);
      return JSON.stringify({ records });
    } catch (error) {
      this.release(id, slot);
      throw error;
    }
  }

  private async subscribe(id: number, pattern: EventPattern): Promise<string> {
    const slot = this.open(id);
    const head = `{"watch":${id},"event":`;
    try {
      const unsubscribe = this.context.bus.subscribe(pattern, (event) => {
        if (!slot.closed) this.send(`${head}${JSON.stringify(event)}}`);
      });
      this.attach(slot, unsubscribe);
      return 'true';
    } catch (error) {
      this.release(id, slot);
      throw error;
    }
  }

  private open(id: number): Slot {
    const previous = this.watches.get(id);
    if (previous !== undefined) closeSlot(previous);
    const slot: Slot = { closed: this.ended };
    if (!this.ended) this.watches.set(id, slot);
    return slot;
  }

  /** Gives the slot its closer; closes at once if the watch was ended while it was starting. */
  private attach(slot: Slot, close: () => void): void {
    if (slot.closed) close();
    else slot.close = close;
  }

  /** A watch that failed to start: forget it and close whatever part of it did start. */
  private release(id: number, slot: Slot): void {
    if (this.watches.get(id) === slot) this.watches.delete(id);
    closeSlot(slot);
  }

  private send(text: string): void {
    this.outbox.push(text);
  }

  private dropIfNotReading(): void {
    if (this.ws.bufferedAmount > this.context.maxBufferedBytes) {
      this.context.logger.warn(
        { buffered: this.ws.bufferedAmount },
        'control link client is not reading; dropping it (its watches resume on reconnect)',
      );
      this.terminate();
    }
  }
}

function closeSlot(slot: Slot): void {
  if (slot.closed) return;
  slot.closed = true;
  try {
    slot.close?.();
  } catch {
    // A watch that fails to close has nothing left to tell this connection.
  }
}

function watchId(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new StreamhealError('bad_request', 'watch id must be an integer');
  }
  return value;
}

function json(value: unknown): string {
  return value === undefined ? 'null' : JSON.stringify(value);
}

function failure(id: number, error: unknown): string {
  const body: LinkError = {
    code: errorCode(error) ?? 'internal_error',
    message: error instanceof Error ? error.message : String(error),
  };
  return `{"id":${id},"ok":false,"error":${JSON.stringify(body)}}`;
}
