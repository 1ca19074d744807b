/**
 * The gateway: one HTTP port serving WebSocket (/v1/ws), SSE (/v1/sse), publish, health and
 * metrics. It registers itself in the store under a lease so the cluster knows it is alive.
 * Optionally a gRPC control service (Reload, Drain, Migrate, Status) on a second port. Its
 * life: Active -> Draining (no new connections; sessions move elsewhere) -> Closed (seed 4.3).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { SpanKind, context, propagation, trace } from '@opentelemetry/api';
import { WebSocketServer } from 'ws';
import type { EventBus } from '../../shared/bus/EventBus.js';
import { errorCode } from '../../shared/errors.js';
import { CloseCodes } from '../../shared/protocol/closeCodes.js';
import { isValidChannel } from '../../shared/protocol/channels.js';
import { ErrorCodes, type Limits } from '../../shared/protocol/frames.js';
import type { StateStore } from '../../shared/store/StateStore.js';
import type { Logger } from '../../shared/telemetry/logger.js';
import { injectContext, tracer } from '../../shared/telemetry/tracing.js';
import { decodeJwt } from 'jose';
import type { DrainReply, RouteTable, StatusReply } from '../../shared/protocol/gatewayControl.js';
import { REDIRECT_PURPOSE, verifyRedirectToken } from '../../shared/redirectTokens.js';
import { signToken, verifyToken, type KeyRing } from '../../shared/tokens.js';
import {
  startControlServer,
  type ControlServer,
  type ControlTarget,
} from './control/ControlServer.js';
import { SessionMover } from './control/SessionMover.js';
import { HealthEvents } from '../../shared/health/events.js';
import { ChannelHub } from './ChannelHub.js';
import { Detection, type DetectionOptions } from './Detection.js';
import {
  HeartbeatSweep,
  type GatewayHeartbeatOptions,
  type SessionDegradedInfo,
} from './HeartbeatSweep.js';
import type { GatewayContext } from './GatewayContext.js';
import {
  HttpError,
  bearerMatches,
  corsHeaders,
  originAllowed,
  readBody,
  sendError,
  sendJson,
} from './http.js';
import { createGatewayMetrics, type GatewayMetrics } from './metrics.js';
import { SseStream, parseSseRequest } from './SseStream.js';
import { WsSession } from './WsSession.js';
import { releaseFinishedFragments } from './wsRetention.js';

export interface GatewayOptions {
  nodeId: string;
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 0 (any free port) */
  port?: number;
  store: StateStore;
  bus: EventBus;
  /** Signs and verifies resume tokens; shared by every gateway of a cluster. */
  keyRing: KeyRing;
  /** Bearer key required by POST /v1/publish. */
  publishKey: string;
  /** Browser origins allowed to call the HTTP API and open WebSockets; `*` for any. @default [] */
  corsOrigins?: string[];
  /** @default { maxFrameBytes: 65536, maxChannels: 100, requestsPerSecond: 50 } */
  limits?: Partial<Limits>;
  /**
   * High-water mark of one client's queue: WebSocket delivery pauses above it and the fast path
   * takes over; an SSE stream is closed (the browser resumes with Last-Event-ID). @default 1 MiB
   */
  maxBufferedBytes?: number;
  /** SSE `retry:` field. @default 1000 */
  sseRetryMs?: number;
  /** @default 3_600_000 (one hour) */
  resumeTokenLifetimeMs?: number;
  /** How often the node record is refreshed; its lease lasts three times this. @default 2000 */
  registrationMs?: number;
  /**
   * Application heartbeat to WebSocket clients: `true` or options for pings (missing fields
   * take DEFAULT_GATEWAY_HEARTBEAT), omitted or `false` for none. The gateway process
   * (main.ts) enables it from STREAMHEAL_HEARTBEAT_* with those defaults; clients' pings are
   * answered either way.
   */
  heartbeat?: boolean | Partial<GatewayHeartbeatOptions>;
  /**
   * Called when a session misses `misses` pongs in a row (L2), just before the gateway closes
   * it as dead: the hook for the control plane. Must not throw (errors are logged).
   */
  onSessionDegraded?: (info: SessionDegradedInfo) => void;
  /**
   * L3: TCP keepalive on every accepted socket, `socket.setKeepAlive(true, tcpKeepAliveMs)`
   * (idle time before the first probe); 0 disables. @default 1000
   */
  tcpKeepAliveMs?: number;
  /** Kernel probes, fast path, canary and health events. */
  detection?: DetectionOptions;
  /**
   * Port of the gRPC control service (Reload, Drain, Migrate, Status), on `host`; 0 picks a
   * free one. @default no control service
   */
  controlPort?: number;
  /** Time a drain gives sessions to move before the rest are closed, ms. @default 20000 */
  drainMs?: number;
  /**
   * Where other processes reach this gateway, for its node record, when `host` is a wildcard
   * (0.0.0.0 on ECS): `control` becomes `<host>:<control port>`, `url` becomes `url`, else the
   * listening URL with `host` in it. @default the listening addresses
   *
   * `publicUrl`: the cluster's public endpoint (a load balancer; STREAMHEAL_PUBLIC_URL), for
   * clients that cannot reach `url`. Moves of this gateway's sessions then redirect there with
   * cluster-targeted tokens (its drain, and the control plane, which reads it in the node
   * record). @default none: moves name the target gateway's `url`
   */
  advertise?: { host?: string; url?: string; publicUrl?: string };
  /** The ECS task this gateway runs in, for its node record (nodeLost maps stopped tasks by it). */
  taskArn?: string;
  logger: Logger;
}

export const DEFAULT_LIMITS: Limits = {
  maxFrameBytes: 64 * 1024,
  maxChannels: 100,
  requestsPerSecond: 50,
};
const RESUME = 'resume';
export type GatewayState = 'active' | 'draining' | 'closed';

export interface NodeRecord {
  id: string;
  url: string;
  /** Only 'active' gateways take moved sessions. Absent in records of older gateways. */
  state?: GatewayState;
  /** `host:port` of the gRPC control service, when it runs (advertised). */
  control?: string;
  /** The cluster's public endpoint, when clients reach gateways through one (advertised). */
  publicUrl?: string;
  /** ECS task ARN, on ECS. */
  taskArn?: string;
  pid: number;
  startedAt: string;
  connections: { ws: number; sse: number };
  subscriptions: number;
  channels: number;
}

export class Gateway implements GatewayContext, ControlTarget {
  readonly nodeId: string;
  readonly limits: Limits;
  readonly maxBufferedBytes: number;
  readonly hub: ChannelHub;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  /** Pings to WebSocket clients; undefined without an application heartbeat. */
  readonly heartbeatSweep?: HeartbeatSweep;
  readonly detection: Detection;
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly sessions = new Set<WsSession>();
  private readonly streams = new Set<SseStream>();
  private readonly startedAt = new Date().toISOString();
  private registration?: NodeJS.Timeout;
  private lease?: string;
  private lastRegisteredAt = 0;
  private state: GatewayState = 'active';
  private readonly mover: SessionMover;
  private controlServer?: ControlServer;
  private draining?: Promise<DrainReply>;
  private requestsInFlight = 0;

  constructor(private readonly options: GatewayOptions) {
    this.nodeId = options.nodeId;
    this.logger = options.logger;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.maxBufferedBytes = options.maxBufferedBytes ?? 1024 * 1024;
    this.metrics = createGatewayMetrics(options.nodeId);
    this.mover = new SessionMover({
      nodeId: options.nodeId,
      keyRing: options.keyRing,
      store: options.store,
      sessions: () => this.clientSessions(),
      metrics: this.metrics,
      logger: options.logger,
      ...(options.advertise?.publicUrl ? { publicUrl: options.advertise.publicUrl } : {}),
    });
    if (options.heartbeat) {
      this.heartbeatSweep = new HeartbeatSweep({
        nodeId: options.nodeId,
        heartbeat: options.heartbeat === true ? {} : options.heartbeat,
        metrics: this.metrics,
        logger: options.logger,
        ...(options.onSessionDegraded ? { onSessionDegraded: options.onSessionDegraded } : {}),
      });
    }
    this.hub = new ChannelHub({
      store: options.store,
      logger: options.logger,
      onDelivered: (count) => this.metrics.delivered.inc(count),
    });
    this.detection = new Detection(
      {
        nodeId: options.nodeId,
        bus: options.bus,
        metrics: this.metrics,
        logger: options.logger,
        sessions: () => this.sessions,
        ...(this.heartbeatSweep ? { heartbeat: this.heartbeatSweep } : {}),
        highWaterBytes: this.maxBufferedBytes,
        publishKey: options.publishKey,
      },
      options.detection,
    );
    this.server = createServer((req, res) => void this.route(req, res));
    this.server.keepAliveTimeout = 65_000;
    this.server.on('connection', (socket: Socket) => this.tuneSocket(socket));
    releaseFinishedFragments();
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.limits.maxFrameBytes,
      perMessageDeflate: false,
      clientTracking: false,
    });
    this.server.on('upgrade', (req, socket, head) => this.upgrade(req, socket as Socket, head));
  }

  /** Base URL, known once listening. */
  url = '';
  /** The URL and control address others are given (the node record's), known once listening. */
  private advertisedUrl = '';
  private advertisedControl?: string;

  get ready(): boolean {
    return this.state === 'active' && this.registered && this.detection.checks().ready;
  }

  /** The node record was written recently: the store answers. */
  private get registered(): boolean {
    return Date.now() - this.lastRegisteredAt < 3 * this.registrationMs;
  }

  /** `host:port` others reach the gRPC control service at; undefined when it does not run. */
  get controlAddress(): string | undefined {
    return this.advertisedControl;
  }

  get heartbeat(): Readonly<GatewayHeartbeatOptions> | undefined {
    return this.heartbeatSweep?.heartbeat;
  }

  private get registrationMs(): number {
    return this.options.registrationMs ?? 2_000;
  }

  async listen(): Promise<void> {
    const advertise = this.options.advertise ?? {};
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port ?? 0, this.options.host ?? '127.0.0.1', () => {
        this.server.off('error', reject);
        const { address, port } = this.server.address() as AddressInfo;
        this.url = `http://${address}:${port}`;
        this.advertisedUrl =
          advertise.url ??
          (advertise.host ? `http://${bracketed(advertise.host)}:${port}` : this.url);
        resolve();
      });
    });
    if (this.options.controlPort !== undefined) {
      this.controlServer = await startControlServer({
        host: this.options.host ?? '127.0.0.1',
        port: this.options.controlPort,
        keyRing: this.options.keyRing,
        target: this,
        logger: this.logger,
      });
      const bound = this.controlServer.address;
      this.advertisedControl = advertise.host
        ? `${bracketed(advertise.host)}:${bound.slice(bound.lastIndexOf(':') + 1)}`
        : bound;
    }
    await this.register();
    this.registration = setInterval(() => void this.register(), this.registrationMs).unref();
    this.heartbeatSweep?.start();
    this.detection.start(this.url, Number(new URL(this.url).port));
    this.detection.reporter.report(HealthEvents.gatewayStarted, { url: this.url });
    this.logger.info({ url: this.url }, 'gateway listening');
  }

  /** Stops accepting, tells every client to reconnect elsewhere, and leaves the cluster. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    await this.controlServer?.close();
    clearInterval(this.registration);
    this.heartbeatSweep?.stop();
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) session.close(CloseCodes.shutdown);
    for (const stream of this.streams) stream.close();
    this.hub.close();
    this.wss.close();
    // Requests in flight (publishes) get up to two seconds to finish; then every socket goes.
    for (let waited = 0; this.requestsInFlight > 0 && waited < 2_000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    this.server.closeAllConnections();
    await stopped;
    // Reported before the reporter closes, which sends what it still holds.
    this.detection.reporter.report(HealthEvents.gatewayStopped, { url: this.url });
    await this.detection.stop();
    if (this.lease) await this.options.store.revokeLease(this.lease).catch(() => undefined);
  }

  // GatewayContext

  resumeToken(session: string): Promise<string> {
    return signToken(
      this.options.keyRing,
      RESUME,
      { sub: session, node: this.nodeId },
      this.options.resumeTokenLifetimeMs ?? 3_600_000,
    );
  }

  async verifySessionToken(token: string): Promise<string> {
    let purpose: unknown;
    try {
      purpose = decodeJwt(token).pur;
    } catch {
      purpose = undefined; // not even a JWT: the resume check below says so
    }
    if (purpose === REDIRECT_PURPOSE) {
      const claims = await verifyRedirectToken(this.options.keyRing, token, {
        expectedTarget: this.nodeId,
        store: this.options.store,
      });
      return claims.sessionId;
    }
    return String((await verifyToken(this.options.keyRing, RESUME, token)).sub);
  }

  // ControlTarget (the gRPC control service)

  reload(table: RouteTable): number {
    return this.mover.reload(table);
  }

  /**
   * Active -> Draining: new connections are refused and /readyz fails, the node record says
   * so (no gateway moves sessions here any more), and every session moves to another active
   * gateway within `deadlineMs`. Resolves with how many moved and how many are left, which
   * `close()` then closes. Idempotent: a second call shares the first drain.
   */
  drain(deadlineMs = 0): Promise<DrainReply> {
    if (this.state === 'active') {
      this.state = 'draining';
      this.detection.stopCanary();
      this.logger.info({ sessions: this.sessions.size }, 'draining');
    }
    this.draining ??= this.register().then(async () => {
      const { moved, left } = await this.mover.drain(
        deadlineMs || (this.options.drainMs ?? 20_000),
      );
      this.logger.info({ moved, left }, 'drained');
      return { moved, closed: left };
    });
    return this.draining;
  }

  migrate(...args: Parameters<SessionMover['migrate']>): Promise<void> {
    return this.mover.migrate(...args);
  }

  /** WebSocket sessions of clients: all but the gateway's own delivery canary (never moved). */
  private *clientSessions(): Iterable<WsSession> {
    for (const session of this.sessions) if (!session.isCanary) yield session;
  }

  status(sessionLimit: number): StatusReply {
    const sessions: string[] = [];
    for (const session of this.clientSessions()) {
      if (sessions.length >= sessionLimit) break;
      sessions.push(session.id);
    }
    return {
      node: this.nodeId,
      url: this.url,
      state: this.state,
      websocketConnections: this.sessions.size,
      sseConnections: this.streams.size,
      sessions,
      routeTableVersion: this.mover.routeTable.version,
    };
  }

  clientClosed(client: WsSession | SseStream, abnormal = false): void {
    if (client instanceof WsSession) {
      this.sessions.delete(client);
      this.heartbeatSweep?.remove(client);
      this.detection.untrack(client, abnormal);
      this.metrics.connections.dec({ transport: 'ws' });
    } else {
      this.streams.delete(client);
      this.metrics.connections.dec({ transport: 'sse' });
    }
  }

  /** L3: TCP keepalive and TCP_USER_TIMEOUT on every accepted socket. */
  private tuneSocket(socket: Socket): void {
    const keepAliveMs = this.options.tcpKeepAliveMs ?? 1_000;
    if (keepAliveMs > 0) socket.setKeepAlive(true, keepAliveMs);
    this.detection.tuneSocket(socket);
  }

  // Cluster membership

  /** What the cluster sees of this gateway: its clients (the delivery canary is not one). */
  private nodeRecord(): NodeRecord {
    let subscriptions = 0;
    let clients = 0;
    for (const session of this.clientSessions()) {
      subscriptions += session.subscriptionCount;
      clients++;
    }
    return {
      id: this.nodeId,
      url: this.advertisedUrl,
      state: this.state,
      ...(this.advertisedControl ? { control: this.advertisedControl } : {}),
      ...(this.mover.publicUrl ? { publicUrl: this.mover.publicUrl } : {}),
      ...(this.options.taskArn ? { taskArn: this.options.taskArn } : {}),
      pid: process.pid,
      startedAt: this.startedAt,
      connections: { ws: clients, sse: this.streams.size },
      subscriptions,
      channels: this.hub.channelCount,
    };
  }

  private async register(): Promise<void> {
    const store = this.options.store;
    try {
      if (this.lease) {
        await store.keepAlive(this.lease).catch(async (error: unknown) => {
          if (errorCode(error) !== 'lease_expired') throw error;
          this.lease = undefined;
        });
      }
      this.lease ??= await store.grantLease(3 * this.registrationMs);
      await store.put(`nodes/${this.nodeId}`, this.nodeRecord(), { lease: this.lease });
      this.metrics.channels.set(this.hub.channelCount);
      this.lastRegisteredAt = Date.now();
    } catch (error) {
      this.logger.warn(
        { err: error },
        'node registration failed; not ready until the store answers',
      );
    }
  }

  // HTTP

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway');
    const cors = corsHeaders(req, this.options.corsOrigins ?? []);
    this.requestsInFlight++;
    try {
      if (req.method === 'OPTIONS') {
        res.writeHead(204, cors).end();
        return;
      }
      const route = `${req.method} ${url.pathname}`;
      switch (route) {
        case 'POST /v1/publish':
          return await this.publish(req, res, cors);
        case 'GET /v1/sse':
          return await this.sse(req, res, url, cors);
        case 'GET /healthz':
          return sendJson(res, 200, { status: 'ok', node: this.nodeId });
        case 'GET /readyz': {
          const { kernelProbes, canary } = this.detection.checks();
          const checks = { store: this.registered ? 'ok' : 'unavailable', state: this.state };
          return sendJson(res, this.ready ? 200 : 503, {
            ready: this.ready,
            node: this.nodeId,
            checks: { ...checks, kernelProbes, canary },
          });
        }
        case 'GET /metrics': {
          const text = await this.metrics.registry.metrics();
          res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text);
          return;
        }
        default:
          throw new HttpError(404, 'not_found', `no route for ${route}`);
      }
    } catch (error) {
      const httpError =
        error instanceof HttpError ? error : new HttpError(500, 'internal', 'internal error');
      if (!(error instanceof HttpError)) this.logger.error({ err: error }, 'request failed');
      if (res.headersSent) res.destroy();
      else
        sendError(
          res,
          new HttpError(httpError.status, httpError.code, httpError.message, {
            ...cors,
            ...httpError.headers,
          }),
        );
    } finally {
      this.requestsInFlight--;
    }
  }

  private async publish(
    req: IncomingMessage,
    res: ServerResponse,
    cors: Record<string, string>,
  ): Promise<void> {
    const started = performance.now();
    if (!bearerMatches(req, this.options.publishKey)) {
      throw new HttpError(
        401,
        'unauthorized',
        'a valid publish key is required (Authorization: Bearer <key>)',
        {
          'www-authenticate': 'Bearer',
        },
      );
    }
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req, this.limits.maxFrameBytes)).toString('utf8'));
    } catch (error) {
      if (error instanceof HttpError) throw error;
      throw new HttpError(400, ErrorCodes.badFrame, 'body is not valid JSON');
    }
    const { channel, data } = (body ?? {}) as { channel?: unknown; data?: unknown };
    if (!isValidChannel(channel))
      throw new HttpError(
        400,
        ErrorCodes.invalidChannel,
        `invalid channel name ${JSON.stringify(channel)}`,
      );
    if (data === undefined) throw new HttpError(400, ErrorCodes.badFrame, 'data is required');
    const parent = propagation.extract(context.active(), req.headers);
    const span = tracer().startSpan(
      'publish',
      { kind: SpanKind.PRODUCER, attributes: { 'messaging.destination.name': channel } },
      parent,
    );
    try {
      const message = await this.options.store.append(
        channel,
        data,
        injectContext(trace.setSpan(parent, span)),
      );
      span.setAttribute('streamheal.position', message.position);
      this.metrics.published.inc();
      this.metrics.publishDuration.observe((performance.now() - started) / 1000);
      sendJson(res, 200, { channel, position: message.position }, cors);
    } catch (error) {
      this.metrics.pushErrors.inc({ reason: 'store_unavailable' });
      this.logger.warn({ err: error, channel }, 'publish not stored');
      throw new HttpError(
        503,
        ErrorCodes.storeUnavailable,
        'state store unavailable; the message was not stored',
        { 'retry-after': '1' },
      );
    } finally {
      span.end();
    }
  }

  private async sse(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    cors: Record<string, string>,
  ): Promise<void> {
    if (this.state !== 'active')
      throw new HttpError(503, 'shutting_down', 'gateway is shutting down', { 'retry-after': '0' });
    const lastEventId = req.headers['last-event-id'];
    const channels = parseSseRequest(
      url,
      Array.isArray(lastEventId) ? lastEventId[0] : lastEventId,
      this.limits.maxChannels,
    );
    const stream = new SseStream(req, res, this, this.options.sseRetryMs ?? 1_000);
    this.streams.add(stream);
    this.metrics.connections.inc({ transport: 'sse' });
    await stream.start(channels, cors);
  }

  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const refuse = (status: number, reason: string) => {
      socket.end(`HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    };
    if (new URL(req.url ?? '/', 'http://gateway').pathname !== '/v1/ws')
      return refuse(404, 'Not Found');
    if (this.state !== 'active') return refuse(503, 'Service Unavailable');
    // Browsers always send Origin; refusing unknown ones stops cross-site WebSocket hijacking.
    if (!originAllowed(req.headers.origin, this.options.corsOrigins ?? []))
      return refuse(403, 'Forbidden');
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const session = new WsSession(ws, socket, this);
      this.sessions.add(session);
      this.heartbeatSweep?.add(session);
      this.detection.track(session, socket);
      this.metrics.connections.inc({ transport: 'ws' });
      session.start().catch((error: unknown) => {
        this.logger.error({ err: error }, 'session start failed');
        session.close(CloseCodes.internal);
      });
    });
  }
}

/** An IPv6 literal in brackets, as `host:port` and URLs need it. */
function bracketed(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const gateway = new Gateway(options);
  await gateway.listen();
  return gateway;
}
