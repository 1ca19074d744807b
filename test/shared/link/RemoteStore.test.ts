import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { StoreUnavailableError } from '../../../shared/errors.js';
import { serveLink } from '../../../shared/link/LinkServer.js';
import { RemoteStore } from '../../../shared/link/RemoteStore.js';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';
import type {
  ChannelWatchEvent,
  RecordWatchEvent,
  StateStore,
} from '../../../shared/store/StateStore.js';
import { stateStoreContract } from '../store/stateStoreContract.js';
import {
  Closer,
  connect,
  LINK_PATH,
  noBus,
  SECRET,
  sleep,
  startLink,
  waitFor,
} from './linkHarness.js';

const limits = { maxCount: 5, maxAgeMs: 400 };

stateStoreContract(
  'RemoteStore over the control link',
  async () => {
    const backing = new MemoryStore({ limits });
    const link = await startLink({ store: backing });
    const client = connect(link.url);
    await client.waitOpen();
    const store = new RemoteStore(client);
    return {
      store,
      cleanup: async () => {
        await store.close();
        await client.close();
        await link.stop();
        await backing.close();
      },
    };
  },
  { limits },
);

describe('control link', () => {
  const closer = new Closer();
  afterEach(() => closer.closeAll());

  function positions(events: ChannelWatchEvent[]): number[] {
    return events.flatMap((e) => (e.type === 'message' ? [e.message.position] : []));
  }

  it('refuses a missing or wrong secret with 401 before the upgrade', async () => {
    const backing = closer.add(new MemoryStore());
    const link = closer.add(await startLink({ store: backing }));
    const statusFor = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(link.url, { headers });
        ws.on('unexpected-response', (_request, response) => {
          resolve(response.statusCode ?? 0);
          ws.terminate();
        });
        ws.on('open', () => {
          ws.terminate();
          reject(new Error('upgrade accepted'));
        });
        ws.on('error', () => undefined);
      });
    expect(await statusFor({})).toBe(401);
    expect(await statusFor({ authorization: 'Bearer wrong' })).toBe(401);
    expect(await statusFor({ authorization: `Bearer ${SECRET}x` })).toBe(401);
    expect(await statusFor({ authorization: SECRET })).toBe(401);

    const wrong = closer.add(connect(link.url, { secret: 'wrong', requestTimeoutMs: 300 }));
    await expect(wrong.waitOpen(300)).rejects.toBeInstanceOf(StoreUnavailableError);
    const started = Date.now();
    await expect(new RemoteStore(wrong).get('k')).rejects.toMatchObject({
      code: 'store_unavailable',
    });
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('leaves upgrades on other paths to their own handlers', async () => {
    const server = createServer();
    const other = new WebSocketServer({ noServer: true });
    server.on('upgrade', (request, socket, head) => {
      if (request.url === '/other') {
        other.handleUpgrade(request, socket, head, (ws) => ws.send('hello from other'));
      }
    });
    const backing = closer.add(new MemoryStore());
    const link = serveLink({ server, path: LINK_PATH, secret: SECRET, store: backing, bus: noBus });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closer.add({
      stop: async () => {
        await link.close();
        other.close();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    });
    const port = (server.address() as AddressInfo).port;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/other`);
    const greeting = await new Promise<string>((resolve, reject) => {
      ws.on('message', (data) => resolve(String(data)));
      ws.on('error', reject);
    });
    ws.terminate();
    expect(greeting).toBe('hello from other');
    const client = closer.add(connect(`ws://127.0.0.1:${port}${LINK_PATH}`));
    await client.waitOpen();
    expect(await new RemoteStore(client).append('c', 1)).toMatchObject({ position: 1 });
  });

  it('rejects quickly with StoreUnavailableError once the server is gone, and never hangs', async () => {
    const backing = closer.add(new MemoryStore());
    let release: (() => void) | undefined;
    // A store whose `get('stuck')` answers only when told to.
    const slow: StateStore = Object.create(backing, {
      get: {
        value: (key: string) =>
          key === 'stuck'
            ? new Promise((resolve) => (release = () => resolve(undefined)))
            : backing.get(key),
      },
    });
    const link = closer.add(await startLink({ store: slow }));
    const client = closer.add(connect(link.url, { requestTimeoutMs: 300 }));
    await client.waitOpen();
    const store = new RemoteStore(client);

    // No answer in time: StoreUnavailableError after the request timeout.
    let started = Date.now();
    await expect(store.get('stuck')).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(1_000);
    release?.();

    // Waiting when the link drops: rejected at once, not at the timeout.
    const waiting = store.get('stuck').catch((e: unknown) => e);
    await sleep(20);
    started = Date.now();
    await link.stop();
    expect(await waiting).toMatchObject({ code: 'store_unavailable' });
    expect(Date.now() - started).toBeLessThan(250);

    // While down: every call fails fast.
    await waitFor(() => client.state === 'down');
    started = Date.now();
    const results = await Promise.allSettled([
      store.append('c', 1),
      store.get('k'),
      store.put('k', 1),
      store.list(''),
      store.watchChannel('c', undefined, () => {}),
      store.watch('', () => {}),
    ]);
    expect(Date.now() - started).toBeLessThan(100);
    for (const result of results) {
      expect(result.status).toBe('rejected');
      if (result.status === 'rejected') {
        expect(result.reason).toBeInstanceOf(StoreUnavailableError);
        expect(result.reason).toMatchObject({ code: 'store_unavailable' });
      }
    }
    release?.();
  });

  it('reconnects by itself; a channel watch resumes with no gap and no duplicate', async () => {
    const backing = closer.add(new MemoryStore());
    let link = await startLink({ store: backing });
    const port = link.port;
    closer.add({ stop: () => link.stop() });
    const client = closer.add(connect(link.url));
    await client.waitOpen();
    const store = new RemoteStore(client);

    const fromStart: ChannelWatchEvent[] = [];
    const live: ChannelWatchEvent[] = [];
    closer.add(await store.watchChannel('c', 0, (e) => fromStart.push(e)));
    closer.add(await store.watchChannel('c', undefined, (e) => live.push(e)));
    for (let i = 1; i <= 10; i++) await store.append('c', i);
    await waitFor(() => positions(fromStart).length === 10 && positions(live).length === 10);

    // A writer keeps appending in the control process itself while the link is gone.
    await link.stop();
    await waitFor(() => client.state === 'down');
    for (let i = 11; i <= 20; i++) await backing.append('c', i);
    link = await startLink({ store: backing, port });
    await client.waitOpen(10_000);
    for (let i = 21; i <= 30; i++) await store.append('c', i);

    const all = Array.from({ length: 30 }, (_, i) => i + 1);
    await waitFor(() => positions(fromStart).length >= 30 && positions(live).length >= 30);
    await sleep(50);
    expect(positions(fromStart)).toEqual(all);
    expect(positions(live)).toEqual(all);
    expect([...fromStart, ...live].filter((e) => e.type === 'lost')).toEqual([]);
  });

  it('tells a resumed channel watch when history was lost while the link was down', async () => {
    const backing = closer.add(new MemoryStore({ limits: { maxCount: 5, maxAgeMs: 60_000 } }));
    let link = await startLink({ store: backing });
    const port = link.port;
    closer.add({ stop: () => link.stop() });
    const client = closer.add(connect(link.url));
    await client.waitOpen();
    const events: ChannelWatchEvent[] = [];
    closer.add(await new RemoteStore(client).watchChannel('c', undefined, (e) => events.push(e)));
    await backing.append('c', 1);
    await waitFor(() => events.length === 1);

    await link.stop();
    await waitFor(() => client.state === 'down');
    for (let i = 2; i <= 12; i++) await backing.append('c', i);
    link = await startLink({ store: backing, port });
    await client.waitOpen(10_000);
    await waitFor(() => positions(events).at(-1) === 12);
    await backing.append('c', 13);

    await waitFor(() => positions(events).at(-1) === 13);
    expect(events[1]).toEqual({ type: 'lost', oldest: 8 });
    expect(positions(events)).toEqual([1, 8, 9, 10, 11, 12, 13]);
  });

  it('catches a record watch up after a reconnect', async () => {
    const backing = closer.add(new MemoryStore());
    let link = await startLink({ store: backing });
    const port = link.port;
    closer.add({ stop: () => link.stop() });
    const client = closer.add(connect(link.url));
    await client.waitOpen();
    const store = new RemoteStore(client);

    await store.put('nodes/a', 'a1');
    const events: RecordWatchEvent[] = [];
    closer.add(await store.watch('nodes/', (e) => events.push(e)));
    const vb = await store.put('nodes/b', 'b1');
    await store.put('nodes/c', 'c1');
    await waitFor(() => events.length === 2);

    await link.stop();
    await waitFor(() => client.state === 'down');
    await backing.delete('nodes/a');
    const vb2 = await backing.put('nodes/b', 'b2');
    const vd = await backing.put('nodes/d', 'd1');
    await backing.put('other/x', 'not watched');
    link = await startLink({ store: backing, port });
    await client.waitOpen(10_000);

    await waitFor(() => events.length === 5);
    expect(events.slice(2)).toEqual([
      { type: 'delete', key: 'nodes/a' },
      { type: 'put', record: { key: 'nodes/b', value: 'b2', version: vb2 } },
      { type: 'put', record: { key: 'nodes/d', value: 'd1', version: vd } },
    ]);
    expect(vb2).toBeGreaterThan(vb);

    // Live again, and nothing reported twice.
    await store.delete('nodes/c');
    await waitFor(() => events.length === 6);
    await sleep(30);
    expect(events.slice(5)).toEqual([{ type: 'delete', key: 'nodes/c' }]);
  });

  it('keeps one socket for many requests and batches them', async () => {
    const backing = closer.add(new MemoryStore());
    const link = closer.add(await startLink({ store: backing }));
    let connections = 0;
    link.server.on('upgrade', () => connections++);
    const client = closer.add(connect(link.url));
    await client.waitOpen();
    const store = new RemoteStore(client);
    const received: number[] = [];
    closer.add(
      await store.watchChannel('hot', undefined, (e) => {
        if (e.type === 'message') received.push(e.message.position);
      }),
    );
    const results = await Promise.all(
      Array.from({ length: 5_000 }, (_, i) => store.append('hot', i)),
    );
    expect(results.map((m) => m.position).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 5_000 }, (_, i) => i + 1),
    );
    await waitFor(() => received.length === 5_000);
    expect(received).toEqual(Array.from({ length: 5_000 }, (_, i) => i + 1));
    expect(connections).toBe(1);
  });
});
