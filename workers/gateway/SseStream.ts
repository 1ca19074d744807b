/**
 * One Server-Sent Events client. The event `id:` is the position, so a browser's built-in
 * reconnect (Last-Event-ID) resumes: a bare position for one channel, `A=41&B=7` for several.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isValidChannel } from '../../shared/protocol/channels.js';
import { ErrorCodes } from '../../shared/protocol/frames.js';
import { errorCode } from '../../shared/errors.js';
import {
  PositionFromFutureError,
  Subscription,
  type OutgoingMessage,
  type SubscriptionSink,
} from './ChannelHub.js';
import type { GatewayContext } from './GatewayContext.js';
import { HttpError } from './http.js';

const KEEPALIVE_MS = 15_000;

/** Channels and resume positions from the query string and Last-Event-ID; throws HttpError 400. */
export function parseSseRequest(
  url: URL,
  lastEventId: string | undefined,
  maxChannels: number,
): Map<string, number | undefined> {
  const names = url.searchParams.getAll('channel');
  if (names.length === 0)
    throw new HttpError(
      400,
      ErrorCodes.invalidChannel,
      'at least one channel= parameter is required',
    );
  if (names.length > maxChannels)
    throw new HttpError(400, ErrorCodes.tooManyChannels, `at most ${maxChannels} channels`);
  const channels = new Map<string, number | undefined>();
  for (const name of names) {
    if (!isValidChannel(name))
      throw new HttpError(
        400,
        ErrorCodes.invalidChannel,
        `invalid channel name ${JSON.stringify(name)}`,
      );
    channels.set(name, undefined);
  }
  const id = lastEventId ?? url.searchParams.get('lastEventId') ?? undefined;
  if (id === undefined || id === '') return channels;
  const invalid = () =>
    new HttpError(400, ErrorCodes.badFrame, `invalid Last-Event-ID ${JSON.stringify(id)}`);
  if (/^\d+$/.test(id)) {
    if (channels.size !== 1) throw invalid();
    channels.set(names[0]!, Number(id));
    return channels;
  }
  for (const [name, position] of new URLSearchParams(id)) {
    if (!channels.has(name) || !/^\d+$/.test(position)) throw invalid();
    channels.set(name, Number(position));
  }
  return channels;
}

export class SseStream implements SubscriptionSink {
  private readonly subscriptions: Subscription[] = [];
  /** Output produced before the response started (catch-up can begin before every channel is subscribed). */
  private pending: string[] | undefined = [];
  private keepalive?: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly gateway: GatewayContext,
    private readonly retryMs: number,
  ) {}

  /** Subscribes every channel, then starts the event stream; throws HttpError if any fails. */
  async start(
    channels: Map<string, number | undefined>,
    headers: Record<string, string>,
  ): Promise<void> {
    this.res.on('close', () => this.close());
    try {
      await Promise.all(
        [...channels].map(([channel, after]) => {
          const subscription = new Subscription(channel, this);
          this.subscriptions.push(subscription);
          return this.gateway.hub.subscribe(subscription, after);
        }),
      );
    } catch (error) {
      this.close();
      throw toHttpError(error);
    }
    if (this.closed) return;
    // The connection is this stream's alone: when the stream ends, so does the socket.
    this.res.shouldKeepAlive = false;
    this.res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
    });
    this.res.write(`retry: ${this.retryMs}\n\n${this.pending!.join('')}`);
    this.pending = undefined;
    this.keepalive = setInterval(() => this.res.write(': keepalive\n\n'), KEEPALIVE_MS).unref();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepalive);
    for (const subscription of this.subscriptions) this.gateway.hub.unsubscribe(subscription);
    this.gateway.clientClosed(this);
    if (!this.res.headersSent) return;
    this.res.end();
  }

  subscribed(): void {}

  message(_subscription: Subscription, message: OutgoingMessage): void {
    this.write(`id: ${this.eventId()}\ndata: ${message.wsFrame.toString()}\n\n`);
  }

  lost(subscription: Subscription, oldest: number, latest: number): void {
    const body = { code: ErrorCodes.historyLost, channel: subscription.channel, oldest, latest };
    this.write(`event: error\ndata: ${JSON.stringify(body)}\n\n`);
  }

  failed(subscription: Subscription, error: unknown): void {
    this.write(
      `event: error\ndata: ${JSON.stringify({ code: errorCode(error) ?? 'internal', channel: subscription.channel })}\n\n`,
    );
    // The browser reconnects with its Last-Event-ID and resumes once the store is back.
    this.close();
  }

  private eventId(): string {
    if (this.subscriptions.length === 1) return String(this.subscriptions[0]!.cursor);
    return new URLSearchParams(
      this.subscriptions.map((s) => [s.channel, String(s.cursor)]),
    ).toString();
  }

  private write(text: string): void {
    if (this.closed) return;
    if (this.pending) {
      this.pending.push(text);
      return;
    }
    this.res.write(text);
    if (this.res.writableLength > this.gateway.maxBufferedBytes) {
      this.gateway.metrics.pushErrors.inc({ reason: 'slow_consumer' });
      this.close();
      this.res.destroy();
    }
  }
}

function toHttpError(error: unknown): HttpError {
  if (error instanceof PositionFromFutureError) {
    return new HttpError(400, ErrorCodes.positionFromFuture, error.message);
  }
  return new HttpError(503, ErrorCodes.storeUnavailable, 'state store unavailable; retry', {
    'retry-after': '1',
  });
}
