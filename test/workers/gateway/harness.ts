/** In-process gateways on real loopback sockets, sharing one store, and a raw WebSocket test client. */
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

export const PUBLISH_KEY = 'publish-key-for-tests';
export const keyRing = keyRingFromSecret('a-cluster-secret-for-tests');

export class Cluster {
  readonly store: MemoryStore;
  readonly bus = new InProcessBus();
  readonly gateways: Gateway[] = [];
  private readonly clients: TestClient[] = [];

  constructor(limits?: HistoryLimits) {
    this.store = new MemoryStore(limits ? { limits } : {});
  }

  async gateway(options: Partial<GatewayOptions> = {}): Promise<Gateway> {
    const gateway = await startGateway({
      nodeId: `gateway-${this.gateways.length + 1}`,
      store: this.store,
      bus: this.bus,
      keyRing,
      publishKey: PUBLISH_KEY,
      logger: createLogger('test', 'silent'),
      ...options,
    });
    this.gateways.push(gateway);
    return gateway;
  }

  async client(gateway: Gateway, headers: Record<string, string> = {}): Promise<TestClient> {
    const client = await TestClient.connect(`${gateway.url.replace('http', 'ws')}/v1/ws`, headers);
    this.clients.push(client);
    return client;
  }

  async close(): Promise<void> {
    for (const client of this.clients) client.ws.terminate();
    await Promise.all(this.gateways.map((g) => g.close()));
    await this.bus.close();
    await this.store.close();
  }
}

export type Frame = Record<string, unknown> & { type: string };

export class TestClient {
  readonly frames: Frame[] = [];
  closeCode?: number;
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.frames.push(JSON.parse(String(data)) as Frame);
      this.notify();
    });
    ws.on('close', (code) => {
      this.closeCode = code;
      this.notify();
    });
  }

  static async connect(url: string, headers: Record<string, string> = {}): Promise<TestClient> {
    const ws = new WebSocket(url, { headers });
    const client = new TestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    await client.next((f) => f.type === 'welcome');
    return client;
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** The first frame (from the start) matching `predicate`, waiting up to `timeoutMs`. */
  async next(predicate: (frame: Frame) => boolean, timeoutMs = 3_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(predicate);
      if (found) return found;
      if (Date.now() > deadline)
        throw new Error(`no matching frame; got ${JSON.stringify(this.frames.slice(-5))}`);
      await this.changed(deadline - Date.now());
    }
  }

  messages(channel: string): number[] {
    return this.frames
      .filter((f) => f.type === 'message' && f.channel === channel)
      .map((f) => f.position as number);
  }

  async waitForMessages(channel: string, count: number, timeoutMs = 5_000): Promise<number[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages(channel).length < count) {
      if (Date.now() > deadline)
        throw new Error(`got ${this.messages(channel).length} of ${count} messages on ${channel}`);
      await this.changed(deadline - Date.now());
    }
    return this.messages(channel);
  }

  async closed(timeoutMs = 3_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.closeCode === undefined) {
      if (Date.now() > deadline) throw new Error('connection not closed');
      await this.changed(deadline - Date.now());
    }
    return this.closeCode;
  }

  private changed(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, timeoutMs));
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

export function publish(
  gateway: Gateway,
  body: unknown,
  key = PUBLISH_KEY,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${gateway.url}/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
