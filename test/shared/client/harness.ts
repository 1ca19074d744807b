/**
 * Real gateways in this process on loopback sockets, sharing one store and bus, and SDK clients
 * that record what they receive.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocket } from 'ws';
import { InProcessBus } from '../../../shared/bus/InProcessBus.js';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';
import type { HistoryLimits } from '../../../shared/store/StateStore.js';
import { createLogger } from '../../../shared/telemetry/logger.js';
import { keyRingFromSecret } from '../../../shared/tokens.js';
import {
  startGateway,
  type Gateway,
  type GatewayOptions,
} from '../../../workers/gateway/Gateway.js';
import {
  createNodeClient,
  type ClientMessage,
  type StreamhealClient,
  type StreamhealClientEvents,
  type StreamhealClientOptions,
  type WebSocketConstructor,
} from '../../../shared/client/node.js';

export const PUBLISH_KEY = 'test-key-123';
export const keyRing = keyRingFromSecret('x'.repeat(32));

/** A gateway with the TCP sockets it accepted, so a test can cut them abruptly. */
export interface TestGateway {
  gateway: Gateway;
  url: string;
  port: number;
  /** Destroys every accepted TCP socket without a close frame (a vanished gateway). */
  cut(): void;
  close(): Promise<void>;
}

export class Cluster {
  readonly store: MemoryStore;
  readonly bus = new InProcessBus();
  private readonly gateways = new Set<TestGateway>();
  private readonly clients = new Set<StreamhealClient>();
  private nodes = 0;

  constructor(limits?: HistoryLimits) {
    this.store = new MemoryStore(limits ? { limits } : {});
  }

  async gateway(options: Partial<GatewayOptions> = {}): Promise<TestGateway> {
    const gateway = await startGateway({
      nodeId: `gw-${++this.nodes}`,
      store: this.store,
      bus: this.bus,
      keyRing,
      publishKey: PUBLISH_KEY,
      logger: createLogger('test', 'silent'),
      port: 0,
      heartbeat: true,
      ...options,
    });
    const sockets = new Set<Socket>();
    const server = (gateway as unknown as { server: Server }).server;
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    const entry: TestGateway = {
      gateway,
      url: gateway.url,
      port: Number(new URL(gateway.url).port),
      cut: () => {
        for (const socket of sockets) socket.destroy();
      },
      close: async () => {
        this.gateways.delete(entry);
        await gateway.close();
      },
    };
    this.gateways.add(entry);
    return entry;
  }

  client(urls: string[], options: Partial<StreamhealClientOptions> = {}): RecordingClient {
    const recording = new RecordingClient({ urls, ...options });
    this.clients.add(recording.client);
    return recording;
  }

  /** POST /v1/publish through a gateway. */
  async publish(gateway: TestGateway, channel: string, data: unknown): Promise<number> {
    const response = await fetch(`${gateway.url}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PUBLISH_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    });
    if (response.status !== 200) throw new Error(`publish answered ${response.status}`);
    return ((await response.json()) as { position: number }).position;
  }

  /** Publishes through `via` every few ms until stopped; `stop` resolves with the last position. */
  keepPublishing(via: TestGateway, channel: string): { stop: () => Promise<number> } {
    let stop = false;
    let last = 0;
    const done = (async () => {
      while (!stop) {
        last = await this.publish(via, channel, { n: last });
        await sleep(3);
      }
    })();
    done.catch(() => undefined); // a failed test leaves it running: stop() still reports it
    return {
      stop: async () => {
        stop = true;
        await done;
        return last;
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.clients].map((client) => client.close()));
    await Promise.all([...this.gateways].map((gateway) => gateway.close()));
    await this.bus.close();
    await this.store.close();
  }
}

type Recorded = {
  [E in keyof StreamhealClientEvents]: { event: E; at: number; payload: StreamhealClientEvents[E] };
}[keyof StreamhealClientEvents];

/** An SDK client whose events and sent frames are recorded. */
export class RecordingClient {
  readonly client: StreamhealClient;
  readonly events: Recorded[] = [];
  /** Text frames the client sent, parsed. */
  readonly sent: Record<string, unknown>[] = [];
  /** Binary frames the client sent (heartbeats), as copies. */
  readonly sentBinary: Uint8Array[] = [];

  constructor(options: StreamhealClientOptions) {
    const { sent, sentBinary } = this;
    class RecordingWebSocket extends WebSocket {
      override send(data: unknown, ...rest: unknown[]): void {
        if (typeof data === 'string') sent.push(JSON.parse(data) as Record<string, unknown>);
        else sentBinary.push(new Uint8Array(data as Uint8Array));
        (super.send as (...args: unknown[]) => void)(data, ...rest);
      }
    }
    this.client = createNodeClient({
      WebSocket: RecordingWebSocket as WebSocketConstructor,
      ...options,
    });
    const names: (keyof StreamhealClientEvents)[] = [
      'connected',
      'degraded',
      'disconnected',
      'reconnecting',
      'resumed',
      'moved',
      'message',
      'history-lost',
      'error',
    ];
    for (const event of names) {
      this.client.on(event, (payload) =>
        this.events.push({ event, at: performance.now(), payload } as Recorded),
      );
    }
  }

  of<E extends keyof StreamhealClientEvents>(event: E): StreamhealClientEvents[E][] {
    return this.events
      .filter((e) => e.event === event)
      .map((e) => e.payload as StreamhealClientEvents[E]);
  }

  messages(channel: string): ClientMessage[] {
    return this.of('message').filter((m) => m.channel === channel);
  }

  positions(channel: string): number[] {
    return this.messages(channel).map((m) => m.position);
  }
}

/** Polls until `condition` holds; fails with `what` after `timeoutMs`. */
export async function until(
  condition: () => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** A loopback port with nothing listening on it (connections are refused). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
