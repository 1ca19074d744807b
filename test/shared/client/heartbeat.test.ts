/**
 * The SDK's side of the heartbeat (seed 3.1): it pings with the binary frame through the
 * standard WebSocket API, answers the gateway's pings, and declares a gateway dead when it stops
 * answering while its TCP connection stays up (a frozen gateway: here a proxy that stops reading
 * and writing, so the kernel keeps acknowledging), then resumes on another gateway.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { WebSocket } from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  decodeHeartbeat,
  heartbeatClock,
  heartbeatDetectionBoundMs,
} from '../../../shared/protocol/heartbeat.js';
import {
  DEFAULT_CLIENT_HEARTBEAT,
  StreamhealClient,
  type WebSocketConstructor,
  type WebSocketLike,
} from '../../../shared/client/index.js';
import { Cluster, range, sleep, until } from './harness.js';

/**
 * A WebSocket with only the WHATWG surface a browser offers (no `terminate`, no `ws` events),
 * delivering binary messages as a Blob unless `binaryType` is 'arraybuffer', as browsers do.
 */
class BrowserLikeWebSocket implements WebSocketLike {
  static sent: unknown[] = [];
  binaryType = 'blob';
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  private readonly ws: WebSocket;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.binaryType = 'arraybuffer';
    this.ws.on('open', () => this.onopen?.({}));
    this.ws.on('message', (data: ArrayBuffer | Buffer, isBinary) => {
      const payload = !isBinary
        ? data.toString()
        : this.binaryType === 'arraybuffer'
          ? data
          : new Blob([data as ArrayBuffer]);
      this.onmessage?.({ data: payload });
    });
    this.ws.on('close', (code, reason) => this.onclose?.({ code, reason: reason.toString() }));
    this.ws.on('error', (error) => this.onerror?.(error));
  }

  get readyState(): number {
    return this.ws.readyState;
  }

  send(data: string | ArrayBufferLike | ArrayBufferView): void {
    BrowserLikeWebSocket.sent.push(data);
    this.ws.send(data as string);
  }

  close(code?: number, reason?: string): void {
    this.ws.close(code, reason);
  }
}

/** A TCP proxy to a gateway that can freeze: it stops reading and writing, sockets stay open. */
async function freezableProxy(target: number): Promise<{
  url: string;
  freeze: () => void;
  thaw: () => void;
  close: () => Promise<void>;
}> {
  const sockets = new Set<Socket>();
  let frozen = false;
  const server: Server = createServer((downstream) => {
    const upstream = connect(target, '127.0.0.1');
    sockets.add(downstream).add(upstream);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    if (frozen) downstream.pause();
    // A frozen process closes nothing: while frozen, one side closing leaves the other open.
    const drop = () => {
      for (const socket of frozen
        ? [downstream, upstream].filter((s) => s.destroyed)
        : [downstream, upstream]) {
        socket.destroy();
        sockets.delete(socket);
      }
    };
    downstream.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    freeze: () => {
      frozen = true;
      for (const socket of sockets) {
        socket.unpipe();
        socket.pause();
      }
    },
    thaw: () => {
      frozen = false;
      for (const socket of sockets) socket.resume();
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('client heartbeat', () => {
  let cluster: Cluster;
  const cleanups: (() => Promise<void>)[] = [];
  beforeEach(() => {
    cluster = new Cluster();
    BrowserLikeWebSocket.sent = [];
  });
  afterEach(async () => {
    await cluster.close();
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  it('pings through the standard WebSocket API and answers the gateway, as in a browser', async () => {
    const gateway = await cluster.gateway({
      heartbeat: { intervalMs: 100, timeoutMs: 100, sweepMs: 10 },
    });
    const recording = cluster.client([gateway.url], {
      WebSocket: BrowserLikeWebSocket as WebSocketConstructor,
      heartbeat: { intervalMs: 100 },
    });
    const { client } = recording;
    await client.connect();
    await until(() => (client.rttMs ?? -1) >= 0, 'an RTT measured');
    await until(
      () => (gateway.gateway.heartbeatSweep!.sessionHeartbeats()[0]?.samples ?? 0) >= 3,
      'three of the gateway pings answered',
    );
    const binary = BrowserLikeWebSocket.sent
      .filter((d) => typeof d !== 'string')
      .map((d) => decodeHeartbeat(d));
    expect(binary.every((frame) => frame !== null)).toBe(true);
    expect(binary.some((frame) => frame?.type === 'ping')).toBe(true);
    expect(binary.some((frame) => frame?.type === 'pong')).toBe(true);
    for (const frame of BrowserLikeWebSocket.sent) {
      if (typeof frame !== 'string') expect(frame).toBeInstanceOf(Uint8Array);
    }
    expect(recording.of('error')).toEqual([]);
    expect(client.stats).toMatchObject({ heartbeatMisses: 0, heartbeatTimeouts: 0 });
    expect(client.rttMs!).toBeLessThan(50);
  });

  it('sends no pings with heartbeat: false, and still answers the gateway', async () => {
    const gateway = await cluster.gateway({
      heartbeat: { intervalMs: 50, timeoutMs: 100, sweepMs: 10 },
    });
    const recording = cluster.client([gateway.url], { heartbeat: false });
    await recording.client.connect();
    await until(() => recording.sentBinary.length >= 3, 'three pongs');
    expect(recording.sentBinary.map((b) => decodeHeartbeat(b)?.type)).toEqual(
      recording.sentBinary.map(() => 'pong'),
    );
    expect(recording.client.rttMs).toBeUndefined();
  });

  it('refuses invalid heartbeat options', () => {
    const make = (heartbeat: object) => () =>
      new StreamhealClient({
        urls: ['http://127.0.0.1:1'],
        WebSocket: BrowserLikeWebSocket as WebSocketConstructor,
        heartbeat,
      });
    expect(make({ intervalMs: 0 })).toThrow(TypeError);
    expect(make({ timeoutMs: -5 })).toThrow(TypeError);
    expect(make({ probeMs: 0 })).toThrow(TypeError);
    expect(make({ misses: 1.5 })).toThrow(TypeError);
    expect(make({ misses: Number.NaN })).toThrow(TypeError);
    expect(make({ intervalMs: 250 })).not.toThrow();
  });

  it('declares a frozen gateway dead within the bound and resumes on another, every position once', async () => {
    const a = await cluster.gateway({ heartbeat: true });
    const b = await cluster.gateway({ heartbeat: true });
    const proxy = await freezableProxy(a.port);
    cleanups.push(proxy.close);
    const recording = cluster.client([proxy.url, b.url], { random: () => 0 });
    const { client } = recording;
    await client.connect();
    expect(client.url).toBe(proxy.url);
    await client.subscribe('live');
    let stop = false;
    let published = 0;
    const publishing = (async () => {
      while (!stop) {
        published = await cluster.publish(b, 'live', { n: published });
        await sleep(5);
      }
    })();
    await until(() => recording.positions('live').length >= 30, '30 messages before the freeze');
    const frozenAt = heartbeatClock();
    proxy.freeze();
    await until(() => recording.of('degraded').length === 1, 'the frozen gateway declared dead');
    const detectedMs = heartbeatClock() - frozenAt;
    await until(() => client.url === b.url && client.isConnected, 'resumed on the other gateway');
    await sleep(200);
    stop = true;
    await publishing;
    await until(
      () => recording.positions('live').length === published,
      `all ${published} messages`,
    );
    proxy.thaw();

    const bound = heartbeatDetectionBoundMs(DEFAULT_CLIENT_HEARTBEAT);
    console.log(
      `frozen gateway (SDK side): declared dead ${detectedMs} ms after the freeze (bound ${bound} ms + timer delay)`,
    );
    // Messages arrived every few ms until the freeze, so the client's first ping left one
    // interval after the freeze, and the third timed out two probes and a timeout later.
    expect(bound).toBe(1_400);
    expect(detectedMs).toBeGreaterThanOrEqual(bound - 50);
    expect(detectedMs).toBeLessThanOrEqual(bound + 100);
    expect(recording.of('degraded')).toEqual([
      {
        url: proxy.url,
        node: 'gw-1',
        reason: 'heartbeat',
        misses: 3,
        silentMs: expect.any(Number),
        srttMs: expect.any(Number),
      },
    ]);
    expect(recording.of('degraded')[0]!.silentMs).toBeGreaterThanOrEqual(bound - 1);
    expect(recording.of('disconnected')).toEqual([
      { url: proxy.url, code: 1006, reason: expect.stringContaining('heartbeat timeout') },
    ]);
    expect(recording.of('reconnecting')[0]).toMatchObject({ url: b.url, attempt: 1 });
    expect(recording.positions('live')).toEqual(range(1, published));
    expect(client.stats).toMatchObject({
      duplicates: 0,
      gaps: 0,
      heartbeatTimeouts: 1,
      heartbeatMisses: 2,
      resumes: 1,
    });
  }, 20_000);
});
