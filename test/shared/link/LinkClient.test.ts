/**
 * The control link's connection pool with real parts: a real LinkServer on 127.0.0.1, real
 * WebSockets, requests held in flight by the server's store until the test releases them.
 * The CPU reading (the seed's first trigger) and the clock are the test's inputs.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { InProcessBus } from '../../../shared/bus/InProcessBus.js';
import { makeEvent } from '../../../shared/bus/events.js';
import { StoreUnavailableError } from '../../../shared/errors.js';
import type { LinkClient, LinkPoolOptions } from '../../../shared/link/LinkClient.js';
import { RemoteBus } from '../../../shared/link/RemoteBus.js';
import { RemoteStore } from '../../../shared/link/RemoteStore.js';
import type { PoolEvent } from '../../../shared/pool/ConnectionPool.js';
import { PoolConnectError } from '../../../shared/pool/scaling.js';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';
import type { ChannelWatchEvent, RecordWatchEvent } from '../../../shared/store/StateStore.js';
import {
  Closer,
  connect,
  handles,
  holdingStore,
  ManualClock,
  serverSockets,
  sleep,
  startLink,
  trackHandles,
  waitFor,
} from './linkHarness.js';

const MINUTE = 60_000;

/** Handles once what earlier tests closed has finished closing. */
async function settledHandles(): Promise<Record<string, number>> {
  let previous = JSON.stringify(handles());
  for (;;) {
    await sleep(50);
    const current = JSON.stringify(handles());
    if (current === previous) return handles();
    previous = current;
  }
}

describe('control link pool', () => {
  const closer = new Closer();
  afterEach(() => closer.closeAll());

  async function setup(pool: LinkPoolOptions, requestTimeoutMs = 30_000) {
    const backing = closer.add(new MemoryStore());
    const holding = holdingStore(backing);
    const bus = closer.add(new InProcessBus());
    const link = closer.add(await startLink({ store: holding.store, bus }));
    closer.add({ close: () => holding.release() });
    const sockets = serverSockets(link);
    const events: PoolEvent<unknown>[] = [];
    const client = closer.add(
      connect(link.url, {
        requestTimeoutMs,
        pool: { evaluateEveryMs: 20, onEvent: (event) => events.push(event), ...pool },
      }),
    );
    await client.waitOpen();
    const store = new RemoteStore(client);
    /** Starts `n` requests that stay in flight until released; waits until the server has them. */
    const hold = async (n: number): Promise<Array<Promise<unknown>>> => {
      const before = holding.held();
      const requests = Array.from({ length: n }, (_, i) => store.get(`held:${before + i}`));
      // Tests that do not await them end with the client closed under them.
      for (const request of requests) request.catch(() => undefined);
      await waitFor(() => holding.held() === before + n);
      return requests;
    };
    const scaleUps = () => events.filter((e) => e.type === 'scaleUp');
    return { backing, bus, link, sockets, events, client, store, holding, hold, scaleUps };
  }

  it('grows by 2 when requests in flight reach 90 % of capacity while the CPU is busy, not at 80 %', async () => {
    const clock = new ManualClock();
    const { client, sockets, hold, holding, scaleUps } = await setup({
      capacity: 10,
      maxSize: 5,
      cpu: () => 0.95,
      clock,
    });
    expect(sockets).toHaveLength(1);

    // 8 of 10 in flight (80 %): several ticks go by, nothing grows.
    const first = await hold(8);
    await sleep(150);
    expect(client.evaluatePool()).toEqual({ kind: 'hold', reason: 'steady' });
    expect(sockets).toHaveLength(1);
    expect(scaleUps()).toEqual([]);

    // The 9th (90 %): the pool opens 2 more connections.
    const ninth = await hold(1);
    await waitFor(() => sockets.length === 3 && client.poolStats().open === 3);
    expect(scaleUps()).toMatchObject([{ type: 'scaleUp', add: 2, targetSize: 3, inFlight: 9 }]);

    // New requests go to the least busy connections.
    const spread = await hold(6);
    expect(client.poolStats().members.map((m) => m.inFlight)).toEqual([9, 3, 3]);

    // 27 of 30 in flight (90 %) again, within the 30 s cool-down: no growth.
    const more = await hold(12);
    expect(client.poolStats()).toMatchObject({ inFlight: 27, size: 3 });
    await sleep(150);
    expect(client.evaluatePool()).toEqual({
      kind: 'coolingDown',
      untilMs: clock.now() + 30_000,
      pending: 'scaleUp',
    });
    expect(sockets).toHaveLength(3);
    expect(scaleUps()).toHaveLength(1);

    // Cool-down over: grows by the step again, up to maxSize.
    clock.advance(29_999);
    await sleep(100);
    expect(sockets).toHaveLength(3);
    clock.advance(1);
    await waitFor(() => sockets.length === 5 && client.poolStats().open === 5);
    expect(scaleUps()).toHaveLength(2);
    clock.advance(30_000);
    await hold(18); // 45 of 50
    expect(client.evaluatePool()).toEqual({ kind: 'hold', reason: 'atMaxSize' });

    holding.release();
    const answers = await Promise.all([...first, ...ninth, ...spread, ...more]);
    expect(answers.every((answer) => answer === undefined)).toBe(true);
  });

  it('does not grow a full pool while the CPU is not busy (the seed asks for both)', async () => {
    let cpu = 0.5;
    const { client, sockets, hold, scaleUps } = await setup({
      capacity: 10,
      cpu: () => cpu,
      clock: new ManualClock(),
    });
    await hold(15); // 150 % of one connection's capacity
    await sleep(150);
    expect(client.evaluatePool()).toEqual({ kind: 'hold', reason: 'steady' });
    expect(sockets).toHaveLength(1);
    cpu = 0.81;
    await waitFor(() => sockets.length === 3);
    expect(scaleUps()).toHaveLength(1);
  });

  it('reclaims connections idle for more than 5 minutes, down to the one carrying watches', async () => {
    const clock = new ManualClock();
    const { client, store, backing, sockets, events, hold, holding } = await setup({
      capacity: 2,
      cpu: () => 0.95,
      clock,
    });
    const received: number[] = [];
    closer.add(
      await store.watchChannel('c', undefined, (e) => {
        if (e.type === 'message') received.push(e.message.position);
      }),
    );
    const requests = await hold(2);
    await waitFor(() => sockets.length === 3 && client.poolStats().open === 3);
    holding.release();
    await Promise.all(requests);
    expect(client.poolStats().members.map((m) => [m.inFlight, m.pins])).toEqual([
      [0, 1],
      [0, 0],
      [0, 0],
    ]);

    clock.advance(5 * MINUTE);
    await sleep(150);
    expect(client.evaluatePool()).toEqual({ kind: 'hold', reason: 'steady' });
    expect(sockets).toHaveLength(3);

    clock.advance(1);
    await waitFor(() => sockets.length === 1 && client.poolStats().open === 1);
    const reclaim = events.find((e) => e.type === 'reclaim');
    expect(reclaim).toMatchObject({ closed: ['c2', 'c3'], size: 1 });
    expect(client.poolStats().members).toEqual([{ id: 'c1', inFlight: 0, pins: 1 }]);

    // The watch never noticed.
    await backing.append('c', 'after');
    await store.append('c', 'and through the link');
    await waitFor(() => received.length === 2);
    expect(received).toEqual([1, 2]);
  });

  it('gives up after 5 attempts against a closed port, says so clearly, and recovers when the server comes', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const events: PoolEvent<unknown>[] = [];
    const started = Date.now();
    const client = closer.add(
      connect(`ws://127.0.0.1:${port}/v1/control-link`, {
        pool: { onEvent: (event) => events.push(event) },
      }),
    );
    await waitFor(() => client.state === 'failed', 10_000);
    const elapsed = Date.now() - started;
    const attempts = events.filter((e) => e.type === 'attemptFailed');
    expect(attempts.map((e) => e.attempt)).toEqual([1, 2, 3, 4, 5]);
    // At once twice, then seedBackoff(0) ≈ 0.5–0.65 s and seedBackoff(1) ≈ 1–1.3 s.
    expect(elapsed).toBeGreaterThanOrEqual(1_500);
    expect(elapsed).toBeLessThan(4_000);
    const failed = events.filter((e) => e.type === 'connectFailed');
    expect(failed).toHaveLength(1);
    const report = failed[0] as Extract<PoolEvent<unknown>, { type: 'connectFailed' }>;
    expect(report.error).toBeInstanceOf(PoolConnectError);
    expect(report.error).toMatchObject({ code: 'pool_connect_failed', attempts: 5 });
    expect(report.error.cause).toMatchObject({ code: 'ECONNREFUSED' });

    // Every call fails at once, saying why.
    const store = new RemoteStore(client);
    const t0 = Date.now();
    const error = await store.get('k').catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(100);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as Error).message).toMatch(
      /could not connect after 5 attempts \(connect ECONNREFUSED 127\.0\.0\.1:\d+\)/,
    );
    expect((error as Error).cause).toBe(report.error);

    // It keeps trying at the backoff's pace: a control process that comes back is found.
    const backing = closer.add(new MemoryStore());
    closer.add(await startLink({ store: backing, port }));
    await client.waitOpen(15_000);
    expect(await store.append('c', 'back')).toMatchObject({ position: 1 });
  }, 30_000);

  it('keeps watches, subscriptions and bus order through the loss of the connection they ride', async () => {
    const clock = new ManualClock();
    const { client, store, backing, bus, sockets, hold, holding } = await setup(
      { capacity: 2, maxSize: 3, cpu: () => 0.95, clock },
      10_000,
    );
    const remoteBus = closer.add(new RemoteBus(client));
    const fromStart: ChannelWatchEvent[] = [];
    const records: RecordWatchEvent[] = [];
    const seen: number[] = [];
    closer.add(await store.watchChannel('c', 0, (e) => fromStart.push(e)));
    closer.add(await store.watch('nodes/', (e) => records.push(e)));
    remoteBus.subscribe({ source: ['streamheal.test'], 'detail-type': ['seen'] }, (e) => {
      seen.push(e.detail.n as number);
    });
    const delivered: Array<{ id: string; n: number }> = [];
    bus.subscribe({ source: ['streamheal.test'], 'detail-type': ['put'] }, (e) => {
      delivered.push({ id: e.id, n: e.detail.n as number });
    });
    await waitFor(async () => {
      await bus.put([makeEvent('streamheal.test', 'seen', { n: 0 })]);
      return seen.length > 0;
    });

    const requests = await hold(2);
    await waitFor(() => client.poolStats().open === 3);
    holding.release();
    await Promise.all(requests);
    // Everything long-lived is on the oldest connection: 3 streams and the bus's lane.
    await remoteBus.put([makeEvent('streamheal.test', 'put', { n: 0 })]);
    expect(client.poolStats().members.map((m) => m.pins)).toEqual([4, 0, 0]);

    // Writers keep going while the oldest connection is cut on the server side.
    let positions = 0;
    const appends = (async () => {
      for (let i = 0; i < 60; i++) {
        await backing.append('c', i);
        positions++;
        if (i % 3 === 0) {
          await store.append('c', `link ${i}`).then(
            () => positions++,
            () => undefined, // in flight on the cut connection: may or may not have landed
          );
        }
        await sleep(2);
      }
    })();
    const puts = (async () => {
      for (let n = 1; n <= 60; n++) {
        await remoteBus.put([makeEvent('streamheal.test', 'put', { n })]);
        await sleep(2);
      }
    })();
    await sleep(30);
    sockets[0]?.destroy();
    await backing.put('nodes/a', 'written while the watch moves');
    await Promise.all([appends, puts]);
    await waitFor(() => client.poolStats().open === 2);
    expect(client.poolStats().members.map((m) => m.pins)).toEqual([4, 0]);

    const total = (await backing.read('c', 0, 1_000)).messages.length;
    expect(total).toBeGreaterThanOrEqual(positions);
    await waitFor(() => fromStart.filter((e) => e.type === 'message').length >= total);
    expect(fromStart.map((e) => (e.type === 'message' ? e.message.position : e))).toEqual(
      Array.from({ length: total }, (_, i) => i + 1),
    );
    await waitFor(() => records.length === 1);
    expect(records[0]).toMatchObject({ type: 'put', record: { key: 'nodes/a' } });

    // Bus: at least once (a batch whose answer was cut is sent again), in put order.
    await waitFor(() => new Set(delivered.map((d) => d.n)).size === 61);
    const firstSeen: number[] = [];
    const ids = new Set<string>();
    for (const d of delivered) {
      if (ids.has(d.id)) continue;
      ids.add(d.id);
      firstSeen.push(d.n);
    }
    expect(firstSeen).toEqual(Array.from({ length: 61 }, (_, i) => i));

    // The subscription moved too.
    await waitFor(async () => {
      await bus.put([makeEvent('streamheal.test', 'seen', { n: 1 })]);
      return seen.includes(1);
    });
  });

  it('fails only the requests in flight on a lost connection, and replaces the last one', async () => {
    const { client, store, sockets, hold, events } = await setup({
      capacity: 2,
      cpu: () => 0.95,
      clock: new ManualClock(),
    });
    const first = await hold(2);
    await waitFor(() => sockets.length === 3 && client.poolStats().open === 3);
    const second = await hold(2); // on c2 and c3
    expect(client.poolStats().members.map((m) => m.inFlight)).toEqual([2, 1, 1]);
    const outcomes = Promise.allSettled([...first, ...second]);
    sockets[1]?.destroy();
    await waitFor(() => client.poolStats().open === 2);
    expect(client.poolStats().members.map((m) => m.id)).toEqual(['c1', 'c3']);
    expect(events.filter((e) => e.type === 'lost')).toHaveLength(1);
    expect(client.state).toBe('open');
    expect(await store.append('c', 'still fine')).toMatchObject({ position: 1 });

    // Losing the rest: the floor (one connection) is opened again at once.
    sockets[0]?.destroy();
    sockets[1]?.destroy();
    await waitFor(() => client.poolStats().open === 1 && sockets.length === 1);
    expect(client.poolStats().members.map((m) => m.id)).toEqual(['c4']);
    const settled = await outcomes;
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected']);
    for (const s of settled) {
      if (s.status === 'rejected') expect(s.reason).toBeInstanceOf(StoreUnavailableError);
    }
  });

  it('leaves no socket, timer or immediate behind when closed, or when its signal aborts', async () => {
    const backing = closer.add(new MemoryStore());
    const holding = holdingStore(backing);
    const link = closer.add(await startLink({ store: holding.store, bus: new InProcessBus() }));
    closer.add({ close: () => holding.release() });
    const sockets = serverSockets(link);
    const baseline = await settledHandles();

    for (const how of ['close', 'abort'] as const) {
      const tracked = trackHandles();
      const controller = new AbortController();
      const client: LinkClient = connect(link.url, {
        requestTimeoutMs: 10_000,
        signal: controller.signal,
        pool: { capacity: 2, cpu: () => 0.95, evaluateEveryMs: 10 },
      });
      await client.waitOpen();
      const store = new RemoteStore(client);
      const bus = new RemoteBus(client);
      await store.watchChannel('c', undefined, () => undefined);
      await store.watch('', () => undefined);
      bus.subscribe({ source: ['streamheal.test'] }, () => undefined);
      await bus.put([makeEvent('streamheal.test', 'x', {})]);
      const held = [0, 1, 2].map((i) => store.get(`held:${how}${i}`).catch((e: unknown) => e));
      await waitFor(() => client.poolStats().open === 3 && sockets.length === 3);
      expect(tracked.live()).toMatchObject({ TCPWRAP: 6, Timeout: expect.any(Number) });

      if (how === 'close') await client.close();
      else controller.abort();
      for (const answer of await Promise.all(held)) {
        expect(answer).toBeInstanceOf(StoreUnavailableError);
      }
      expect(client.state).toBe('closed');
      await waitFor(() => sockets.length === 0);
      await waitFor(() => Object.keys(tracked.live()).length === 0, 500).catch(() => undefined);
      tracked.stop();
      expect(tracked.live()).toEqual({});
      expect(handles()).toEqual(baseline);
      holding.release();
    }

    // Closed while retrying a closed port (a backoff timer pending): nothing left either.
    const port = link.port;
    await link.stop();
    const before = await settledHandles();
    const tracked = trackHandles();
    const retrying = connect(`ws://127.0.0.1:${port}/v1/control-link`);
    await waitFor(() => retrying.poolStats().connectFailures === 0 && retrying.state === 'down');
    await sleep(20); // attempts 1–3 failed at once; the 4th waits for seedBackoff(0) ≥ 500 ms
    expect(retrying.poolStats().opening).toBe(1);
    expect(tracked.live()).toMatchObject({ Timeout: expect.any(Number) });
    await retrying.close();
    await waitFor(() => Object.keys(tracked.live()).length === 0, 300).catch(() => undefined);
    tracked.stop();
    expect(tracked.live()).toEqual({});
    expect(handles()).toEqual(before);
  });
});
