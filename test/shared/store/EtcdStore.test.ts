/**
 * EtcdStore against real etcd processes: the store contract on one member, then what only a
 * real cluster shows: leases ending when their holder stops renewing, members killed under
 * continuous load, etcd down and back, and watches that resume across compacted history.
 */
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorCode, StoreUnavailableError } from '../../../shared/errors.js';
import { EtcdStore, type EtcdStoreOptions } from '../../../shared/store/EtcdStore.js';
import type { ChannelWatchEvent, RecordWatchEvent } from '../../../shared/store/StateStore.js';
import { EtcdCluster } from '../../support/etcd.js';
import { eventually } from '../../support/processes.js';
import { stateStoreContract } from './stateStoreContract.js';

const limits = { maxCount: 5, maxAgeMs: 1_500 };
let prefixes = 0;
/** A fresh key prefix per store, so tests sharing a member never see each other's keys. */
const freshPrefix = () => `t${process.pid}-${Date.now()}-${++prefixes}/`;

describe('EtcdStore on one member', () => {
  let single: EtcdCluster;
  beforeAll(async () => {
    single = await EtcdCluster.start();
  });
  afterAll(async () => {
    await single?.stop();
  });

  stateStoreContract(
    'EtcdStore',
    async () => {
      const store = await EtcdStore.connect({
        endpoints: single.endpoints,
        prefix: freshPrefix(),
        limits,
      });
      return { store, cleanup: () => store.close() };
    },
    { limits },
  );

  describe('EtcdStore specifics', () => {
    const open = (options: Partial<EtcdStoreOptions> = {}) =>
      EtcdStore.connect({ endpoints: single.endpoints, prefix: freshPrefix(), limits, ...options });

    it('deletes the records of a lease whose holder stopped renewing it', async () => {
      const prefix = freshPrefix();
      const holder = await open({ prefix });
      const observer = await open({ prefix });
      try {
        const events: RecordWatchEvent[] = [];
        const watch = await observer.watch('nodes/', (event) => events.push(event));
        const lease = await holder.grantLease(1_000);
        await holder.put('nodes/gw-1', { url: 'http://gw-1' }, { lease });
        await holder.put('nodes/gw-2', { url: 'http://gw-2' }); // not on the lease
        expect((await observer.get('nodes/gw-1'))?.lease).toBe(lease);
        // The holder goes away without revoking, as a crashed gateway would.
        await holder.close();
        const started = Date.now();
        await eventually(async () => (await observer.get('nodes/gw-1')) === undefined, 5_000);
        const took = Date.now() - started;
        await eventually(() => events.some((e) => e.type === 'delete'), 2_000);
        expect(events.filter((e) => e.type === 'delete')).toEqual([
          { type: 'delete', key: 'nodes/gw-1' },
        ]);
        expect(await observer.get('nodes/gw-2')).toBeDefined();
        // etcd's TTLs are whole seconds and its lessor checks every 500 ms.
        expect(took).toBeLessThan(3_000);
        await expect(observer.keepAlive(lease)).rejects.toMatchObject({ code: 'lease_expired' });
        watch.close();
      } finally {
        await holder.close();
        await observer.close();
      }
    });

    it('refuses a lease and a TTL on the same record, and leases it never granted', async () => {
      const store = await open();
      try {
        const lease = await store.grantLease(5_000);
        await expect(store.put('k', 1, { lease, ttlMs: 1_000 })).rejects.toMatchObject({
          code: 'invalid_argument',
        });
        await expect(store.put('k', 1, { lease: 'not-a-lease' })).rejects.toMatchObject({
          code: 'lease_expired',
        });
        await expect(store.keepAlive('123456789')).rejects.toMatchObject({
          code: 'lease_expired',
        });
        await store.revokeLease(lease);
      } finally {
        await store.close();
      }
    });

    it('keeps channels and records apart, whatever their names', async () => {
      const store = await open();
      try {
        await store.append('a/b', 1);
        await store.append('a', 1);
        await store.append('a', 2);
        await store.put('a/b', 'record');
        expect((await store.read('a', 0, 10)).messages.map((m) => m.data)).toEqual([1, 2]);
        expect((await store.read('a/b', 0, 10)).latest).toBe(1);
        expect((await store.get('a/b'))?.value).toBe('record');
        const names = (await store.channels()).map((c) => c.channel).sort();
        expect(names).toEqual(['a', 'a/b']);
      } finally {
        await store.close();
      }
    });

    it('gives watchers that share a channel feed everything, with no later append', async () => {
      const bounds = { limits: { maxCount: 1_000, maxAgeMs: 60_000 } };
      const prefix = freshPrefix();
      const store = await open({ ...bounds, prefix });
      const writer = await open({ ...bounds, prefix });
      const all = Array.from({ length: 30 }, (_, i) => i + 1);
      try {
        for (let round = 0; round < 10; round++) {
          const channel = `busy-${round}`;
          const first: ChannelWatchEvent[] = [];
          const second: ChannelWatchEvent[] = [];
          const a = await store.watchChannel(channel, undefined, (event) => first.push(event));
          let written = 0;
          const burst = (async () => {
            for (let i = 0; i < 30; i++) written = (await writer.append(channel, i)).position;
          })();
          // The second watcher joins the feed while messages are flowing through it.
          while (written < 5 + round) await new Promise((resolve) => setTimeout(resolve, 1));
          const b = await store.watchChannel(channel, 0, (event) => second.push(event));
          await burst;
          await eventually(() => positions(first).length === 30, 5_000, `first, round ${round}`);
          await eventually(() => positions(second).length === 30, 5_000, `second, round ${round}`);
          expect(positions(first)).toEqual(all);
          expect(positions(second)).toEqual(all);
          a.close();
          b.close();
        }
      } finally {
        await store.close();
        await writer.close();
      }
    }, 60_000);

    it('compacts old revisions, and watches still start', async () => {
      const store = await open({ compactionRetentionMs: 200 });
      const raw = new Etcd3({ hosts: single.endpoints });
      try {
        await store.append('c', 1);
        const early = Number((await raw.get('x').exec()).header.revision);
        await store.append('c', 2);
        // The compactor notes revisions every 250 ms and compacts those older than 200 ms.
        await eventually(
          () =>
            raw
              .get('x')
              .revision(early - 1)
              .exec()
              .then(
                () => false,
                (error: unknown) => /compacted/.test(String(error)),
              ),
          5_000,
          'revision compacted',
        );
        const events: ChannelWatchEvent[] = [];
        const watch = await store.watchChannel('c', 0, (event) => events.push(event));
        await store.append('c', 3);
        await eventually(() => events.length === 3, 3_000);
        expect(positions(events)).toEqual([1, 2, 3]);
        watch.close();
      } finally {
        raw.close();
        await store.close();
      }
    });
  });
});

describe('EtcdStore when etcd goes down and comes back', () => {
  let cluster: EtcdCluster;
  let store: EtcdStore;
  beforeAll(async () => {
    cluster = await EtcdCluster.start();
    store = await EtcdStore.connect({
      endpoints: cluster.endpoints,
      prefix: freshPrefix(),
      limits: { maxCount: 1_000, maxAgeMs: 60_000 },
      timeoutMs: 1_000,
    });
  });
  afterAll(async () => {
    await store?.close();
    await cluster?.stop();
  });

  it('fails promptly with StoreUnavailableError, then recovers by itself with no gap', async () => {
    const events: ChannelWatchEvent[] = [];
    const watch = await store.watchChannel('news', undefined, (event) => events.push(event));
    for (let i = 1; i <= 3; i++) await store.append('news', i);
    await eventually(() => events.length === 3, 3_000);

    await cluster.kill(cluster.members[0]!);
    const operations: Array<[string, () => Promise<unknown>]> = [
      ['append', () => store.append('news', 'lost?')],
      ['read', () => store.read('news', 0, 10)],
      ['put', () => store.put('k', 1)],
      ['get', () => store.get('k')],
      ['grantLease', () => store.grantLease(5_000)],
      ['watchChannel', () => store.watchChannel('news', 0, () => {})],
    ];
    for (const [name, operation] of operations) {
      const started = Date.now();
      const error = await operation().then(
        () => new Error(`${name} succeeded with etcd down`),
        (e: unknown) => e,
      );
      const took = Date.now() - started;
      expect(error, name).toBeInstanceOf(StoreUnavailableError);
      expect(String((error as Error).message), name).toMatch(
        new RegExp(`etcd at ${cluster.endpoints[0]} did not complete`),
      );
      expect(took, `${name} took ${took} ms`).toBeLessThan(1_600);
    }

    await cluster.restart(cluster.members[0]!);
    const restarted = Date.now();
    const message = await eventually(() => store.append('news', 4).catch(() => undefined), 10_000);
    const recovery = Date.now() - restarted;
    console.log(`etcd restart -> first successful append: ${recovery} ms`);
    // The append made while etcd was down may or may not have reached it before it died.
    const page = await store.read('news', 0, 100);
    expect(page.messages.map((m) => m.position)).toEqual(
      Array.from({ length: page.latest }, (_, i) => i + 1),
    );
    expect(message.position).toBe(page.latest);
    await eventually(() => positions(events).at(-1) === page.latest, 5_000);
    expect(positions(events)).toEqual(Array.from({ length: page.latest }, (_, i) => i + 1));
    watch.close();
  }, 40_000);
});

describe('EtcdStore on a 3-member cluster', () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await EtcdCluster.start({ size: 3 });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  /**
   * Appends and reads without pause until stopped; checks afterwards that positions are 1..n
   * with every acknowledged message once, and a live watcher saw each position once, in order.
   */
  async function underLoad(store: EtcdStore, channel: string, fault: () => Promise<void>) {
    const errors: unknown[] = [];
    const acknowledged: Array<{ n: number; position: number; at: number }> = [];
    const events: ChannelWatchEvent[] = [];
    const watch = await store.watchChannel(channel, undefined, (event) => events.push(event));
    let running = true;
    let n = 0;
    const writer = (async () => {
      while (running) {
        const mine = ++n;
        try {
          const message = await store.append(channel, { n: mine });
          acknowledged.push({ n: mine, position: message.position, at: Date.now() });
        } catch (error) {
          errors.push(error);
        }
      }
    })();
    const reader = (async () => {
      while (running) {
        try {
          await store.read(channel, Math.max(0, (acknowledged.at(-1)?.position ?? 0) - 5), 10);
        } catch (error) {
          errors.push(error);
        }
      }
    })();
    await eventually(() => acknowledged.length >= 50, 10_000);
    const faultAt = Date.now();
    await fault();
    const before = acknowledged.length;
    await eventually(() => acknowledged.length >= before + 100, 20_000, 'appends after the fault');
    running = false;
    await Promise.all([writer, reader]);

    const page = await store.read(channel, 0, 100_000);
    const stored = page.messages.map((m) => (m.data as { n: number }).n);
    expect(page.messages.map((m) => m.position)).toEqual(
      Array.from({ length: page.latest }, (_, i) => i + 1),
    );
    expect(new Set(stored).size).toBe(stored.length); // no message stored twice
    for (const { n: sent, position } of acknowledged) {
      expect(page.messages[position - 1]?.data).toEqual({ n: sent });
    }
    await eventually(() => positions(events).at(-1) === page.latest, 10_000);
    expect(positions(events)).toEqual(Array.from({ length: page.latest }, (_, i) => i + 1));
    watch.close();

    let pause = 0;
    for (let i = 1; i < acknowledged.length; i++) {
      const gap = acknowledged[i]!.at - acknowledged[i - 1]!.at;
      if (acknowledged[i]!.at >= faultAt) pause = Math.max(pause, gap);
    }
    return { errors, pause, appends: acknowledged.length };
  }

  it('rides through a killed follower without an error', async () => {
    const store = await EtcdStore.connect({ endpoints: cluster.endpoints, prefix: freshPrefix() });
    try {
      const follower = await cluster.follower();
      const { errors, pause, appends } = await underLoad(store, 'follower', () =>
        cluster.kill(follower),
      );
      console.log(
        `follower SIGKILL: ${appends} appends, longest pause ${pause} ms, errors ${errors.length}`,
      );
      expect(errors).toEqual([]);
      await cluster.restart(follower);
    } finally {
      await store.close();
    }
  }, 60_000);

  it('pauses briefly when the leader is killed, losing and duplicating nothing', async () => {
    const store = await EtcdStore.connect({ endpoints: cluster.endpoints, prefix: freshPrefix() });
    try {
      const leader = await cluster.leader();
      const { errors, pause, appends } = await underLoad(store, 'leader', () =>
        cluster.kill(leader),
      );
      console.log(
        `leader SIGKILL: ${appends} appends, longest pause ${pause} ms, errors ${errors.length}`,
      );
      expect(errors.map(errorCode)).toEqual([]);
      // Election timeout 500 ms here; etcd's default of 1 s would roughly double it.
      expect(pause).toBeLessThan(3_000);
      await cluster.restart(leader);
    } finally {
      await store.close();
    }
  }, 60_000);

  it('resumes watches on a member that was down while history was compacted', async () => {
    const prefix = freshPrefix();
    const member = cluster.members[0]!;
    const others = cluster.members.slice(1).map((m) => m.clientUrl);
    const warnings: string[] = [];
    const logger = { warn: (_: unknown, message: string) => warnings.push(message) };
    const watcher = await EtcdStore.connect({
      endpoints: [member.clientUrl],
      prefix,
      logger: logger as never,
    });
    const writer = await EtcdStore.connect({ endpoints: others, prefix });
    const raw = new Etcd3({ hosts: others });
    try {
      const channelEvents: ChannelWatchEvent[] = [];
      const recordEvents: RecordWatchEvent[] = [];
      await writer.append('c', 1);
      await writer.put('nodes/a', 'a');
      await writer.put('nodes/b', 'b');
      await watcher.watchChannel('c', 0, (event) => channelEvents.push(event));
      await watcher.watch('nodes/', (event) => recordEvents.push(event));
      await eventually(() => channelEvents.length === 1, 3_000);

      await cluster.kill(member);
      for (let i = 2; i <= 6; i++) await writer.append('c', i);
      await writer.delete('nodes/a');
      await writer.put('nodes/c', 'c');
      const now = Number((await raw.get('x').exec()).header.revision);
      await raw.kv.compact({ revision: now });
      await cluster.restart(member);

      await eventually(() => positions(channelEvents).at(-1) === 6, 15_000, 'channel caught up');
      expect(positions(channelEvents)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(channelEvents.filter((e) => e.type === 'lost')).toEqual([]);
      await eventually(() => recordEvents.length >= 2, 15_000, 'records caught up');
      // In event order when the watch resumed in place; rebuilt, it reports the difference.
      expect(recordEvents).toHaveLength(2);
      expect(recordEvents).toEqual(
        expect.arrayContaining([
          { type: 'delete', key: 'nodes/a' },
          { type: 'put', record: expect.objectContaining({ key: 'nodes/c', value: 'c' }) },
        ]),
      );
      console.log(`watch resume after compaction: ${warnings.join('; ') || 'resumed in place'}`);
    } finally {
      raw.close();
      await watcher.close();
      await writer.close();
    }
  }, 60_000);
});

function positions(events: ChannelWatchEvent[]): number[] {
  return events.flatMap((e) => (e.type === 'message' ? [e.message.position] : []));
}
