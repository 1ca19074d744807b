/**
 * The generic pool over real TCP connections to a server on 127.0.0.1. The test brackets
 * requests itself (begin/end) and moves the clock; the connections, their failures and their
 * loss are real. (The control link's pool under real requests: test/shared/link/LinkClient.test.ts.)
 */
import { createServer, Socket, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { errorCode } from '../../../shared/errors.js';
import {
  ConnectionPool,
  PoolClosedError,
  processCpuReading,
  type ConnectionPoolOptions,
  type PoolEvent,
} from '../../../shared/pool/ConnectionPool.js';
import { PoolConnectError } from '../../../shared/pool/scaling.js';
import { ManualClock, sleep, trackHandles, waitFor } from '../link/linkHarness.js';

const MINUTE = 60_000;
/** Small backoff so the give-up tests run in well under a second. */
const FAST_BACKOFF = { baseMs: 40, capMs: 200, jitter: 0.3, floorMs: 10 };

interface Peer {
  server: Server;
  port: number;
  /** Server-side sockets still open, oldest first. */
  sockets: Socket[];
  stop(): Promise<void>;
}

async function startPeer(port = 0): Promise<Peer> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.splice(sockets.indexOf(socket), 1));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    sockets,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The peer's end of one of the pool's sockets. */
function serverSide(peer: Peer, client: Socket): Socket {
  const found = peer.sockets.find((socket) => socket.remotePort === client.localPort);
  if (found === undefined) throw new Error(`no server socket for port ${client.localPort}`);
  return found;
}

async function closedPort(): Promise<number> {
  const peer = await startPeer();
  await peer.stop();
  return peer.port;
}

/** `connect` / `disconnect` for plain TCP sockets, counting attempts. */
function tcp(port: number): Pick<ConnectionPoolOptions<Socket>, 'connect' | 'disconnect'> & {
  attempts: number;
} {
  const connector = {
    attempts: 0,
    connect: ({ signal, lost }: Parameters<ConnectionPoolOptions<Socket>['connect']>[0]) =>
      new Promise<Socket>((resolve, reject) => {
        connector.attempts++;
        const socket = new Socket();
        const abort = (): void => void socket.destroy(new Error('aborted'));
        signal.addEventListener('abort', abort, { once: true });
        socket.once('error', (error) => {
          signal.removeEventListener('abort', abort);
          reject(error);
        });
        socket.connect(port, '127.0.0.1', () => {
          signal.removeEventListener('abort', abort);
          socket.removeAllListeners('error');
          socket.on('error', () => undefined);
          socket.once('close', () => lost(new Error('peer closed')));
          resolve(socket);
        });
      }),
    disconnect: (socket: Socket) =>
      new Promise<void>((resolve) => {
        if (socket.closed) resolve();
        else {
          socket.once('close', () => resolve());
          socket.destroy();
        }
      }),
  };
  return connector;
}

describe('ConnectionPool', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  function pool(port: number, options: Partial<ConnectionPoolOptions<Socket>> = {}) {
    const connector = tcp(port);
    const events: PoolEvent<Socket>[] = [];
    const made = new ConnectionPool<Socket>({
      ...connector,
      evaluateEveryMs: 20,
      onEvent: (event) => events.push(event),
      ...options,
    });
    cleanup.push(() => made.close());
    return { pool: made, events, connector };
  }

  it('opens the floor, lends the least busy connection, and reports size and busy', async () => {
    const peer = await startPeer();
    cleanup.push(() => peer.stop());
    const { pool: p } = pool(peer.port, { minSize: 2, capacity: 4, cpu: () => 0 });
    await p.ready();
    await waitFor(() => p.members.length === 2 && peer.sockets.length === 2);
    const [a, b] = p.members;
    p.begin(p.pick()!);
    p.begin(p.pick()!);
    p.begin(p.pick()!);
    expect([a!.inFlight, b!.inFlight]).toEqual([2, 1]);
    expect(p.stats()).toMatchObject({
      state: 'open',
      size: 2,
      open: 2,
      inFlight: 3,
      capacity: 4,
      busyShare: 3 / 8,
    });
    p.end(a!);
    p.end(a!);
    p.end(a!); // one too many: ignored
    expect(p.stats().inFlight).toBe(1);
  });

  it('holds a reclaim that is due until the cool-down after a growth is over', async () => {
    const peer = await startPeer();
    cleanup.push(() => peer.stop());
    const clock = new ManualClock();
    const { pool: p, events } = pool(peer.port, {
      capacity: 10,
      maxSize: 10,
      cpu: () => 0.9,
      clock,
      evaluateEveryMs: 60_000, // the test asks the policy itself
    });
    await p.ready();
    const c1 = p.members[0]!;
    p.pin(c1); // carries a watch: never idle

    // Growth at t0: 9 of 10 in flight on c1.
    for (let i = 0; i < 9; i++) p.begin(c1);
    await waitFor(() => p.members.length === 3 && peer.sockets.length === 3);
    expect(events.filter((e) => e.type === 'scaleUp')).toHaveLength(1);
    for (let i = 0; i < 9; i++) p.end(c1);
    // c2 and c3 never carry a request: they are idle from when they opened (t0).

    // Growth again at t0 + 5 min (27 of 30 in flight, all on c1).
    clock.advance(5 * MINUTE);
    for (let i = 0; i < 27; i++) p.begin(c1);
    expect(p.evaluate()).toMatchObject({ kind: 'scaleUp', add: 2, targetSize: 5 });
    await waitFor(() => p.members.length === 5);
    for (let i = 0; i < 27; i++) p.end(c1);

    // c2 and c3 have been idle over 5 minutes, but the last scaling was 10 s ago.
    clock.advance(10_000);
    expect(p.evaluate()).toEqual({
      kind: 'coolingDown',
      untilMs: clock.now() + 20_000,
      pending: 'reclaim',
    });
    clock.advance(20_000);
    expect(p.evaluate()).toEqual({ kind: 'reclaim', close: ['c2', 'c3'] });
    expect(p.members.map((m) => m.id)).toEqual(['c1', 'c4', 'c5']);
    await waitFor(() => peer.sockets.length === 3);
    expect(p.stats()).toMatchObject({ scaleUps: 2, reclaimed: 2 });

    // c4 and c5 go when their turn comes; c1 (pinned) and the floor stay.
    clock.advance(5 * MINUTE);
    expect(p.evaluate()).toEqual({ kind: 'reclaim', close: ['c4', 'c5'] });
    clock.advance(60 * MINUTE);
    expect(p.evaluate()).toEqual({ kind: 'hold', reason: 'steady' });
    expect(p.members.map((m) => m.id)).toEqual(['c1']);
  });

  it('reopens the floor when its connection is lost, but not a lost extra one', async () => {
    const peer = await startPeer();
    cleanup.push(() => peer.stop());
    const { pool: p, events } = pool(peer.port, { minSize: 1, capacity: 1, cpu: () => 0.9 });
    await p.ready();
    p.begin(p.members[0]!);
    await waitFor(() => p.members.length === 3 && peer.sockets.length === 3);
    const [c1, c2, c3] = p.members.map((m) => serverSide(peer, m.connection));
    c3!.destroy(); // an extra one
    await waitFor(() => p.members.length === 2);
    await sleep(50);
    expect(p.members.map((m) => m.id)).toEqual(['c1', 'c2']);
    expect(p.stats().inFlight).toBe(1);
    c1!.destroy(); // the floor's, with a request in flight
    c2!.destroy();
    await waitFor(() => p.members.length === 1 && p.members[0]!.id === 'c4');
    const lost = events.filter((e) => e.type === 'lost').map((e) => e.member.id);
    expect(lost[0]).toBe('c3');
    expect(lost.slice(1).sort()).toEqual(['c1', 'c2']);
    expect(p.stats()).toMatchObject({ state: 'open', inFlight: 0, lost: 3 });
  });

  it('gives up after 5 attempts with a PoolConnectError, and without recover stops there', async () => {
    const port = await closedPort();
    const {
      pool: p,
      events,
      connector,
    } = pool(port, {
      recover: false,
      connectRetry: { backoff: FAST_BACKOFF },
    });
    const started = Date.now();
    const error = await p.ready().catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(error).toBeInstanceOf(PoolConnectError);
    expect(errorCode(error)).toBe('pool_connect_failed');
    expect((error as PoolConnectError).attempts).toBe(5);
    expect((error as PoolConnectError).cause).toMatchObject({ code: 'ECONNREFUSED' });
    expect((error as Error).message).toBe('could not connect after 5 attempts');
    expect(p.state).toBe('failed');
    expect(p.lastError).toBe(error);
    // At once, at once, then backoff(0) ≥ 40 ms and backoff(1) ≥ 80 ms.
    expect(elapsed).toBeGreaterThanOrEqual(120);
    const failures = events.filter((e) => e.type === 'attemptFailed');
    expect(failures.map((e) => [e.attempt, e.retryInMs === 0])).toEqual([
      [1, true],
      [2, true],
      [3, false],
      [4, false],
      [5, false],
    ]);
    expect(failures.at(-1)).toMatchObject({ attempt: 5, retryInMs: undefined });
    expect(events.filter((e) => e.type === 'connectFailed')).toHaveLength(1);

    // Nothing more is tried; a later ready() says why at once.
    await sleep(400);
    expect(connector.attempts).toBe(5);
    await expect(p.ready()).rejects.toBe(error);
  });

  it('with recover, keeps trying after reporting, and opens when the peer appears', async () => {
    const port = await closedPort();
    const { pool: p, events, connector } = pool(port, { connectRetry: { backoff: FAST_BACKOFF } });
    await expect(p.ready()).rejects.toBeInstanceOf(PoolConnectError);
    await waitFor(() => connector.attempts >= 7);
    expect(events.filter((e) => e.type === 'connectFailed')).toHaveLength(1);
    const peer = await startPeer(port);
    cleanup.push(() => peer.stop());
    await waitFor(() => p.state === 'open', 2_000);
    await p.ready();
    expect(p.lastError).toBeUndefined();
    expect(peer.sockets).toHaveLength(1);
  });

  it('reports a growth that cannot connect and stays as it is', async () => {
    const peer = await startPeer();
    cleanup.push(() => peer.stop());
    const { pool: p, events } = pool(peer.port, {
      capacity: 1,
      cpu: () => 0.9,
      connectRetry: { backoff: FAST_BACKOFF },
    });
    await p.ready();
    peer.server.close(); // no new connections; the open one stays
    p.begin(p.members[0]!);
    await waitFor(() => events.filter((e) => e.type === 'connectFailed').length === 2);
    expect(events.filter((e) => e.type === 'connectFailed')).toMatchObject([
      { growth: true, error: { attempts: 5 } },
      { growth: true, error: { attempts: 5 } },
    ]);
    expect(p.stats()).toMatchObject({ state: 'open', size: 1, open: 1, opening: 0 });
  });

  it('closes on abort: connections, attempts under way and every timer', async () => {
    const peer = await startPeer();
    cleanup.push(() => peer.stop());
    const tracked = trackHandles();
    const controller = new AbortController();
    const { pool: p } = pool(peer.port, {
      capacity: 1,
      maxSize: 3,
      cpu: () => 0.9,
      signal: controller.signal,
    });
    await p.ready();
    p.begin(p.members[0]!);
    await waitFor(() => p.members.length === 3 && peer.sockets.length === 3);
    const waiting = pool(await closedPort(), { signal: controller.signal }).pool;
    await waitFor(() => waiting.state === 'down');
    expect(tracked.live()).toMatchObject({ Timeout: expect.any(Number) });
    expect(tracked.live().TCPWRAP).toBeGreaterThanOrEqual(6); // 3 pooled, 3 accepted

    controller.abort();
    await expect(waiting.ready()).rejects.toBeInstanceOf(PoolClosedError);
    await p.close(); // resolves once everything is disconnected
    expect(p.state).toBe('closed');
    expect(p.members).toEqual([]);
    await waitFor(() => peer.sockets.length === 0);
    await waitFor(() => Object.keys(tracked.live()).length === 0, 300).catch(() => undefined);
    tracked.stop();
    expect(tracked.live()).toEqual({});
  });
});

describe('processCpuReading', () => {
  it('reads a busy process high and an idle one low', async () => {
    const cpu = processCpuReading({ sampleMs: 50, alpha: 1 });
    expect(cpu()).toBe(0);
    const until = performance.now() + 120;
    while (performance.now() < until) {
      // burn a core
    }
    expect(cpu()).toBeGreaterThan(0.8);
    await sleep(150);
    expect(cpu()).toBeLessThan(0.5);
  });

  it('needs sustained load with the seed’s smoothing', async () => {
    const cpu = processCpuReading({ sampleMs: 20 });
    const until = performance.now() + 25;
    while (performance.now() < until) {
      // one busy sample
    }
    const reading = cpu();
    expect(reading).toBeGreaterThan(0.05);
    expect(reading).toBeLessThanOrEqual(0.2);
  });
});
