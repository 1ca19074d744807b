/**
 * EtcdBus against real etcd processes: the bus contract on one member, then outages: events
 * put while etcd is down wait in the spool and arrive in order once it is back, the spool's
 * bound drops (and counts) the oldest, and a subscriber whose member was down while history
 * was compacted still gets every event.
 */
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdBus, type EtcdBusOptions } from '../../../shared/bus/EtcdBus.js';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { makeEvent } from '../../../shared/bus/events.js';
import { EtcdCluster } from '../../support/etcd.js';
import { eventually } from '../../support/processes.js';
import { eventBusContract } from './eventBusContract.js';

let prefixes = 0;
const freshPrefix = () => `b${process.pid}-${Date.now()}-${++prefixes}/`;

describe('EtcdBus on one member', () => {
  let single: EtcdCluster;
  beforeAll(async () => {
    single = await EtcdCluster.start();
  });
  afterAll(async () => {
    await single?.stop();
  });

  const prefix = freshPrefix();
  eventBusContract('EtcdBus', async () => {
    // The contract's failing handlers are expected; keep them out of the test output.
    const bus = await EtcdBus.connect({
      endpoints: single.endpoints,
      prefix,
      onHandlerError: () => {},
    });
    return { bus, cleanup: () => bus.close() };
  });

  it('does not replay events put before the first subscription', async () => {
    const bus = await EtcdBus.connect({ endpoints: single.endpoints, prefix: freshPrefix() });
    try {
      await bus.put([makeEvent('streamheal.test', 'before', {})]);
      const received: string[] = [];
      bus.subscribe({ source: ['streamheal.test'] }, (e) => {
        received.push(e['detail-type']);
      });
      await bus.put([makeEvent('streamheal.test', 'after', {})]);
      await eventually(() => received.length === 1, 5_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(received).toEqual(['after']);
    } finally {
      await bus.close();
    }
  });
});

describe('EtcdBus when etcd goes down and comes back', () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await EtcdCluster.start();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  const connect = (prefix: string, options: Partial<EtcdBusOptions> = {}) =>
    EtcdBus.connect({ endpoints: cluster.endpoints, prefix, timeoutMs: 1_000, ...options });

  /** Events from `source` numbered n, and a subscriber that records their numbers. */
  const numbered = (source: string, n: number): BusEvent => makeEvent(source, 'numbered', { n });
  function recorder(bus: EtcdBus, source: string): number[] {
    const seen: number[] = [];
    bus.subscribe({ source: [source] }, (event) => {
      seen.push(event.detail.n as number);
    });
    return seen;
  }
  const range = (from: number, to: number) =>
    Array.from({ length: to - from + 1 }, (_, i) => from + i);

  it('delivers events put during an outage afterwards, in order per source, none lost', async () => {
    const prefix = freshPrefix();
    const producerA = await connect(prefix, { spoolLimit: 100 });
    const producerB = await connect(prefix, { spoolLimit: 100 });
    const subscriber = await connect(prefix);
    try {
      const fromA = recorder(subscriber, 'test.a');
      const fromB = recorder(subscriber, 'test.b');
      for (let n = 1; n <= 5; n++) {
        await producerA.put([numbered('test.a', n)]);
        await producerB.put([numbered('test.b', n)]);
      }
      await eventually(() => fromA.length === 5 && fromB.length === 5, 5_000);

      await cluster.kill(cluster.members[0]!);
      const putTimes: number[] = [];
      for (let n = 6; n <= 50; n += 5) {
        const started = Date.now();
        await producerA.put(range(n, n + 4).map((i) => numbered('test.a', i)));
        await producerB.put(range(n, n + 4).map((i) => numbered('test.b', i)));
        putTimes.push(Date.now() - started);
      }
      // The first put finds etcd gone within the time budget; later ones spool at once.
      expect(Math.max(...putTimes.slice(1))).toBeLessThan(50);
      expect(producerA.stats()).toMatchObject({ spooled: 45, dropped: 0, connected: false });
      await new Promise((resolve) => setTimeout(resolve, 1_500)); // "a while"

      await cluster.restart(cluster.members[0]!);
      const restarted = Date.now();
      await eventually(() => fromA.length === 50 && fromB.length === 50, 15_000, 'delivery');
      console.log(`etcd restart -> 90 spooled events delivered: ${Date.now() - restarted} ms`);
      expect(fromA).toEqual(range(1, 50));
      expect(fromB).toEqual(range(1, 50));
      // The watch can deliver the last batch before the producer has seen its write succeed.
      await eventually(() => producerA.stats().spooled === 0, 5_000, 'producer A flushed');
      expect(producerA.stats()).toMatchObject({
        spooled: 0,
        dropped: 0,
        written: 50,
        connected: true,
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(fromA).toHaveLength(50); // nothing twice
    } finally {
      await Promise.all([producerA.close(), producerB.close(), subscriber.close()]);
    }
  }, 40_000);

  it('drops the oldest events past the spool bound and counts them', async () => {
    const prefix = freshPrefix();
    const producer = await connect(prefix, { spoolLimit: 20 });
    const subscriber = await connect(prefix);
    try {
      const seen = recorder(subscriber, 'test.bound');
      await producer.put([numbered('test.bound', 0)]);
      await eventually(() => seen.length === 1, 5_000);

      await cluster.kill(cluster.members[0]!);
      for (let n = 1; n <= 50; n++) await producer.put([numbered('test.bound', n)]);
      expect(producer.stats()).toMatchObject({ spooled: 20, dropped: 30, connected: false });

      await cluster.restart(cluster.members[0]!);
      await eventually(() => seen.length === 21, 15_000, 'delivery');
      expect(seen).toEqual([0, ...range(31, 50)]);
      expect(producer.stats()).toMatchObject({ spooled: 0, dropped: 30, connected: true });
    } finally {
      await Promise.all([producer.close(), subscriber.close()]);
    }
  }, 40_000);
});

describe('EtcdBus on a 3-member cluster', () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await EtcdCluster.start({ size: 3 });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('refills a subscriber whose member was down while history was compacted', async () => {
    const prefix = freshPrefix();
    const member = cluster.members[0]!;
    const others = cluster.members.slice(1).map((m) => m.clientUrl);
    const warnings: string[] = [];
    const logger = { warn: (_: unknown, message: string) => warnings.push(message), info() {} };
    const subscriber = await EtcdBus.connect({
      endpoints: [member.clientUrl],
      prefix,
      logger: logger as never,
    });
    const producer = await EtcdBus.connect({ endpoints: others, prefix });
    const raw = new Etcd3({ hosts: others });
    try {
      const seen: number[] = [];
      subscriber.subscribe({ source: ['test.compacted'] }, (event) => {
        seen.push(event.detail.n as number);
      });
      await producer.put([makeEvent('test.compacted', 'n', { n: 1 })]);
      await eventually(() => seen.length === 1, 5_000);

      await cluster.kill(member);
      for (let n = 2; n <= 10; n++) await producer.put([makeEvent('test.compacted', 'n', { n })]);
      const now = Number((await raw.get('x').exec()).header.revision);
      await raw.kv.compact({ revision: now });
      await cluster.restart(member);

      await eventually(() => seen.length === 10, 15_000, 'refill');
      expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
      console.log(`bus watch after compaction: ${warnings.join('; ') || 'resumed in place'}`);
    } finally {
      raw.close();
      await Promise.all([producer.close(), subscriber.close()]);
    }
  }, 40_000);
});
