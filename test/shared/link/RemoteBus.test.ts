import { afterEach, describe, expect, it } from 'vitest';
import type { BusEvent, EventBus } from '../../../shared/bus/EventBus.js';
import { InProcessBus } from '../../../shared/bus/InProcessBus.js';
import { makeEvent } from '../../../shared/bus/events.js';
import { RemoteBus } from '../../../shared/link/RemoteBus.js';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';
import { eventBusContract } from '../bus/eventBusContract.js';
import { Closer, connect, sleep, startLink, waitFor } from './linkHarness.js';

eventBusContract('RemoteBus over the control link', async () => {
  const backing = new InProcessBus({ onHandlerError: () => {} });
  const store = new MemoryStore();
  const link = await startLink({ store, bus: backing });
  const client = connect(link.url);
  await client.waitOpen();
  const bus = new RemoteBus(client);
  return {
    bus,
    cleanup: async () => {
      await bus.close();
      await client.close();
      await link.stop();
      await backing.close();
      await store.close();
    },
  };
});

describe('RemoteBus across a link outage', () => {
  const closer = new Closer();
  afterEach(() => closer.closeAll());

  const event = (n: number): BusEvent => makeEvent('streamheal.test', 'spooled', { n });

  async function setup(options: { spoolLimit?: number } = {}) {
    const backing = closer.add(new InProcessBus());
    const store = closer.add(new MemoryStore());
    const holder = { link: await startLink({ store, bus: backing }) };
    closer.add({ stop: () => holder.link.stop() });
    const client = closer.add(connect(holder.link.url));
    await client.waitOpen();
    const bus = closer.add(new RemoteBus(client, options));
    const received: number[] = [];
    backing.subscribe({ source: ['streamheal.test'] }, (e) => {
      received.push(e.detail.n as number);
    });
    const outage = async (during: () => Promise<void>): Promise<void> => {
      const port = holder.link.port;
      await holder.link.stop();
      await waitFor(() => client.state === 'down');
      await during();
      holder.link = await startLink({ store, bus: backing, port });
      await client.waitOpen(10_000);
    };
    return { backing, client, bus, received, outage };
  }

  it('spools events put while the link is down and delivers them in order after reconnect', async () => {
    const { bus, received, outage } = await setup();
    await bus.put([event(0)]);
    await waitFor(() => received.length === 1);
    await outage(async () => {
      for (let i = 1; i <= 300; i += 3) await bus.put([event(i), event(i + 1), event(i + 2)]);
      expect(bus.spooledEvents).toBe(300);
    });
    await bus.put([event(301)]);
    await waitFor(() => received.length === 302);
    expect(received).toEqual(Array.from({ length: 302 }, (_, i) => i));
    expect(bus.spooledEvents).toBe(0);
    expect(bus.dropped).toBe(0);
  });

  it('spools again a batch whose answer was lost with the link (at least once)', async () => {
    const backing = closer.add(new InProcessBus());
    const store = closer.add(new MemoryStore());
    // First server: accepts bus puts but never answers them.
    const stuck: EventBus = {
      put: () => new Promise<void>(() => undefined),
      subscribe: (pattern, handler) => backing.subscribe(pattern, handler),
      close: async () => undefined,
    };
    const first = await startLink({ store, bus: stuck });
    const client = closer.add(connect(first.url, { requestTimeoutMs: 5_000 }));
    await client.waitOpen();
    const bus = closer.add(new RemoteBus(client));
    const received: number[] = [];
    backing.subscribe({ source: ['streamheal.test'] }, (e) => {
      received.push(e.detail.n as number);
    });
    const putting = bus.put([event(1), event(2)]);
    await sleep(50);
    await first.stop();
    await expect(putting).resolves.toBeUndefined();
    expect(bus.spooledEvents).toBe(2);
    await bus.put([event(3)]);
    const second = closer.add(await startLink({ store, bus: backing, port: first.port }));
    expect(second.port).toBe(first.port);
    await client.waitOpen(10_000);
    await waitFor(() => received.length === 3);
    expect(received).toEqual([1, 2, 3]);
  });

  it('bounds the spool, dropping and counting the oldest events', async () => {
    const { bus, received, outage } = await setup({ spoolLimit: 10 });
    await outage(async () => {
      for (let i = 0; i < 25; i++) await bus.put([event(i)]);
      await bus.put([event(25), event(26)]);
    });
    await waitFor(() => received.length === 10);
    expect(received).toEqual(Array.from({ length: 10 }, (_, i) => 17 + i));
    expect(bus.dropped).toBe(17);
  });

  it('subscribes again after a reconnect', async () => {
    const { backing, bus, outage } = await setup();
    const seen: number[] = [];
    bus.subscribe({ source: ['streamheal.test'] }, (e) => {
      seen.push(e.detail.n as number);
    });
    await waitFor(async () => {
      await backing.put([event(-1)]);
      return seen.length > 0;
    });
    await outage(async () => undefined);
    // The subscription is made again right after the socket opens; probe until it is.
    await waitFor(async () => {
      await backing.put([event(-2)]);
      return seen.includes(-2);
    });
    await backing.put([event(1), event(2)]);
    await waitFor(() => seen.includes(2));
    expect(seen.filter((n) => n > 0)).toEqual([1, 2]);
  });
});
