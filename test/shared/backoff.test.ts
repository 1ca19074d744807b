import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  SEED_BACKOFF,
  decorrelatedJitterBackoff,
  fullJitterBackoff,
  seedBackoff,
} from '../../shared/backoff.js';

describe('seedBackoff', () => {
  it('follows the seed: 0.5 s doubling, +0–30 % jitter, 60 s cap, 100 ms floor', () => {
    expect(seedBackoff(0, SEED_BACKOFF, () => 0)).toBe(500);
    expect(seedBackoff(3, SEED_BACKOFF, () => 0.22 / 0.3)).toBeCloseTo(4880); // the seed's worked example
    expect(seedBackoff(20, SEED_BACKOFF, () => 0)).toBe(60_000);
    expect(seedBackoff(20, SEED_BACKOFF, () => 0.999999)).toBeCloseTo(78_000, -1);
    expect(seedBackoff(0, { ...SEED_BACKOFF, baseMs: 10 }, () => 0)).toBe(100);
  });

  it('stays within [max(min(base·2^n, cap), floor), that·1.3) for every attempt and draw', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, r) => {
          const delay = seedBackoff(attempt, SEED_BACKOFF, () => r);
          const lower = Math.max(Math.min(500 * 2 ** attempt, 60_000), 100);
          return delay >= lower && delay < lower * 1.3 + 1e-9;
        },
      ),
    );
  });

  it('never decreases from one attempt to the next for the same draw', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 60 }),
        fc.double({ min: 0, max: 0.999, noNaN: true }),
        (attempt, r) => {
          return (
            seedBackoff(attempt + 1, SEED_BACKOFF, () => r) >=
            seedBackoff(attempt, SEED_BACKOFF, () => r)
          );
        },
      ),
    );
  });
});

describe('fullJitterBackoff and decorrelatedJitterBackoff', () => {
  it('stay between the floor and the cap', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100 }),
        fc.double({ min: 0, max: 0.999, noNaN: true }),
        fc.integer({ min: 0, max: 120_000 }),
        (attempt, r, previous) => {
          const full = fullJitterBackoff(attempt, SEED_BACKOFF, () => r);
          const decorrelated = decorrelatedJitterBackoff(previous, SEED_BACKOFF, () => r);
          return full >= 100 && full <= 60_000 && decorrelated >= 100 && decorrelated <= 60_000;
        },
      ),
    );
  });
});
