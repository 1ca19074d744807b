import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SlidingStatsTable } from '../../../shared/health/slidingStats.js';

function naive(samples: number[]): { mean: number; stdDev: number } {
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  const variance =
    samples.length < 2 ? 0 : samples.reduce((a, b) => a + (b - mean) ** 2, 0) / samples.length;
  return { mean, stdDev: Math.sqrt(variance) };
}

/** A table with one row, row 0. */
function single(window: number): SlidingStatsTable {
  const table = new SlidingStatsTable(window);
  table.ensureRows(1);
  return table;
}

describe('SlidingStatsTable', () => {
  it('keeps the mean and population stddev of the last `window` samples', () => {
    const stats = single(3);
    expect(stats.count(0)).toBe(0);
    expect(stats.stdDev(0)).toBe(0);
    for (const x of [10, 20, 30, 40]) stats.push(0, x);
    expect(stats.count(0)).toBe(3);
    expect(stats.mean(0)).toBeCloseTo(30);
    expect(stats.stdDev(0)).toBeCloseTo(Math.sqrt(200 / 3));
  });

  it('keeps rows apart, also across growth, and clears one row', () => {
    const stats = new SlidingStatsTable(4);
    stats.ensureRows(2);
    stats.push(0, 5);
    stats.push(1, 100);
    stats.push(1, 300);
    stats.ensureRows(100);
    expect([stats.mean(0), stats.mean(1), stats.stdDev(1), stats.count(99)]).toEqual([
      5, 200, 100, 0,
    ]);
    stats.clear(1);
    expect([stats.count(1), stats.mean(1), stats.count(0)]).toEqual([0, 0, 1]);
  });

  it('refuses a bad window and non-finite samples', () => {
    expect(() => new SlidingStatsTable(0)).toThrow(RangeError);
    expect(() => new SlidingStatsTable(1.5)).toThrow(RangeError);
    expect(() => new SlidingStatsTable(70_000)).toThrow(RangeError);
    expect(() => single(2).push(0, Number.NaN)).toThrow(RangeError);
  });

  it('matches a direct computation over the window for any sequence', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { maxLength: 200 }),
        (capacity, samples) => {
          const stats = single(capacity);
          for (const x of samples) stats.push(0, x);
          // Samples are kept as 32-bit floats.
          const window = samples.slice(-capacity).map(Math.fround);
          if (window.length === 0) return stats.count(0) === 0;
          const expected = naive(window);
          // Rounding left by samples that already left the window (up to one turn of the
          // ring before the periodic recompute) scales with their size, not the window's.
          const recent = samples.slice(-2 * capacity);
          const tolerance = 1e-6 * (1 + Math.max(...recent.map(Math.abs)));
          return (
            stats.count(0) === window.length &&
            Math.abs(stats.mean(0) - expected.mean) <= tolerance &&
            Math.abs(stats.stdDev(0) - expected.stdDev) <= tolerance
          );
        },
      ),
    );
  });

  it('stays accurate after a million replacements around a large mean', () => {
    const stats = single(100);
    for (let i = 0; i < 1_000_000; i++) stats.push(0, 1_000_000 + (i % 2 === 0 ? 1 : -1));
    expect(stats.mean(0)).toBeCloseTo(1_000_000, 6);
    expect(stats.stdDev(0)).toBeCloseTo(1, 6);
  });
});
