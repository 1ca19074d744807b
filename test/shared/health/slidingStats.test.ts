import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SlidingStats } from '../../../shared/health/slidingStats.js';

function naive(samples: number[]): { mean: number; stdDev: number } {
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  const variance =
    samples.length < 2 ? 0 : samples.reduce((a, b) => a + (b - mean) ** 2, 0) / samples.length;
  return { mean, stdDev: Math.sqrt(variance) };
}

describe('SlidingStats', () => {
  it('keeps the mean and population stddev of the last `capacity` samples', () => {
    const stats = new SlidingStats(3);
    expect(stats.count).toBe(0);
    expect(stats.stdDev).toBe(0);
    for (const x of [10, 20, 30, 40]) stats.push(x);
    expect(stats.count).toBe(3);
    expect(stats.mean).toBeCloseTo(30);
    expect(stats.stdDev).toBeCloseTo(Math.sqrt(200 / 3));
  });

  it('refuses a bad capacity and non-finite samples', () => {
    expect(() => new SlidingStats(0)).toThrow(RangeError);
    expect(() => new SlidingStats(1.5)).toThrow(RangeError);
    expect(() => new SlidingStats(2).push(Number.NaN)).toThrow(RangeError);
  });

  it('matches a direct computation over the window for any sequence', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { maxLength: 200 }),
        (capacity, samples) => {
          const stats = new SlidingStats(capacity);
          for (const x of samples) stats.push(x);
          const window = samples.slice(-capacity);
          if (window.length === 0) return stats.count === 0;
          const expected = naive(window);
          // Rounding left by samples that already left the window (up to one turn of the
          // ring before the periodic recompute) scales with their size, not the window's.
          const recent = samples.slice(-2 * capacity);
          const tolerance = 1e-6 * (1 + Math.max(...recent.map(Math.abs)));
          return (
            stats.count === window.length &&
            Math.abs(stats.mean - expected.mean) <= tolerance &&
            Math.abs(stats.stdDev - expected.stdDev) <= tolerance
          );
        },
      ),
    );
  });

  it('stays accurate after a million replacements around a large mean', () => {
    const stats = new SlidingStats(100);
    for (let i = 0; i < 1_000_000; i++) stats.push(1_000_000 + (i % 2 === 0 ? 1 : -1));
    expect(stats.mean).toBeCloseTo(1_000_000, 6);
    expect(stats.stdDev).toBeCloseTo(1, 6);
  });
});
