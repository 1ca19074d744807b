import { describe, expect, it } from 'vitest';
import { errorCode } from '../../../shared/errors.js';
import { runOnce } from '../../../shared/control/idempotency.js';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';

describe('runOnce', () => {
  it('runs once, returns the stored result to duplicates, and runs again after the TTL', async () => {
    let now = 1_000_000;
    const store = new MemoryStore({ now: () => now });
    try {
      let runs = 0;
      const run = async () => ({ n: ++runs });
      const opts = { now: () => now, ttlMs: 10_000 };
      expect(await runOnce(store, 'e1', 'decide', run, opts)).toEqual({
        duplicate: false,
        result: { n: 1 },
      });
      expect(await runOnce(store, 'e1', 'decide', run, opts)).toEqual({
        duplicate: true,
        result: { n: 1 },
      });
      expect((await store.get('decisions/e1'))?.value).toMatchObject({ status: 'completed' });
      now += 10_001;
      expect(await runOnce(store, 'e1', 'decide', run, opts)).toEqual({
        duplicate: false,
        result: { n: 2 },
      });
    } finally {
      await store.close();
    }
  });

  it('refuses a second run while one is in progress, and takes over one that died', async () => {
    let now = 1_000_000;
    const store = new MemoryStore({ now: () => now });
    try {
      const opts = { now: () => now, inProgressMs: 5_000 };
      let release!: () => void;
      const first = runOnce(
        store,
        'e2',
        'decide',
        () => new Promise<string>((r) => (release = () => r('first'))),
        opts,
      );
      await new Promise((r) => setTimeout(r, 5));
      const second = await runOnce(store, 'e2', 'decide', async () => 'second', opts).catch(
        errorCode,
      );
      expect(second).toBe('in_progress');
      release();
      expect(await first).toEqual({ duplicate: false, result: 'first' });

      // A claim left by a run that died is taken over once it is older than inProgressMs.
      await store.put('decisions/e3', {
        status: 'in_progress',
        function: 'decide',
        claimedAt: now,
        expiresAt: now + 5_000,
      });
      expect(await runOnce(store, 'e3', 'decide', async () => 'x', opts).catch(errorCode)).toBe(
        'in_progress',
      );
      now += 5_001;
      expect(await runOnce(store, 'e3', 'decide', async () => 'x', opts)).toEqual({
        duplicate: false,
        result: 'x',
      });
    } finally {
      await store.close();
    }
  });

  it('releases the claim when the run fails, so a redelivery runs it', async () => {
    const store = new MemoryStore();
    try {
      const failing = runOnce(store, 'e4', 'decide', async () => {
        throw new Error('boom');
      });
      await expect(failing).rejects.toThrow('boom');
      expect(await store.get('decisions/e4')).toBeUndefined();
      expect(await runOnce(store, 'e4', 'decide', async () => 1)).toEqual({
        duplicate: false,
        result: 1,
      });
    } finally {
      await store.close();
    }
  });
});
