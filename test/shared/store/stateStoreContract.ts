/**
 * The StateStore contract: every adapter (MemoryStore, RemoteStore, later DynamoDB and etcd)
 * runs this same suite. It tests behaviour through the port only.
 *
 * The factory's store must use the limits given here. Tests that need small limits (count
 * and age bounds) are skipped when the limits are too large to exercise quickly.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConditionFailedError,
  LeaseExpiredError,
  StreamhealError,
} from '../../../shared/errors.js';
import {
  type ChannelWatch,
  type ChannelWatchEvent,
  type HistoryLimits,
  type RecordWatchEvent,
  type StateStore,
} from '../../../shared/store/StateStore.js';

export function stateStoreContract(
  name: string,
  factory: () => Promise<{ store: StateStore; cleanup: () => Promise<void> }>,
  { limits }: { limits: HistoryLimits },
): void {
  // The bounds are tested for real, so every adapter runs the suite with small ones.
  if (limits.maxCount < 3 || limits.maxCount > 50 || limits.maxAgeMs > 2_000) {
    throw new Error(`${name}: run the contract with maxCount 3–50 and maxAgeMs ≤ 2000`);
  }

  describe(`StateStore contract: ${name}`, () => {
    let store: StateStore;
    let cleanup: (() => Promise<void>) | undefined;
    const closers: Array<{ close(): void }> = [];

    beforeEach(async () => {
      ({ store, cleanup } = await factory());
    });

    afterEach(async () => {
      for (const closer of closers.splice(0)) closer.close();
      await cleanup?.();
      cleanup = undefined;
    });

    /** Opens a channel watch that records its events; closed after the test. */
    async function watchChannel(channel: string, after: number | undefined) {
      const events: ChannelWatchEvent[] = [];
      const watch = await store.watchChannel(channel, after, (event) => events.push(event));
      closers.push(watch);
      return { watch, events, positions: () => positionsOf(events) };
    }

    async function watchRecords(prefix: string) {
      const events: RecordWatchEvent[] = [];
      const watch = await store.watch(prefix, (event) => events.push(event));
      closers.push(watch);
      return events;
    }

    describe('channel logs', () => {
      it('assigns positions 1, 2, 3 … and stamps time, data and trace', async () => {
        const channel = unique('c');
        const before = Date.now();
        const first = await store.append(channel, { n: 1 });
        const second = await store.append(channel, 'two', { traceparent: '00-abc-def-01' });
        expect(first).toMatchObject({ channel, position: 1, data: { n: 1 } });
        expect(second).toMatchObject({
          channel,
          position: 2,
          data: 'two',
          trace: { traceparent: '00-abc-def-01' },
        });
        expect(first.time).toBeGreaterThanOrEqual(before - 1_000);
        expect(first.time).toBeLessThanOrEqual(Date.now() + 1_000);
        const page = await store.read(channel, 0, 10);
        expect(page.latest).toBe(2);
        expect(page.oldest).toBe(1);
        expect(page.messages.map((m) => m.data)).toEqual([{ n: 1 }, 'two']);
        expect(page.messages[1]?.trace).toEqual({ traceparent: '00-abc-def-01' });
      });

      it('keeps positions contiguous under 200 concurrent appends', async () => {
        const channel = unique('c');
        const other = unique('c');
        const results = await Promise.all([
          ...Array.from({ length: 200 }, (_, i) => store.append(channel, i)),
          ...Array.from({ length: 20 }, (_, i) => store.append(other, i)),
        ]);
        const positions = results
          .filter((m) => m.channel === channel)
          .map((m) => m.position)
          .sort((a, b) => a - b);
        expect(positions).toEqual(range(1, 200));
        const otherPositions = results
          .filter((m) => m.channel === other)
          .map((m) => m.position)
          .sort((a, b) => a - b);
        expect(otherPositions).toEqual(range(1, 20));
        const page = await store.read(channel, 0, 1_000);
        expect(page.latest).toBe(200);
        expect(positionsOfMessages(page.messages)).toEqual(range(page.oldest, 200));
      });

      it('reads after a position, in pages, and reports oldest and latest', async () => {
        const channel = unique('c');
        const n = Math.min(limits.maxCount, 5);
        for (let i = 1; i <= n; i++) await store.append(channel, i);
        const seen: number[] = [];
        let after = 0;
        for (;;) {
          const page = await store.read(channel, after, 2);
          expect(page.latest).toBe(n);
          expect(page.oldest).toBe(1);
          expect(page.messages.length).toBeLessThanOrEqual(2);
          if (page.messages.length === 0) break;
          seen.push(...positionsOfMessages(page.messages));
          after = page.messages.at(-1)!.position;
        }
        expect(seen).toEqual(range(1, n));
        const tail = await store.read(channel, n - 1, 10);
        expect(positionsOfMessages(tail.messages)).toEqual([n]);
        const beyond = await store.read(channel, n + 10, 10);
        expect(beyond).toEqual({ messages: [], oldest: 1, latest: n });
        expect((await store.read(channel, 0, 0)).messages).toEqual([]);
      });

      it('reads an unknown channel as empty', async () => {
        expect(await store.read(unique('c'), 0, 10)).toEqual({
          messages: [],
          oldest: 1,
          latest: 0,
        });
      });

      it('bounds history by count, oldest dropped first', async () => {
        const channel = unique('c');
        const total = limits.maxCount + 3;
        for (let i = 1; i <= total; i++) await store.append(channel, i);
        const page = await store.read(channel, 0, 1_000);
        expect(page.latest).toBe(total);
        expect(page.oldest).toBe(total - limits.maxCount + 1);
        expect(positionsOfMessages(page.messages)).toEqual(range(page.oldest, total));
        const summary = (await store.channels()).find((c) => c.channel === channel);
        expect(summary).toEqual({ channel, latest: total, held: limits.maxCount });
      });

      it('bounds history by age, also on an idle channel', async () => {
        const channel = unique('c');
        await store.append(channel, 1);
        await store.append(channel, 2);
        expect((await store.read(channel, 0, 10)).messages).toHaveLength(2);
        await sleep(limits.maxAgeMs + 150);
        const idle = await store.read(channel, 0, 10);
        expect(idle).toEqual({ messages: [], oldest: 3, latest: 2 });
        expect((await store.channels()).find((c) => c.channel === channel)).toEqual({
          channel,
          latest: 2,
          held: 0,
        });
        await store.append(channel, 3);
        const page = await store.read(channel, 0, 10);
        expect(page.oldest).toBe(3);
        expect(positionsOfMessages(page.messages)).toEqual([3]);
      });

      it('summarises channels', async () => {
        const a = unique('c');
        const b = unique('c');
        await store.append(a, 1);
        await store.append(a, 2);
        await store.append(b, 1);
        const summaries = await store.channels();
        expect(summaries.find((c) => c.channel === a)).toEqual({ channel: a, latest: 2, held: 2 });
        expect(summaries.find((c) => c.channel === b)).toEqual({ channel: b, latest: 1, held: 1 });
      });

      it('watches live from the latest position when no position is given', async () => {
        const channel = unique('c');
        await store.append(channel, 'old-1');
        await store.append(channel, 'old-2');
        const { watch, events, positions } = await watchChannel(channel, undefined);
        expect(watch.startedAfter).toBe(2);
        for (let i = 3; i <= 6; i++) await store.append(channel, i);
        await waitFor(() => positions().length >= 4);
        expect(positions()).toEqual([3, 4, 5, 6]);
        expect(events.every((e) => e.type === 'message')).toBe(true);
        expect(events[0]).toMatchObject({ type: 'message', message: { channel, data: 3 } });
      });

      it('starts a live watch at 0 on a channel nobody has written to', async () => {
        const channel = unique('c');
        const { watch, positions } = await watchChannel(channel, undefined);
        expect(watch.startedAfter).toBe(0);
        await store.append(channel, 1);
        await waitFor(() => positions().length === 1);
        expect(positions()).toEqual([1]);
        const fromZero = await watchChannel(unique('c'), 0);
        expect(fromZero.watch.startedAfter).toBe(0);
      });

      it('never calls a listener inside append', async () => {
        const channel = unique('c');
        const { positions } = await watchChannel(channel, undefined);
        const pending = store.append(channel, 1);
        expect(positions()).toEqual([]);
        await pending;
        await waitFor(() => positions().length === 1);
      });

      it('delivers to every watcher and stops after close', async () => {
        const channel = unique('c');
        const one = await watchChannel(channel, undefined);
        const two = await watchChannel(channel, undefined);
        await store.append(channel, 1);
        await waitFor(() => one.positions().length === 1 && two.positions().length === 1);
        one.watch.close();
        await store.append(channel, 2);
        await waitFor(() => two.positions().length === 2);
        await sleep(30);
        expect(one.positions()).toEqual([1]);
        expect(two.positions()).toEqual([1, 2]);
      });

      it('replays from a position, then continues live, with no gap and no duplicate', async () => {
        const channel = unique('c');
        const total = 40;
        let after = -1;
        let started: Promise<ChannelWatch> | undefined;
        const events: ChannelWatchEvent[] = [];
        for (let i = 1; i <= total; i++) {
          const message = await store.append(channel, i);
          if (i === 10) {
            // The watch starts while later appends are already on their way.
            after = message.position - 2;
            started = store.watchChannel(channel, after, (event) => events.push(event));
          }
        }
        const watch = await started!;
        closers.push(watch);
        expect(watch.startedAfter).toBe(after);
        await waitFor(() => positionsOf(events).at(-1) === total);
        expect(events.filter((e) => e.type === 'lost')).toEqual([]);
        expect(positionsOf(events)).toEqual(range(after + 1, total));
      });

      it('joins replay and live atomically under concurrent appends', async () => {
        const channel = unique('c');
        await store.append(channel, 0);
        const from = 1;
        const burst = Promise.all(Array.from({ length: 50 }, (_, i) => store.append(channel, i)));
        const { events } = await watchChannel(channel, from);
        await burst;
        const more = await Promise.all(
          Array.from({ length: 50 }, (_, i) => store.append(channel, i)),
        );
        const last = Math.max(...more.map((m) => m.position));
        expect(last).toBe(101);
        await waitFor(() => positionsOf(events).at(-1) === last);
        expectOrderedFrom(events, from, last);
      });

      it('reports lost history first when the log no longer reaches', async () => {
        const channel = unique('c');
        const total = limits.maxCount + 3;
        for (let i = 1; i <= total; i++) await store.append(channel, i);
        const { events } = await watchChannel(channel, 1);
        await store.append(channel, 'live');
        const oldest = total - limits.maxCount + 1;
        await waitFor(() => positionsOf(events).at(-1) === total + 1);
        expect(events[0]).toEqual({ type: 'lost', oldest });
        expect(events.filter((e) => e.type === 'lost')).toHaveLength(1);
        expect(positionsOf(events)).toEqual(range(oldest, total + 1));
      });

      it('reports lost history when it aged out', async () => {
        const channel = unique('c');
        await store.append(channel, 1);
        await store.append(channel, 2);
        await sleep(limits.maxAgeMs + 150);
        const { events } = await watchChannel(channel, 0);
        await store.append(channel, 3);
        await waitFor(() => positionsOf(events).length === 1);
        expect(events).toHaveLength(2);
        expect(events[0]).toEqual({ type: 'lost', oldest: 3 });
        expect(positionsOf(events)).toEqual([3]);
      });

      it('refuses a watch from a position that was never assigned', async () => {
        const channel = unique('c');
        await store.append(channel, 1);
        const error = await store.watchChannel(channel, 2, () => {}).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(StreamhealError);
        expect(error).toMatchObject({ code: 'position_from_future' });
        const fresh = await store.watchChannel(unique('c'), 1, () => {}).catch((e: unknown) => e);
        expect(fresh).toMatchObject({ code: 'position_from_future' });
        // The latest position itself is fine: nothing to replay, live from there.
        const { watch } = await watchChannel(channel, 1);
        expect(watch.startedAfter).toBe(1);
      });
    });

    describe('records', () => {
      it('puts and gets with growing versions', async () => {
        const key = `${unique('r')}/a`;
        expect(await store.get(key)).toBeUndefined();
        const v1 = await store.put(key, { n: 1 });
        expect(v1).toBeGreaterThan(0);
        expect(await store.get(key)).toEqual({ key, value: { n: 1 }, version: v1 });
        const v2 = await store.put(key, { n: 2 });
        expect(v2).toBeGreaterThan(v1);
        expect(await store.get(key)).toEqual({ key, value: { n: 2 }, version: v2 });
      });

      it('writes conditionally on the version, 0 meaning absent', async () => {
        const key = `${unique('r')}/a`;
        const v1 = await store.put(key, 'first', { ifVersion: 0 });
        const again = await store.put(key, 'second', { ifVersion: 0 }).catch((e: unknown) => e);
        expect(again).toBeInstanceOf(ConditionFailedError);
        expect(again).toMatchObject({ code: 'condition_failed' });
        const stale = await store.put(key, 'x', { ifVersion: v1 + 1000 }).catch((e: unknown) => e);
        expect(stale).toBeInstanceOf(ConditionFailedError);
        const v2 = await store.put(key, 'second', { ifVersion: v1 });
        expect(v2).toBeGreaterThan(v1);
        expect((await store.get(key))?.value).toBe('second');
        const lost = await store.put(key, 'third', { ifVersion: v1 }).catch((e: unknown) => e);
        expect(lost).toBeInstanceOf(ConditionFailedError);
        expect((await store.get(key))?.value).toBe('second');
      });

      it('lets only one of many concurrent conditional creates win', async () => {
        const key = `${unique('r')}/once`;
        const results = await Promise.allSettled(
          Array.from({ length: 20 }, (_, i) => store.put(key, i, { ifVersion: 0 })),
        );
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        for (const r of results) {
          if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConditionFailedError);
        }
      });

      it('deletes, conditionally too', async () => {
        const key = `${unique('r')}/a`;
        expect(await store.delete(key)).toBe(false);
        const v1 = await store.put(key, 1);
        const wrong = await store.delete(key, { ifVersion: v1 + 1000 }).catch((e: unknown) => e);
        expect(wrong).toBeInstanceOf(ConditionFailedError);
        expect(await store.get(key)).toBeDefined();
        expect(await store.delete(key, { ifVersion: v1 })).toBe(true);
        expect(await store.get(key)).toBeUndefined();
        expect(await store.delete(key)).toBe(false);
        const v2 = await store.put(key, 2, { ifVersion: 0 });
        expect(await store.delete(key)).toBe(true);
        expect(v2).toBeGreaterThan(0);
      });

      it('lists a prefix sorted by key', async () => {
        const prefix = `${unique('r')}/`;
        for (const k of ['m', 'b', 'z', 'a', 'b/c']) await store.put(prefix + k, k);
        await store.put(`${prefix.slice(0, -1)}x/other`, 'outside');
        const listed = await store.list<string>(prefix);
        expect(listed.map((r) => r.key)).toEqual(
          ['a', 'b', 'b/c', 'm', 'z'].map((k) => prefix + k),
        );
        expect(listed.map((r) => r.value)).toEqual(['a', 'b', 'b/c', 'm', 'z']);
        for (const r of listed) expect(r.version).toBeGreaterThan(0);
        expect(await store.list(`${unique('r')}/`)).toEqual([]);
      });

      it('watches a prefix for puts and deletes until closed', async () => {
        const prefix = `${unique('r')}/`;
        const events: RecordWatchEvent[] = [];
        const watch = await store.watch(prefix, (event) => events.push(event));
        const version = await store.put(`${prefix}a`, { n: 1 });
        await store.put(`${prefix.slice(0, -1)}-elsewhere`, 'not watched');
        await store.delete(`${prefix}a`);
        await waitFor(() => events.length >= 2);
        expect(events).toEqual([
          { type: 'put', record: { key: `${prefix}a`, value: { n: 1 }, version } },
          { type: 'delete', key: `${prefix}a` },
        ]);
        watch.close();
        await store.put(`${prefix}b`, 2);
        await sleep(30);
        expect(events).toHaveLength(2);
      });

      it('grants leases whose records go when they expire, with delete events', async () => {
        const prefix = `${unique('r')}/`;
        const events = await watchRecords(prefix);
        const lease = await store.grantLease(300);
        const version = await store.put(`${prefix}node`, 'up', { lease });
        await store.put(`${prefix}other`, 'stays');
        expect(await store.get(`${prefix}node`)).toEqual({
          key: `${prefix}node`,
          value: 'up',
          version,
          lease,
        });
        await waitFor(async () => (await store.get(`${prefix}node`)) === undefined, 3_000);
        await waitFor(() => events.some((e) => e.type === 'delete'));
        expect(events.filter((e) => e.type === 'delete')).toEqual([
          { type: 'delete', key: `${prefix}node` },
        ]);
        expect(await store.get(`${prefix}other`)).toBeDefined();
        const late = await store.keepAlive(lease).catch((e: unknown) => e);
        expect(late).toBeInstanceOf(LeaseExpiredError);
        expect(late).toMatchObject({ code: 'lease_expired' });
        const attach = await store.put(`${prefix}x`, 1, { lease }).catch((e: unknown) => e);
        expect(attach).toBeInstanceOf(LeaseExpiredError);
      });

      it('keeps a lease alive while it is renewed', async () => {
        const key = `${unique('r')}/node`;
        const lease = await store.grantLease(300);
        await store.put(key, 'up', { lease });
        for (let i = 0; i < 6; i++) {
          await sleep(100);
          await store.keepAlive(lease);
        }
        // 600 ms after the grant, twice the TTL, the record is still there.
        expect(await store.get(key)).toBeDefined();
        await waitFor(async () => (await store.get(key)) === undefined, 3_000);
      });

      it('revokes a lease at once', async () => {
        const prefix = `${unique('r')}/`;
        const events = await watchRecords(prefix);
        const lease = await store.grantLease(60_000);
        await store.put(`${prefix}a`, 1, { lease });
        await store.put(`${prefix}b`, 2, { lease });
        await store.revokeLease(lease);
        expect(await store.list(prefix)).toEqual([]);
        await waitFor(() => events.filter((e) => e.type === 'delete').length === 2);
        expect(
          events
            .filter((e) => e.type === 'delete')
            .map((e) => (e.type === 'delete' ? e.key : ''))
            .sort(),
        ).toEqual([`${prefix}a`, `${prefix}b`]);
        await expect(store.keepAlive(lease)).rejects.toBeInstanceOf(LeaseExpiredError);
      });

      it('moves a record off its lease when it is written without one', async () => {
        const key = `${unique('r')}/a`;
        const lease = await store.grantLease(60_000);
        await store.put(key, 1, { lease });
        await store.put(key, 2);
        await store.revokeLease(lease);
        expect((await store.get(key))?.value).toBe(2);
        expect((await store.get(key))?.lease).toBeUndefined();
      });

      it('deletes a record after its TTL, with a delete event', async () => {
        const prefix = `${unique('r')}/`;
        const events = await watchRecords(prefix);
        await store.put(`${prefix}token`, 'used', { ttlMs: 200 });
        await store.put(`${prefix}kept`, 'kept');
        expect(await store.get(`${prefix}token`)).toBeDefined();
        await waitFor(async () => (await store.get(`${prefix}token`)) === undefined, 3_000);
        await waitFor(() => events.some((e) => e.type === 'delete'));
        expect(events.filter((e) => e.type === 'delete')).toEqual([
          { type: 'delete', key: `${prefix}token` },
        ]);
        expect(await store.get(`${prefix}kept`)).toBeDefined();
      });
    });
  });
}

let counter = 0;
const run = Math.random().toString(36).slice(2, 8);

/** Names unique per run, so adapters with durable storage never see old data. */
function unique(kind: string): string {
  return `contract-${run}-${kind}${++counter}`;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

function positionsOf(events: ChannelWatchEvent[]): number[] {
  const positions: number[] = [];
  for (const event of events) if (event.type === 'message') positions.push(event.message.position);
  return positions;
}

function positionsOfMessages(messages: Array<{ position: number }>): number[] {
  return messages.map((m) => m.position);
}

/** Either every position after `after`, or one leading `lost` and every position from its oldest. */
function expectOrderedFrom(events: ChannelWatchEvent[], after: number, last: number): void {
  const first = events[0];
  const lost = events.filter((e) => e.type === 'lost');
  expect(lost.length).toBeLessThanOrEqual(1);
  if (first?.type === 'lost') {
    expect(positionsOf(events)).toEqual(range(first.oldest, last));
  } else {
    expect(lost).toEqual([]);
    expect(positionsOf(events)).toEqual(range(after + 1, last));
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 2_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(5);
  }
}
