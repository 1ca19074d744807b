/**
 * One WebSocket client: parses its frames, holds its subscriptions, writes messages and
 * closes it (with a close code that carries reconnect advice) when it misbehaves or cannot
 * keep up. Nothing a client sends can affect another client.
 */
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { CloseCodes, type CloseCode } from '../../shared/protocol/closeCodes.js';
import {
  HeartbeatType,
  heartbeatTimestamp,
  heartbeatType,
  pongFor,
} from '../../shared/protocol/heartbeat.js';
import {
  ErrorCodes,
  PROTOCOL_VERSION,
  parseClientFrame,
  type ClientFrame,
  type ErrorBody,
  type ErrorCode,
  type RequestId,
  type ServerFrame,
} from '../../shared/protocol/frames.js';
import { TokenBucket } from '../../shared/tokenBucket.js';
import { errorCode } from '../../shared/errors.js';
import {
  PositionFromFutureError,
  Subscription,
  type OutgoingMessage,
  type SubscriptionSink,
} from './ChannelHub.js';
import { FastPathState } from './FastPath.js';
import { canaryChannel } from './health/DeliveryCanary.js';
import type { GatewayContext } from './GatewayContext.js';

/** Token refusals a client is told as they are; anything else reads invalid_token. */
const TOKEN_REFUSALS = new Set<string | undefined>([
  ErrorCodes.tokenExpired,
  ErrorCodes.tokenReplayed,
  ErrorCodes.tokenWrongTarget,
]);
/** Refused requests in a row after which a client is closed as rate limited. */
const MAX_CONSECUTIVE_REFUSALS = 100;
const BINARY = { binary: true } as const;
const HANDLED: Promise<void> = Promise.resolve();

export class WsSession implements SubscriptionSink {
  private session: string = randomUUID();
  private readonly subscriptions = new Map<string, Subscription>();
  /**
   * Request ids of subscribe requests in flight, so the `subscribed` answer can echo them.
   * Created on first use, like `closeWaiters`: an idle connection holds neither.
   */
  private requestIds?: Map<Subscription, RequestId>;
  private readonly bucket: TokenBucket;
  private refusals = 0;
  private closed = false;
  /** Requests are handled one after another, in the order the client sent them. */
  private handling: Promise<void> = HANDLED;
  /** The session's row in the gateway's heartbeat tables (seed 3.1); -1: not pinged. */
  heartbeatRow = -1;
  /** The gateway's heartbeat sweep lane holding this session; -1: none. */
  lane = -1;
  /** The session socket's slot in the gateway's kernel sweeper; -1: not swept. */
  kernelSlot = -1;
  /**
   * Nothing is written while the client's socket is over the high-water mark: its backlog
   * stays in the store's history and is caught up on resume (seed 3.2's bounded queue).
   */
  private deliveryPaused = false;
  /** Moves in progress waiting for this connection to close. */
  private closeWaiters?: Set<() => void>;
  readonly fastPath = new FastPathState();

  constructor(
    private readonly ws: WebSocket,
    /** The connection's socket, under `ws`: heartbeat frames are written to it directly. */
    private readonly socket: Socket,
    private readonly gateway: GatewayContext,
  ) {
    const { requestsPerSecond } = gateway.limits;
    this.bucket = new TokenBucket(requestsPerSecond, requestsPerSecond * 2);
    ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    ws.on('close', (code) => this.onClose(code));
    ws.on('error', (error) =>
      gateway.logger.debug({ err: error, session: this.session }, 'websocket error'),
    );
  }

  async start(): Promise<void> {
    this.send({
      type: 'welcome',
      version: PROTOCOL_VERSION,
      session: this.session,
      node: this.gateway.nodeId,
      resumeToken: await this.gateway.resumeToken(this.session),
      limits: this.gateway.limits,
    });
  }

  /** The gateway's own delivery canary: subscribed to its probe channel only. */
  get isCanary(): boolean {
    return (
      this.subscriptions.size === 1 && this.subscriptions.has(canaryChannel(this.gateway.nodeId))
    );
  }

  get subscriptionCount(): number {
    return this.subscriptions.size;
  }

  /** Session id (the resumed one after a successful `resume`). */
  get id(): string {
    return this.session;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes written to this client's socket and not yet taken by the kernel. */
  get queuedBytes(): number {
    return this.ws.bufferedAmount;
  }

  get isDeliveryPaused(): boolean {
    return this.deliveryPaused;
  }

  pauseDelivery(): void {
    if (this.deliveryPaused) return;
    this.deliveryPaused = true;
    for (const subscription of this.subscriptions.values()) this.gateway.hub.pause(subscription);
  }

  /** Writes again, starting with everything missed while paused. */
  resumeDelivery(): void {
    if (!this.deliveryPaused) return;
    this.deliveryPaused = false;
    for (const subscription of this.subscriptions.values()) this.gateway.hub.resume(subscription);
  }

  close(code: CloseCode): void {
    if (this.closed) return;
    this.ws.close(code.code, code.reason);
  }

  /**
   * Asks the client to move (make-before-break, docs/protocol.md "Moves") and resolves true
   * when it closed this connection within `ttlMs`, false when it did not (it stays here).
   */
  redirect(target: { url: string; node: string; token: string }, ttlMs: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    this.send({ type: 'redirect', ...target, ttlMs });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.closeWaiters?.delete(done);
        resolve(false);
      }, ttlMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      (this.closeWaiters ??= new Set()).add(done);
    });
  }

  /** Drops the connection without a closing handshake (a peer that no longer answers). */
  terminate(): void {
    if (!this.closed) this.ws.terminate();
  }

  /** Peer address `host:port`, for logs. */
  get peer(): string {
    return `${this.socket.remoteAddress}:${this.socket.remotePort}`;
  }

  /**
   * Writes a heartbeat ping, already framed as a whole WebSocket message (see
   * `HeartbeatSweep`), straight to the socket: one buffer shared by every session of a sweep
   * tick, and none of the per-message work of `ws.send`, which at four pings per second per
   * connection was most of the garbage the gateway made while idle. Safe between `ws` messages
   * because `ws` writes each message synchronously and whole when compression is off (the
   * gateway never enables it).
   */
  sendHeartbeat(message: Buffer): void {
    if (!this.closed && this.ws.readyState === this.ws.OPEN) this.socket.write(message);
  }

  // SubscriptionSink

  subscribed(subscription: Subscription, position: number): void {
    this.send({
      type: 'subscribed',
      channel: subscription.channel,
      position,
      ...this.pendingId(subscription),
    });
  }

  message(_subscription: Subscription, message: OutgoingMessage): void {
    if (this.closed) return;
    this.ws.send(message.wsFrame, { binary: false });
    // Over the high-water mark: stop writing now; the fast path decides what happens next.
    if (this.ws.bufferedAmount > this.gateway.maxBufferedBytes) this.pauseDelivery();
  }

  lost(subscription: Subscription, oldest: number, latest: number): void {
    this.error(undefined, {
      code: ErrorCodes.historyLost,
      message: `history of ${subscription.channel} no longer reaches position ${subscription.cursor + 1}; continuing from ${oldest}`,
      channel: subscription.channel,
      oldest,
      latest,
    });
  }

  failed(subscription: Subscription, error: unknown): void {
    if (this.subscriptions.get(subscription.channel) === subscription)
      this.subscriptions.delete(subscription.channel);
    this.error(undefined, this.errorBody(subscription.channel, error));
  }

  // Frames from the client

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      const type = heartbeatType(data);
      if (type === HeartbeatType.ping) {
        // Answered at once, outside the request queue and the rate limit: the client measures
        // our liveness with it.
        this.gateway.metrics.heartbeatClientPings.inc();
        if (!this.closed) this.ws.send(pongFor(data), BINARY);
        this.gateway.heartbeatSweep?.heard(this);
        return;
      }
      if (type === HeartbeatType.pong)
        return this.gateway.heartbeatSweep?.pong(this, heartbeatTimestamp(data));
      return this.refuse(undefined, {
        code: ErrorCodes.badFrame,
        message: 'binary frames are not accepted',
      });
    }
    const parsed = parseClientFrame(data.toString('utf8'));
    if (!parsed.ok) return this.refuse(parsed.id, parsed.error);
    this.gateway.heartbeatSweep?.heard(this);
    if (!this.bucket.take()) {
      return this.refuse(parsed.frame.id, {
        code: ErrorCodes.rateLimited,
        message: 'too many requests',
      });
    }
    const frame = parsed.frame;
    this.handling = this.handling.then(() => this.handle(frame));
  }

  private async handle(frame: ClientFrame): Promise<void> {
    switch (frame.type) {
      case 'subscribe':
        await this.subscribe(frame.id, frame.channel, frame.after);
        return;
      case 'unsubscribe':
        return this.unsubscribe(frame.id, frame.channel);
      case 'resume':
        return this.resume(frame.id, frame.token, frame.channels);
    }
  }

  private async subscribe(
    id: RequestId,
    channel: string,
    after: number | undefined,
  ): Promise<boolean> {
    if (this.subscriptions.has(channel)) {
      // Re-subscribing replaces the old subscription, so a client can rewind a channel.
      this.gateway.hub.unsubscribe(this.subscriptions.get(channel)!);
      this.subscriptions.delete(channel);
    }
    if (this.subscriptions.size >= this.gateway.limits.maxChannels) {
      this.refuse(id, {
        code: ErrorCodes.tooManyChannels,
        message: `at most ${this.gateway.limits.maxChannels} channels per connection`,
        channel,
      });
      return false;
    }
    const subscription = new Subscription(channel, this);
    if (this.deliveryPaused) this.gateway.hub.pause(subscription);
    if (id !== undefined) (this.requestIds ??= new Map()).set(subscription, id);
    this.subscriptions.set(channel, subscription);
    try {
      await this.gateway.hub.subscribe(subscription, after);
      this.refusals = 0;
      return true;
    } catch (error) {
      if (this.subscriptions.get(channel) === subscription) this.subscriptions.delete(channel);
      this.error(id, this.errorBody(channel, error));
      return false;
    } finally {
      this.requestIds?.delete(subscription);
      if (this.requestIds?.size === 0) this.requestIds = undefined;
    }
  }

  private unsubscribe(id: RequestId, channel: string): void {
    const subscription = this.subscriptions.get(channel);
    if (!subscription) {
      return this.refuse(id, {
        code: ErrorCodes.notSubscribed,
        message: `not subscribed to ${channel}`,
        channel,
      });
    }
    this.subscriptions.delete(channel);
    this.gateway.hub.unsubscribe(subscription);
    this.send({ type: 'unsubscribed', channel, ...(id === undefined ? {} : { id }) });
  }

  private async resume(
    id: RequestId,
    token: string,
    channels: Record<string, number>,
  ): Promise<void> {
    const started = performance.now();
    const names = Object.keys(channels);
    if (names.length > this.gateway.limits.maxChannels) {
      return this.refuse(id, {
        code: ErrorCodes.tooManyChannels,
        message: `at most ${this.gateway.limits.maxChannels} channels per connection`,
      });
    }
    try {
      this.session = await this.gateway.verifySessionToken(token);
      this.gateway.metrics.resumes.inc({ result: 'ok' });
    } catch (error) {
      // The positions, not the token, guarantee continuity: resume them under a new session.
      const code = errorCode(error);
      this.gateway.metrics.resumes.inc({ result: code ?? 'invalid_token' });
      this.error(id, {
        code: TOKEN_REFUSALS.has(code) ? (code as ErrorCode) : ErrorCodes.invalidToken,
        message: `${error instanceof Error ? error.message : String(error)}; started session ${this.session}`,
      });
    }
    const results = await Promise.all(
      names.map((channel) => this.subscribe(id, channel, channels[channel])),
    );
    const resumed: Record<string, number> = {};
    names.forEach((channel, i) => {
      const subscription = this.subscriptions.get(channel);
      if (results[i] && subscription) resumed[channel] = channels[channel]!;
    });
    this.send({
      type: 'resumed',
      session: this.session,
      resumeToken: await this.gateway.resumeToken(this.session),
      channels: resumed,
      ...(id === undefined ? {} : { id }),
    });
    this.gateway.metrics.resumeLatency.observe((performance.now() - started) / 1000);
  }

  private onClose(code: number): void {
    this.closed = true;
    if (this.closeWaiters) for (const waiter of this.closeWaiters) waiter();
    this.closeWaiters = undefined;
    for (const subscription of this.subscriptions.values())
      this.gateway.hub.unsubscribe(subscription);
    this.subscriptions.clear();
    this.gateway.clientClosed(this, code === 1006);
  }

  // Output helpers

  private pendingId(subscription: Subscription): { id?: RequestId } {
    const id = this.requestIds?.get(subscription);
    return id === undefined ? {} : { id };
  }

  private send(frame: ServerFrame): void {
    if (!this.closed) this.ws.send(JSON.stringify(frame));
  }

  private error(id: RequestId, body: ErrorBody): void {
    this.send({ type: 'error', ...(id === undefined ? {} : { id }), ...body });
  }

  /** Answers a refused request; a client that only sends refused requests is disconnected. */
  private refuse(id: RequestId, body: ErrorBody): void {
    this.gateway.metrics.pushErrors.inc({ reason: body.code });
    this.error(id, body);
    if (++this.refusals >= MAX_CONSECUTIVE_REFUSALS) {
      this.close(
        body.code === ErrorCodes.rateLimited ? CloseCodes.rateLimited : CloseCodes.badRequest,
      );
    }
  }

  private errorBody(channel: string, error: unknown): ErrorBody {
    if (error instanceof PositionFromFutureError) {
      return {
        code: ErrorCodes.positionFromFuture,
        message: error.message,
        channel,
        latest: error.latest,
      };
    }
    if (errorCode(error) === 'store_unavailable') {
      return {
        code: ErrorCodes.storeUnavailable,
        message: 'state store unavailable; retry',
        channel,
      };
    }
    this.gateway.logger.error({ err: error, channel }, 'subscribe failed');
    return { code: ErrorCodes.storeUnavailable, message: 'subscribe failed; retry', channel };
  }
}
