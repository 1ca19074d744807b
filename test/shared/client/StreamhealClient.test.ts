import { WebSocketServer, type WebSocket } from 'ws';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SEED_BACKOFF, seedBackoff, type BackoffOptions } from '../../../shared/backoff.js';
import { CloseCodes } from '../../../shared/protocol/closeCodes.js';
import {
  StreamhealClient,
  StreamhealClientError,
  websocketEndpoint,
} from '../../../shared/client/index.js';
import { createNodeClient } from '../../../shared/client/node.js';
import { HeartbeatType, heartbeatType, pongFor } from '../../../shared/protocol/heartbeat.js';
import { keyRingFromSecret } from '../../../shared/tokens.js';
import { Cluster, closedPort, range, sleep, until, type RecordingClient } from './harness.js';

/** Publishes `count` messages straight into the store, one every `everyMs`. */
async function publishSlowly(
  cluster: Cluster,
  channel: string,
  count: number,
  everyMs = 2,
): Promise<void> {
  for (let i = 0; i < count; i++) {
    await cluster.store.append(channel, { i });
    await sleep(everyMs);
  }
}

function expectExactlyOnce(
  recording: RecordingClient,
  channel: string,
  from: number,
  to: number,
): void {
  expect(recording.positions(channel)).toEqual(range(from, to));
  expect(recording.client.stats.duplicates).toBe(0);
  expect(recording.client.stats.gaps).toBe(0);
  expect(recording.of('error').filter((e) => e.code === 'gap')).toEqual([]);
}

describe('StreamhealClient', () => {
  let cluster: Cluster;
  beforeEach(() => {
    cluster = new Cluster();
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await cluster.close();
  });

  describe('construction', () => {
    it('derives the WebSocket endpoint from http(s) and ws(s) base URLs', () => {
      expect(websocketEndpoint('http://127.0.0.1:8081')).toBe('ws://127.0.0.1:8081/v1/ws');
      expect(websocketEndpoint('https://push.example.com/base/')).toBe(
        'wss://push.example.com/base/v1/ws',
      );
      expect(websocketEndpoint('ws://h:1/v1/ws')).toBe('ws://h:1/v1/ws');
      expect(() => websocketEndpoint('ftp://h')).toThrow(/unsupported/);
    });

    it('throws a clear error when there is no WebSocket implementation', () => {
      vi.stubGlobal('WebSocket', undefined); // as in Node 20
      try {
        expect(() => new StreamhealClient({ urls: ['http://127.0.0.1:1'] })).toThrow(
          /no WebSocket implementation.*createNodeClient/s,
        );
      } finally {
        vi.unstubAllGlobals();
      }
      expect(() => createNodeClient({ urls: [] })).toThrow(/at least one/);
    });
  });

  it('subscribes and receives every message in order, from now or after a position', async () => {
    const gateway = await cluster.gateway();
    await cluster.publish(gateway, 'news', 'before');
    const recording = cluster.client([gateway.url]);
    const { client } = recording;
    await client.connect();
    expect(recording.of('connected')).toEqual([
      { url: gateway.url, session: expect.any(String), node: 'gw-1' },
    ]);
    expect(await client.subscribe('news')).toBe(1);
    for (let i = 0; i < 20; i++) await cluster.publish(gateway, 'news', { i });
    await until(() => recording.positions('news').length === 20, '20 messages');
    expectExactlyOnce(recording, 'news', 2, 21);
    expect(recording.messages('news').map((m) => m.data)).toEqual(range(0, 19).map((i) => ({ i })));
    expect(recording.messages('news')[0]!.time).toBeGreaterThan(Date.now() - 60_000);
    expect(client.position('news')).toBe(21);

    // From a position: history replayed, then live.
    for (let i = 0; i < 5; i++) await cluster.store.append('replay', i);
    expect(await client.subscribe('replay', { after: 2 })).toBe(2);
    await cluster.publish(gateway, 'replay', 5);
    await until(() => recording.positions('replay').length === 4, 'replayed messages');
    expectExactlyOnce(recording, 'replay', 3, 6);
    expect(recording.messages('replay').map((m) => m.data)).toEqual([2, 3, 4, 5]);
    expect(client.stats.messages).toBe(24);
    expect(client.stats.reconnects).toBe(0);

    // Unsubscribing stops delivery.
    await client.unsubscribe('news');
    expect(client.position('news')).toBeUndefined();
    await cluster.publish(gateway, 'news', 'after');
    await cluster.publish(gateway, 'replay', 6);
    await until(() => recording.positions('replay').length === 5, 'the next replay message');
    expect(recording.positions('news')).toHaveLength(20);

    // Subscribing again with another `after` rewinds the channel.
    expect(await client.subscribe('replay', { after: 4 })).toBe(4);
    await until(() => recording.positions('replay').length === 8, 'the replay from 5');
    expect(recording.positions('replay')).toEqual([3, 4, 5, 6, 7, 5, 6, 7]);
    expect(await client.subscribe('replay')).toBe(7);
  });

  it('rejects subscriptions the gateway refuses', async () => {
    const gateway = await cluster.gateway();
    const { client } = cluster.client([gateway.url]);
    await client.connect();
    await cluster.store.append('short', 1);
    await expect(client.subscribe('short', { after: 5 })).rejects.toMatchObject({
      code: 'position_from_future',
      channel: 'short',
    });
    expect(client.channels()).toEqual([]);
    await expect(client.subscribe('bad name')).rejects.toBeInstanceOf(StreamhealClientError);
  });

  it('resumes on the other gateway when its gateway shuts down, every position exactly once in order', async () => {
    const a = await cluster.gateway();
    const b = await cluster.gateway();
    const recording = cluster.client([a.url, b.url]);
    const { client } = recording;
    await client.connect();
    await client.subscribe('feed');
    await client.subscribe('other');
    const first = client.url === a.url ? a : b;
    const second = first === a ? b : a;
    const firstSession = client.session;

    const publishing = publishSlowly(cluster, 'feed', 300, 1);
    await until(() => recording.positions('feed').length >= 50, 'the first 50 messages');
    await first.close(); // closes every client with 4000 shutdown
    await publishing;
    await until(() => recording.positions('feed').length >= 300, 'all 300 messages');
    await sleep(50); // anything late would be a duplicate
    expectExactlyOnce(recording, 'feed', 1, 300);

    expect(recording.of('disconnected')).toEqual([
      { url: first.url, code: CloseCodes.shutdown.code, reason: CloseCodes.shutdown.reason },
    ]);
    const reconnecting = recording.of('reconnecting');
    expect(reconnecting).toHaveLength(1);
    expect(reconnecting[0]!.url).toBe(second.url);
    expect(reconnecting[0]!.delayMs).toBeLessThan(50); // the immediate try, spread over 0..50 ms
    expect(recording.of('resumed')).toEqual([
      { url: second.url, session: firstSession, channels: { feed: expect.any(Number), other: 0 } },
    ]);
    expect(recording.of('connected').map((c) => c.url)).toEqual([first.url, second.url]);
    expect(client.stats).toMatchObject({ reconnects: 1, resumes: 1, messages: 300 });
    // One resume frame on the new connection, with the token of the old one.
    expect(recording.of('resumed')[0]!.channels.feed).toBeLessThan(250); // the rest was replayed
    const resumes = recording.sent.filter((f) => f.type === 'resume');
    expect(resumes).toHaveLength(1);
    expect(resumes[0]!.channels).toMatchObject({ other: 0 });
    expect(client.session).toBe(firstSession);
  });

  it('reconnects to a different gateway when its connection vanishes abruptly', async () => {
    const a = await cluster.gateway();
    const b = await cluster.gateway();
    const recording = cluster.client([a.url, b.url]);
    const { client } = recording;
    await client.connect();
    await client.subscribe('live');
    const first = client.url === a.url ? a : b;
    const second = first === a ? b : a;

    const publishing = publishSlowly(cluster, 'live', 200, 1);
    await until(() => recording.positions('live').length >= 40, 'the first 40 messages');
    first.cut(); // TCP reset, no close frame: the gateway itself keeps running
    await publishing;
    await until(() => recording.positions('live').length >= 200, 'all 200 messages');
    expectExactlyOnce(recording, 'live', 1, 200);
    expect(recording.of('disconnected')).toEqual([{ url: first.url, code: 1006, reason: '' }]);
    expect(recording.of('connected').map((c) => c.url)).toEqual([first.url, second.url]);
    expect(recording.of('resumed')).toHaveLength(1);
  });

  it('reports history lost when it resumes past the history bound, then continues from the oldest', async () => {
    await cluster.close();
    cluster = new Cluster({ maxCount: 5, maxAgeMs: 60_000 });
    const a = await cluster.gateway();
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const backoff: Partial<BackoffOptions> = { baseMs: 30, capMs: 60 };
    const recording = cluster.client([a.url, dead], { random: () => 0, backoff });
    const { client } = recording;
    await client.connect();
    expect(client.url).toBe(a.url);
    await client.subscribe('bounded');
    for (let i = 1; i <= 3; i++) await cluster.store.append('bounded', i);
    await until(() => recording.positions('bounded').length === 3, '3 messages');

    await a.close(); // the client walks between the dead URL and a's closed port
    for (let i = 4; i <= 12; i++) await cluster.store.append('bounded', i); // history holds 8..12
    const restarted = await cluster.gateway({ port: a.port });
    await until(() => recording.of('resumed').length === 1, 'the resume');
    await until(() => client.position('bounded') === 12, 'position 12');

    expect(recording.of('history-lost')).toEqual([{ channel: 'bounded', oldest: 8, latest: 12 }]);
    expect(recording.positions('bounded')).toEqual([1, 2, 3, 8, 9, 10, 11, 12]);
    expect(client.stats).toMatchObject({ historyLost: 1, duplicates: 0, gaps: 0 });
    await cluster.store.append('bounded', 13);
    await until(() => client.position('bounded') === 13, 'live message 13');
    expect(restarted.url).toBe(a.url);
  });

  it('queues requests made while disconnected and sends them after the resume', async () => {
    const a = await cluster.gateway();
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const recording = cluster.client([a.url, dead], {
      random: () => 0,
      backoff: { baseMs: 30, capMs: 60 },
    });
    const { client } = recording;
    await client.connect();
    await client.subscribe('kept');
    await cluster.store.append('kept', 'k1');
    await until(() => recording.positions('kept').length === 1, 'k1');

    await a.close();
    await until(
      () => !client.isConnected && recording.of('reconnecting').length >= 2,
      'a failed attempt',
    );
    const fromNow = client.subscribe('fresh');
    const fromStart = client.subscribe('replayed', { after: 0 });
    await cluster.store.append('kept', 'k2');
    await cluster.store.append('replayed', 'r1');
    await cluster.store.append('fresh', 'f1'); // before the subscription: not delivered
    const sentBefore = recording.sent.length;
    await cluster.gateway({ port: a.port });

    expect(await fromStart).toBe(0);
    expect(await fromNow).toBe(1);
    await cluster.store.append('fresh', 'f2');
    await until(() => recording.positions('fresh').length === 1, 'f2');
    await until(
      () =>
        recording.positions('kept').length === 2 && recording.positions('replayed').length === 1,
      'k2, r1',
    );
    expectExactlyOnce(recording, 'kept', 1, 2);
    expect(recording.messages('replayed').map((m) => m.data)).toEqual(['r1']);
    expect(recording.messages('fresh').map((m) => m.data)).toEqual(['f2']);

    // After reconnecting: one resume with the positions held (and the explicit start asked
    // for), then the subscription that had no position yet.
    const after = recording.sent.slice(sentBefore);
    expect(after.map((f) => f.type)).toEqual(['resume', 'subscribe']);
    expect(after[0]!.channels).toEqual({ kept: 1, replayed: 0 });
    expect(after[1]).toMatchObject({ channel: 'fresh' });
    expect(after[1]!.after).toBeUndefined();
  });

  it('resumes the positions even when the gateway does not accept its resume token', async () => {
    const a = await cluster.gateway();
    const b = await cluster.gateway({ keyRing: keyRingFromSecret('y'.repeat(32)) });
    const recording = cluster.client([a.url, b.url], { random: () => 0 }); // starts on a
    const { client } = recording;
    await client.connect();
    expect(client.url).toBe(a.url);
    const oldSession = client.session;
    await client.subscribe('t');
    for (let i = 0; i < 5; i++) await cluster.store.append('t', i);
    await until(() => recording.positions('t').length === 5, '5 messages');

    await a.close();
    for (let i = 5; i < 10; i++) await cluster.store.append('t', i);
    await until(() => recording.of('resumed').length === 1, 'the resume');
    await until(() => recording.positions('t').length === 10, '10 messages');
    expectExactlyOnce(recording, 't', 1, 10);
    expect(recording.of('error').map((e) => e.code)).toEqual(['invalid_token']);
    const [resumed] = recording.of('resumed');
    expect(resumed).toMatchObject({ url: b.url, channels: { t: 5 } });
    expect(resumed!.session).not.toBe(oldSession);
    expect(client.session).toBe(resumed!.session);
  });

  it('walks the gateways with the seed backoff while every gateway is down', async () => {
    const urls = [];
    for (let i = 0; i < 3; i++) urls.push(`http://127.0.0.1:${await closedPort()}`);
    const backoff: BackoffOptions = { baseMs: 20, capMs: 160, jitter: 0.3, floorMs: 5 };
    let seed = 7;
    let lastRandom = 0;
    const random = () => {
      seed = (seed * 16807) % 2147483647;
      lastRandom = seed / 2147483647;
      return lastRandom;
    };
    const recording = cluster.client(urls, { random, backoff, spreadMs: 40 });
    const randoms: number[] = [];
    recording.client.on('reconnecting', () => randoms.push(lastRandom));
    const connecting = recording.client.connect();
    await until(() => recording.of('reconnecting').length >= 8, '8 attempts');
    await recording.client.close();
    await expect(connecting).rejects.toMatchObject({ code: 'closed' });

    const attempts = recording.events.filter((e) => e.event === 'reconnecting');
    const delays = recording.of('reconnecting').map((r) => r.delayMs);
    // The first retry is the immediate one (spread), then seedBackoff(0), (1), (2), …
    expect(delays[0]).toBeLessThan(40);
    for (let k = 1; k < delays.length; k++) {
      expect(delays[k]).toBe(seedBackoff(k - 1, backoff, () => randoms[k]!));
    }
    const exponential = [20, 40, 80, 160, 160, 160, 160];
    for (let k = 1; k < Math.min(delays.length, 8); k++) {
      expect(delays[k]).toBeGreaterThanOrEqual(exponential[k - 1]!);
      expect(delays[k]).toBeLessThan(exponential[k - 1]! * 1.3);
    }
    // Each attempt waited its delay before it was made (and failed).
    for (let k = 1; k < attempts.length; k++) {
      expect(attempts[k]!.at - attempts[k - 1]!.at).toBeGreaterThanOrEqual(delays[k - 1]! - 2);
    }
    // Always a different URL than the one that just failed, and every URL gets its turn.
    const tried = recording.of('reconnecting').map((r) => r.url);
    for (let k = 1; k < tried.length; k++) expect(tried[k]).not.toBe(tried[k - 1]);
    expect(new Set(tried)).toEqual(new Set(urls));
    expect(recording.of('connected')).toEqual([]);
    expect(recording.of('disconnected')).toEqual([]); // never connected, nothing to lose
    expect(recording.client.stats.reconnectAttempts).toBe(attempts.length);
    expect(SEED_BACKOFF).toEqual({ baseMs: 500, capMs: 60_000, jitter: 0.3, floorMs: 100 });
  });

  describe('against a scripted server', () => {
    let wss: WebSocketServer | undefined;
    afterEach(async () => {
      const server = wss;
      wss = undefined;
      if (!server) return;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const ws of server.clients) ws.terminate();
      await closed;
    });

    type Frame = Record<string, unknown> & { type: string };

    /** A bare WebSocket server that welcomes each connection and lets `onFrame` answer. */
    async function scriptedServer(
      onFrame: (frame: Frame, send: (frame: Frame) => void, ws: WebSocket) => void,
    ): Promise<{ url: string; connections: () => number }> {
      let connections = 0;
      wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
      await new Promise<void>((resolve) => wss!.once('listening', () => resolve()));
      wss.on('connection', (ws) => {
        connections++;
        const send = (frame: Frame) => ws.send(JSON.stringify(frame));
        const session = `s${connections}`;
        send({ type: 'welcome', version: 1, session, node: 'raw', resumeToken: 't', limits: {} });
        ws.on('message', (data: Buffer, isBinary) => {
          // Heartbeat pings (binary) are answered like a gateway does.
          if (isBinary)
            return void (heartbeatType(data) === HeartbeatType.ping && ws.send(pongFor(data)));
          onFrame(JSON.parse(String(data)) as Frame, send, ws);
        });
      });
      const { port } = wss.address() as { port: number };
      return { url: `ws://127.0.0.1:${port}`, connections: () => connections };
    }

    /** Welcomes, then closes the connection with `code` at the client's first frame. */
    function closingServer(code: number): Promise<{ url: string; connections: () => number }> {
      return scriptedServer((_frame, _send, ws) => ws.close(code, 'go away'));
    }

    it('drops duplicates and reports gaps defensively', async () => {
      const server = await scriptedServer((frame, send) => {
        if (frame.type !== 'subscribe') return;
        send({ type: 'subscribed', id: frame.id, channel: frame.channel, position: 0 });
        for (const position of [1, 2, 2, 1, 3, 5, 6]) {
          send({ type: 'message', channel: frame.channel, position, time: 1, data: position });
        }
      });
      const recording = cluster.client([server.url]);
      await recording.client.connect();
      await recording.client.subscribe('d');
      await until(() => recording.client.position('d') === 6, 'position 6');
      expect(recording.positions('d')).toEqual([1, 2, 3, 5, 6]);
      expect(recording.client.stats).toMatchObject({ messages: 5, duplicates: 2, gaps: 1 });
      expect(recording.of('error')).toEqual([
        { code: 'gap', channel: 'd', message: expect.stringContaining('1 missing') },
      ]);
    });

    it('retries a subscription the gateway could not make for want of its store', async () => {
      let subscribes = 0;
      const server = await scriptedServer((frame, send) => {
        if (frame.type !== 'subscribe') return;
        if (++subscribes === 1) {
          send({
            type: 'error',
            id: frame.id,
            code: 'store_unavailable',
            message: 'retry',
            channel: frame.channel,
          });
        } else {
          send({ type: 'subscribed', id: frame.id, channel: frame.channel, position: 7 });
        }
      });
      const recording = cluster.client([server.url], { backoff: { baseMs: 10 } });
      await recording.client.connect();
      expect(await recording.client.subscribe('s')).toBe(7);
      expect(subscribes).toBe(2);
      expect(recording.of('error')).toEqual([
        { code: 'store_unavailable', message: 'retry', channel: 's' },
      ]);
    });

    it('stops for good on a close code whose advice is never', async () => {
      const server = await closingServer(CloseCodes.badRequest.code);
      const recording = cluster.client([server.url], { random: () => 0.5 });
      const { client } = recording;
      await client.connect();
      await expect(client.subscribe('x')).rejects.toMatchObject({ code: 'fatal_close' });
      expect(recording.of('disconnected')).toEqual([
        { url: server.url, code: 4500, reason: 'go away' },
      ]);
      expect(recording.of('error')).toEqual([
        { code: 'fatal_close', message: expect.stringContaining('4500') },
      ]);
      await sleep(100);
      expect(server.connections()).toBe(1);
      expect(recording.of('reconnecting')).toEqual([]);
      await expect(client.subscribe('y')).rejects.toMatchObject({ code: 'closed' });
    });

    it('waits a backoff delay, not the spread, when the advice is backoff', async () => {
      const server = await closingServer(CloseCodes.internal.code);
      const backoff = { baseMs: 40, capMs: 1000 };
      const recording = cluster.client([server.url], { random: () => 0.5, backoff });
      const { client } = recording;
      await client.connect();
      void client.subscribe('x').catch(() => undefined);
      await until(() => recording.of('reconnecting').length >= 1, 'a reconnect');
      expect(recording.of('reconnecting')[0]).toEqual({
        url: server.url, // the only one
        attempt: 1,
        delayMs: seedBackoff(0, { ...SEED_BACKOFF, ...backoff }, () => 0.5),
      });
      await until(() => server.connections() === 2, 'the second connection');
    });
  });

  describe('close()', () => {
    /** Timers created by the SDK (by creation stack) that neither fired nor were cleared. */
    function trackSdkTimers(): Set<unknown> {
      const pending = new Set<unknown>();
      const realSet = globalThis.setTimeout;
      const realClear = globalThis.clearTimeout;
      vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms?: number) => {
        const fromSdk = /shared[/\\]client[/\\]StreamhealClient\.ts/.test(new Error().stack ?? '');
        const handle = realSet(() => {
          pending.delete(handle);
          fn();
        }, ms);
        if (fromSdk) pending.add(handle);
        return handle;
      }) as unknown as typeof setTimeout);
      vi.spyOn(globalThis, 'clearTimeout').mockImplementation(((handle?: NodeJS.Timeout) => {
        pending.delete(handle);
        realClear(handle);
      }) as typeof clearTimeout);
      return pending;
    }

    it('leaves no timers while connected, reconnecting or backing off', async () => {
      const pending = trackSdkTimers();
      const a = await cluster.gateway();
      const dead = `http://127.0.0.1:${await closedPort()}`;

      // Connected and subscribed.
      const connected = cluster.client([a.url, dead], { random: () => 0 }).client;
      await connected.connect();
      await connected.subscribe('c');
      await connected.close();
      expect(pending.size).toBe(0);

      // Backing off between dead gateways, with a long delay pending.
      const backingOff = cluster.client([dead, dead], { backoff: { baseMs: 60_000 } });
      const connecting = backingOff.client.connect();
      await until(() => backingOff.of('reconnecting').length >= 2, 'a backoff');
      expect(pending.size).toBeGreaterThan(0);
      await backingOff.client.close();
      await expect(connecting).rejects.toMatchObject({ code: 'closed' });
      expect(pending.size).toBe(0);

      // Closed while the socket is still connecting (its connect timeout pending).
      const early = cluster.client([a.url]).client;
      void early.connect();
      void early.subscribe('e').catch(() => undefined);
      expect(pending.size).toBe(1);
      await early.close();
      expect(pending.size).toBe(0);
      await expect(early.connect()).rejects.toMatchObject({ code: 'closed' });
    });
  });
});
