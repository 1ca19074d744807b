/**
 * The control process's HTTP server: the control link (`/v1/link`, the embedded store and bus
 * served to gateways over WebSocket), cluster status (`GET /v1/status`) and `GET /healthz`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { EventBus } from '../../shared/bus/EventBus.js';
import { serveLink } from '../../shared/link/LinkServer.js';
import type { ChannelSummary, StateStore } from '../../shared/store/StateStore.js';
import type { Logger } from '../../shared/telemetry/logger.js';
import type { NodeRecord } from '../gateway/Gateway.js';
import type { ChildStatus } from './Supervisor.js';

export const LINK_PATH = '/v1/link';

export interface ControlServerOptions {
  /** @default '127.0.0.1' */
  host?: string;
  /** @default 7070; 0 for any free port */
  port?: number;
  /** Gateways authenticate the control link with it. */
  secret: string;
  store: StateStore;
  bus: EventBus;
  logger: Logger;
  /** Supervised processes, shown in the status. */
  processes?: () => ChildStatus[];
}

/** Body of `GET /v1/status`. */
export interface ClusterStatus {
  control: { url: string; pid: number; startedAt: string };
  /** Registered gateways (`nodes/<id>` records, which expire with the gateway's lease). */
  nodes: NodeRecord[];
  /** Supervised gateway processes, registered or not. */
  processes: ChildStatus[];
  channels: ChannelSummary[];
}

export class ControlServer {
  private readonly server: Server;
  private readonly startedAt = new Date().toISOString();
  private link?: { close(): unknown };
  private address?: AddressInfo;

  constructor(private readonly options: ControlServerOptions) {
    this.server = createServer((req, res) => void this.route(req, res));
    // The link answers upgrades on its own path; refuse the others instead of leaving them open.
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
      if (new URL(req.url ?? '/', 'http://control').pathname === LINK_PATH) return;
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
  }

  /** Base URL, e.g. `http://127.0.0.1:7070`. */
  get url(): string {
    if (!this.address) throw new Error('control server is not listening');
    return `http://${this.address.address}:${this.address.port}`;
  }

  /** What gateways set as STREAMHEAL_CONTROL_URL. */
  get linkUrl(): string {
    return `${this.url.replace(/^http/, 'ws')}${LINK_PATH}`;
  }

  async listen(): Promise<void> {
    const { host = '127.0.0.1', port = 7070 } = this.options;
    this.link = serveLink({
      server: this.server,
      path: LINK_PATH,
      secret: this.options.secret,
      store: this.options.store,
      bus: this.options.bus,
      logger: this.options.logger,
    });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          error.code === 'EADDRINUSE'
            ? new Error(
                `control port ${host}:${port} is already in use (another streamheal cluster?)`,
                {
                  cause: error,
                },
              )
            : error,
        ),
      );
      this.server.listen(port, host, () => resolve());
    });
    this.address = this.server.address() as AddressInfo;
    this.options.logger.info({ url: this.url }, `control listening on ${this.url}`);
  }

  async close(): Promise<void> {
    await this.link?.close();
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  async status(): Promise<ClusterStatus> {
    const [records, channels] = await Promise.all([
      this.options.store.list<NodeRecord>('nodes/'),
      this.options.store.channels(),
    ]);
    return {
      control: { url: this.url, pid: process.pid, startedAt: this.startedAt },
      nodes: records.map((record) => record.value).sort((a, b) => a.id.localeCompare(b.id)),
      processes: this.options.processes?.() ?? [],
      channels: [...channels].sort((a, b) => a.channel.localeCompare(b.channel)),
    };
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { pathname } = new URL(req.url ?? '/', 'http://control');
    const route = `${req.method} ${pathname}`;
    try {
      switch (route) {
        case 'GET /healthz':
          return send(res, 200, { status: 'ok', pid: process.pid });
        case 'GET /v1/status':
          return send(res, 200, await this.status());
        default:
          return send(res, 404, { error: { code: 'not_found', message: `no route for ${route}` } });
      }
    } catch (error) {
      this.options.logger.error({ err: error, route }, 'control request failed');
      send(res, 500, { error: { code: 'internal', message: 'internal error' } });
    }
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}
