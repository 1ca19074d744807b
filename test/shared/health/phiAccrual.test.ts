import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  PHI_ACCRUAL_DEFAULTS,
  PhiAccrualTable,
  phiOf,
  type PhiAccrualOptions,
} from '../../../shared/health/phiAccrual.js';

/** One peer's detector: row 0 of a table. */
function detectorOf(options?: PhiAccrualOptions) {
  const table = new PhiAccrualTable(options);
  table.ensureRows(1);
  return {
    threshold: table.threshold,
    heartbeat: (t: number) => table.heartbeat(0, t),
    phi: (t: number) => table.phi(0, t),
    isAvailable: (t: number) => table.isAvailable(0, t),
    reset: () => table.reset(0),
    get sampleCount() {
      return table.sampleCount(0);
    },
    get lastHeartbeatMs() {
      return table.lastHeartbeatMs(0);
    },
  };
}
type Detector = ReturnType<typeof detectorOf>;

/** Heartbeats every `intervalMs` from t = 0, `count` of them; returns the last time. */
function beat(detector: Detector, intervalMs: number, count: number, start = 0): number {
  let t = start;
  for (let i = 0; i < count; i++) {
    t = start + i * intervalMs;
    detector.heartbeat(t);
  }
  return t;
}

describe('phiOf', () => {
  it('matches the values of Akka’s formula (two-branch logistic approximation)', () => {
    const akka = (timeDiff: number, mean: number, std: number): number => {
      const y = (timeDiff - mean) / std;
      const e = Math.exp(-y * (1.5976 + 0.070566 * y * y));
      return timeDiff > mean ? -Math.log10(e / (1 + e)) : -Math.log10(1 - 1 / (1 + e));
    };
    for (const [t, mean, std] of [
      [0, 1000, 100],
      [900, 1000, 100],
      [1000, 1000, 100],
      [1100, 1000, 100],
      [1500, 1000, 100],
      [1300, 1000, 250],
    ] as const) {
      expect(phiOf(t, mean, std)).toBeCloseTo(akka(t, mean, std), 9);
    }
  });

  it('is log10(2) at the mean and roughly one per standard deviation beyond it', () => {
    expect(phiOf(1000, 1000, 100)).toBeCloseTo(Math.log10(2), 12);
    // Normal tail: P(X > mean + 2σ) ≈ 0.0228 → phi ≈ 1.64.
    expect(phiOf(1200, 1000, 100)).toBeCloseTo(-Math.log10(0.0228), 1);
  });

  it('stays finite and keeps growing far into the tail (Akka’s form saturates at Infinity)', () => {
    const far = phiOf(60_000, 1000, 50);
    expect(Number.isFinite(far)).toBe(true);
    expect(phiOf(120_000, 1000, 50)).toBeGreaterThan(far);
    expect(phiOf(-1e9, 1000, 50)).toBe(0);
  });

  it('never decreases as the silence grows, for any distribution', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 1e6, noNaN: true }),
        fc.double({ min: 0, max: 1e6, noNaN: true }),
        fc.double({ min: 1, max: 1e5, noNaN: true }),
        fc.double({ min: 0, max: 1e5, noNaN: true }),
        (t, mean, std, extra) => phiOf(t + extra, mean, std) >= phiOf(t, mean, std),
      ),
    );
  });
});

describe('PhiAccrualTable', () => {
  it('keeps one detector per row, apart also when the table grows', () => {
    const table = new PhiAccrualTable({ firstHeartbeatEstimateMs: 100 });
    table.ensureRows(2);
    for (let t = 0; t <= 1_000; t += 100) table.heartbeat(0, t);
    table.heartbeat(1, 0);
    table.ensureRows(50);
    expect(table.lastHeartbeatMs(0)).toBe(1_000);
    expect(table.lastHeartbeatMs(1)).toBe(0);
    expect(table.lastHeartbeatMs(49)).toBeUndefined();
    expect(table.phi(0, 1_100)).toBeLessThan(1);
    expect(table.phi(1, 1_100)).toBeGreaterThan(table.threshold);
    expect(table.phi(49, 1_100)).toBe(0);
  });

  it('uses the documented defaults', () => {
    expect(PHI_ACCRUAL_DEFAULTS).toEqual({
      threshold: 8,
      windowSize: 100,
      minStdDevMs: 50,
      acceptableHeartbeatPauseMs: 0,
      firstHeartbeatEstimateMs: 1000,
    });
    expect(detectorOf().threshold).toBe(8);
  });

  it('does not suspect a peer it has never heard from', () => {
    const detector = detectorOf();
    expect(detector.phi(1_000_000)).toBe(0);
    expect(detector.isAvailable(1_000_000)).toBe(true);
  });

  it('seeds the window from the first-heartbeat estimate, as Akka does', () => {
    const detector = detectorOf({ firstHeartbeatEstimateMs: 400 });
    detector.heartbeat(0);
    expect(detector.sampleCount).toBe(2);
    // Seeded with 300 and 500: mean 400, stddev 100.
    expect(detector.phi(400)).toBeCloseTo(Math.log10(2), 9);
    expect(detector.phi(600)).toBeCloseTo(phiOf(600, 400, 100), 9);
  });

  it('is ~0 right after a heartbeat and crosses the threshold when heartbeats stop', () => {
    const detector = detectorOf({ firstHeartbeatEstimateMs: 100 });
    const last = beat(detector, 100, 50);
    expect(detector.phi(last)).toBeLessThan(0.01);
    expect(detector.isAvailable(last + 100)).toBe(true);
    // Intervals of exactly 100 ms: stddev is floored at 50 ms. phi 8 is ~4.6σ beyond the mean.
    expect(detector.isAvailable(last + 300)).toBe(true);
    expect(detector.isAvailable(last + 500)).toBe(false);
  });

  it('tolerates acceptableHeartbeatPauseMs of extra silence', () => {
    const strict = detectorOf({ firstHeartbeatEstimateMs: 100 });
    const lenient = detectorOf({
      firstHeartbeatEstimateMs: 100,
      acceptableHeartbeatPauseMs: 1000,
    });
    const last = beat(strict, 100, 20);
    beat(lenient, 100, 20);
    expect(strict.isAvailable(last + 1000)).toBe(false);
    expect(lenient.isAvailable(last + 1000)).toBe(true);
    expect(lenient.phi(last + 1000)).toBeCloseTo(strict.phi(last), 9);
  });

  it('learns jitter: an irregular peer is suspected later than a regular one', () => {
    const regular = detectorOf({ firstHeartbeatEstimateMs: 1000, minStdDevMs: 1 });
    const jittery = detectorOf({ firstHeartbeatEstimateMs: 1000, minStdDevMs: 1 });
    let t = 0;
    for (let i = 0; i < 100; i++) {
      t += 1000;
      regular.heartbeat(t);
      jittery.heartbeat(t + (i % 2 === 0 ? 300 : -300));
    }
    expect(jittery.phi(t + 1600)).toBeLessThan(regular.phi(t + 1600));
  });

  it('does not learn the gap that ended a suspected failure, nor a heartbeat from the past', () => {
    const detector = detectorOf({ firstHeartbeatEstimateMs: 100 });
    const last = beat(detector, 100, 30);
    const before = detector.phi(last + 150);
    detector.heartbeat(last + 60_000); // peer came back after a long failure
    detector.heartbeat(last + 60_000 - 5); // reordered, ignored
    expect(detector.lastHeartbeatMs).toBe(last + 60_000);
    expect(detector.phi(last + 60_000 + 150)).toBeCloseTo(before, 9);
  });

  it('forgets everything on reset', () => {
    const detector = detectorOf();
    beat(detector, 1000, 5);
    detector.reset();
    expect(detector.lastHeartbeatMs).toBeUndefined();
    expect(detector.sampleCount).toBe(0);
    expect(detector.phi(1e9)).toBe(0);
  });

  it('refuses nonsensical options', () => {
    expect(() => detectorOf({ threshold: 0 })).toThrow(RangeError);
    expect(() => detectorOf({ windowSize: 0 })).toThrow(RangeError);
    expect(() => detectorOf({ minStdDevMs: -1 })).toThrow(RangeError);
    expect(() => detectorOf({ acceptableHeartbeatPauseMs: -1 })).toThrow(RangeError);
    expect(() => detectorOf({ firstHeartbeatEstimateMs: Number.NaN })).toThrow(RangeError);
    expect(() => detectorOf({ threshold: undefined })).not.toThrow();
  });

  it('for any heartbeat history: phi at a heartbeat is at most log10(2) and grows with the silence', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 150 }),
        fc.integer({ min: 0, max: 100_000 }),
        fc.integer({ min: 0, max: 100_000 }),
        (intervals, a, b) => {
          const detector = detectorOf({ firstHeartbeatEstimateMs: 500 });
          let t = 0;
          detector.heartbeat(t);
          for (const interval of intervals) detector.heartbeat((t += interval));
          const [early, late] = a <= b ? [a, b] : [b, a];
          return (
            detector.phi(t) <= Math.log10(2) + 1e-12 &&
            detector.phi(t + late) >= detector.phi(t + early) &&
            Number.isFinite(detector.phi(t + late))
          );
        },
      ),
    );
  });

  it('for any fairly regular heartbeat history: phi is ~0 right after a heartbeat', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 400, max: 600 }), { minLength: 1, maxLength: 150 }),
        (intervals) => {
          const detector = detectorOf({ firstHeartbeatEstimateMs: 500 });
          let t = 0;
          detector.heartbeat(t);
          for (const interval of intervals) detector.heartbeat((t += interval));
          return detector.phi(t) < 1e-3 && detector.phi(t + 5000) > detector.threshold;
        },
      ),
    );
  });
});
