import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';
import type { ChannelWatchEvent } from '../../../shared/store/StateStore.js';
import { stateStoreContract } from './stateStoreContract.js';

const limits = { maxCount: 5, maxAgeMs: 400 };

stateStoreContract(
  'MemoryStore',
  async () => {
    const store = new MemoryStore({ limits });
    return { store, cleanup: () => store.close() };
  },
  { limits },
);

describe('MemoryStore specifics', () => {
  it('uses the injected clock for age and TTL', async () => {
    let now = 1_000_000;
    const store = new MemoryStore({ limits: { maxCount: 100, maxAgeMs: 1_000 }, now: () => now });
    try {
      await store.append('c', 1);
      now += 500;
      await store.append('c', 2);
      await store.put('k', 1, { ttlMs: 700 });
      now += 600;
      expect((await store.read('c', 0, 10)).messages.map((m) => m.position)).toEqual([2]);
      expect(await store.get('k')).toBeDefined();
      now += 200;
      expect(await store.get('k')).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('keeps trimming cheap and correct across compaction of a long log', async () => {
    const store = new MemoryStore({ limits: { maxCount: 100, maxAgeMs: 60_000 } });
    try {
      const events: ChannelWatchEvent[] = [];
      const watch = await store.watchChannel('c', 0, (e) => events.push(e));
      for (let i = 1; i <= 5_000; i++) await store.append('c', i);
      const page = await store.read('c', 0, 1_000);
      expect(page.oldest).toBe(4_901);
      expect(page.messages.map((m) => m.position)).toEqual(
        Array.from({ length: 100 }, (_, i) => 4_901 + i),
      );
      expect((await store.read('c', 4_950, 3)).messages.map((m) => m.position)).toEqual([
        4_951, 4_952, 4_953,
      ]);
      await new Promise((r) => setTimeout(r, 0));
      expect(events).toHaveLength(5_000);
      watch.close();
    } finally {
      await store.close();
    }
  });

  it('isolates a throwing listener from the appender and other watchers', async () => {
    const store = new MemoryStore({ logger: { warn: () => {} } as never });
    try {
      const seen: number[] = [];
      await store.watchChannel('c', undefined, () => {
        throw new Error('boom');
      });
      await store.watchChannel('c', undefined, (e) => {
        if (e.type === 'message') seen.push(e.message.position);
      });
      await store.append('c', 1);
      await store.append('c', 2);
      await new Promise((r) => setTimeout(r, 0));
      expect(seen).toEqual([1, 2]);
    } finally {
      await store.close();
    }
  });

  it('refuses work after close and leaves no timers behind', async () => {
    const store = new MemoryStore();
    const lease = await store.grantLease(60_000);
    await store.put('k', 1, { lease, ttlMs: 60_000 });
    await store.close();
    await expect(store.get('k')).rejects.toMatchObject({ code: 'store_unavailable' });
  });
});
