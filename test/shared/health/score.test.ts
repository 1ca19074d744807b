import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  AdaptiveThreshold,
  CONNECTION_SCORE_WEIGHTS,
  EWMA_ALPHA,
  Ewma,
  NODE_SCORE_CONSTANTS,
  connectionHealthScore,
  finRstScore,
  nodeHealthScore,
  percentile,
  perMinute,
  rttStability,
  synRetransmitScore,
  type ConnectionHealthInputs,
  type NodeHealthInputs,
} from '../../../shared/health/score.js';

const anyNumber = fc.oneof(
  fc.double({ noNaN: false }),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, 0, -0),
);
const nonNegative = fc.double({ min: 0, max: 1e9, noNaN: true });

const connectionInputs = fc.record({
  rttStdDevMs: nonNegative,
  finRstPerMinute: nonNegative,
  synRetransmitRate: nonNegative,
});

describe('connection health score', () => {
  it('uses the seed’s weights, which sum to 1', () => {
    expect(CONNECTION_SCORE_WEIGHTS).toEqual({
      rttStability: 0.4,
      finRst: 0.35,
      synRetransmit: 0.25,
    });
    const sum = Object.values(CONNECTION_SCORE_WEIGHTS).reduce((a, b) => a + b, 0);
    expect(sum).toBeCloseTo(1, 12);
  });

  it('follows the seed’s component formulas', () => {
    expect(finRstScore(0)).toBe(1);
    expect(finRstScore(2.5)).toBeCloseTo(0.5);
    expect(finRstScore(5)).toBe(0);
    expect(finRstScore(50)).toBe(0);
    expect(synRetransmitScore(0)).toBe(1);
    expect(synRetransmitScore(0.1)).toBeCloseTo(Math.exp(-1));
    expect(rttStability(0)).toBe(1);
    expect(rttStability(10)).toBeCloseTo(0.968, 3);
    expect(rttStability(50)).toBeCloseTo(0.518, 3);
    expect(rttStability(100)).toBeCloseTo(0.036, 3);
  });

  it('is 100 for a perfect connection and blends the parts by weight', () => {
    expect(
      connectionHealthScore({ rttStdDevMs: 0, finRstPerMinute: 0, synRetransmitRate: 0 }),
    ).toBe(100);
    // Only FIN/RST maxed out: loses exactly its weight.
    expect(
      connectionHealthScore({ rttStdDevMs: 0, finRstPerMinute: 5, synRetransmitRate: 0 }),
    ).toBeCloseTo(65);
    expect(
      connectionHealthScore({ rttStdDevMs: 0, finRstPerMinute: 0, synRetransmitRate: Infinity }),
    ).toBeCloseTo(75);
    expect(
      connectionHealthScore({ rttStdDevMs: Infinity, finRstPerMinute: 0, synRetransmitRate: 0 }),
    ).toBeCloseTo(60);
    expect(
      connectionHealthScore({ rttStdDevMs: Infinity, finRstPerMinute: 9, synRetransmitRate: 9 }),
    ).toBeCloseTo(0, 10);
  });

  it('stays within 0–100 for any input, including NaN and infinities', () => {
    fc.assert(
      fc.property(
        anyNumber,
        anyNumber,
        anyNumber,
        (rttStdDevMs, finRstPerMinute, synRetransmitRate) => {
          const score = connectionHealthScore({ rttStdDevMs, finRstPerMinute, synRetransmitRate });
          return score >= 0 && score <= 100 && !Number.isNaN(score);
        },
      ),
    );
  });

  it('never rises when jitter, closes or SYN retransmits grow', () => {
    const keys: (keyof ConnectionHealthInputs)[] = [
      'rttStdDevMs',
      'finRstPerMinute',
      'synRetransmitRate',
    ];
    fc.assert(
      fc.property(connectionInputs, fc.constantFrom(...keys), nonNegative, (inputs, key, more) => {
        const worse = { ...inputs, [key]: inputs[key] + more };
        return connectionHealthScore(worse) <= connectionHealthScore(inputs);
      }),
    );
  });

  it('converts a windowed count to a per-minute frequency', () => {
    expect(perMinute(3, 30_000)).toBe(6);
    expect(perMinute(3, 0)).toBe(0);
    expect(perMinute(-1, 60_000)).toBe(0);
  });
});

describe('Ewma', () => {
  it('starts at the first sample and moves a tenth of the way to each new one', () => {
    const ewma = new Ewma();
    expect(ewma.alpha).toBe(EWMA_ALPHA);
    expect(ewma.value).toBeUndefined();
    expect(ewma.update(100)).toBe(100);
    expect(ewma.update(200)).toBeCloseTo(110);
    expect(ewma.update(Number.NaN)).toBeCloseTo(110);
    expect(ewma.count).toBe(2);
    ewma.reset();
    expect(ewma.value).toBeUndefined();
    expect(() => new Ewma(0)).toThrow(RangeError);
    expect(() => new Ewma(1.5)).toThrow(RangeError);
  });

  it('stays between the smallest and largest sample seen', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 1 }),
        (xs) => {
          const ewma = new Ewma();
          for (const x of xs) ewma.update(x);
          const value = ewma.value ?? Number.NaN;
          return value >= Math.min(...xs) - 1e-6 && value <= Math.max(...xs) + 1e-6;
        },
      ),
    );
  });
});

describe('AdaptiveThreshold', () => {
  /** A noisy but steady series around 100 (deterministic). */
  const steady = (i: number): number => 100 + 5 * Math.sin(i * 1.7);

  it('flags a spike far above a noisy baseline, not the ordinary noise', () => {
    const threshold = new AdaptiveThreshold({ direction: 'above' });
    let flagged = 0;
    for (let i = 0; i < 200; i++) if (threshold.observe(steady(i)).anomalous) flagged += 1;
    expect(flagged).toBe(0);
    const verdict = threshold.observe(200);
    expect(verdict.anomalous).toBe(true);
    expect(verdict.baseline).toBeGreaterThan(95);
    expect(verdict.baseline).toBeLessThan(105);
    expect(verdict.upper).toBeCloseTo(verdict.baseline + 4 * verdict.deviation);
    // 'above' does not watch the low side.
    expect(threshold.observe(0).anomalous).toBe(false);
  });

  it('watches the low side for scores', () => {
    const threshold = new AdaptiveThreshold({ direction: 'below' });
    for (let i = 0; i < 50; i++) threshold.observe(steady(i));
    expect(threshold.observe(40).anomalous).toBe(true);
    expect(threshold.observe(400).anomalous).toBe(false);
  });

  it('flags nothing during warm-up, and uses the deviation floor on a flat series', () => {
    const threshold = new AdaptiveThreshold({ minDeviation: 2 });
    for (let i = 0; i < 9; i++)
      expect(threshold.observe(i === 5 ? 1000 : 50).anomalous).toBe(false);
    const flat = new AdaptiveThreshold({ minDeviation: 2 });
    for (let i = 0; i < 20; i++) flat.observe(50);
    expect(flat.observe(57).anomalous).toBe(false);
    expect(flat.observe(59).anomalous).toBe(true);
    expect(flat.bounds()?.deviation).toBeGreaterThanOrEqual(2);
  });

  it('absorbs a lasting shift by default, or keeps flagging it when told not to learn faults', () => {
    const learning = new AdaptiveThreshold();
    const frozen = new AdaptiveThreshold({ learnFromAnomalies: false });
    for (let i = 0; i < 50; i++) {
      learning.observe(steady(i));
      frozen.observe(steady(i));
    }
    let learningFlags = 0;
    let frozenFlags = 0;
    for (let i = 0; i < 100; i++) {
      if (learning.observe(300 + steady(i)).anomalous) learningFlags += 1;
      if (frozen.observe(300 + steady(i)).anomalous) frozenFlags += 1;
    }
    expect(learningFlags).toBeGreaterThan(0);
    expect(learningFlags).toBeLessThan(50);
    expect(frozenFlags).toBe(100);
  });

  it('ignores NaN and refuses bad options', () => {
    const threshold = new AdaptiveThreshold();
    expect(threshold.bounds()).toBeUndefined();
    expect(threshold.observe(Number.NaN).anomalous).toBe(false);
    expect(threshold.bounds()).toBeUndefined();
    threshold.observe(5);
    threshold.reset();
    expect(threshold.bounds()).toBeUndefined();
    expect(() => new AdaptiveThreshold({ k: 0 })).toThrow(RangeError);
    expect(() => new AdaptiveThreshold({ minDeviation: -1 })).toThrow(RangeError);
  });
});

describe('node health score', () => {
  const healthy: NodeHealthInputs = {
    connectionScores: [100, 100, 100],
    cpuUtilisation: 0.2,
    eventLoopDelayMs: 5,
    eventLoopUtilisation: 0.1,
  };

  it('is 100 for an idle, healthy node and with no connections at all', () => {
    expect(nodeHealthScore(healthy)).toBe(100);
    expect(nodeHealthScore({ ...healthy, connectionScores: [] })).toBe(100);
  });

  it('drops to 0 when any one resource is exhausted', () => {
    expect(nodeHealthScore({ ...healthy, cpuUtilisation: 1 })).toBe(0);
    expect(nodeHealthScore({ ...healthy, eventLoopDelayMs: 250 })).toBe(0);
    expect(nodeHealthScore({ ...healthy, eventLoopUtilisation: 1 })).toBe(0);
    expect(nodeHealthScore({ ...healthy, connectionScores: [0, 0, 0] })).toBe(0);
  });

  it('weighs connections by their 10th percentile: a bad tenth shows, one bad client does not', () => {
    const many = (bad: number): number[] =>
      Array.from({ length: 100 }, (_, i) => (i < bad ? 10 : 100));
    expect(nodeHealthScore({ ...healthy, connectionScores: many(1) })).toBe(100);
    expect(nodeHealthScore({ ...healthy, connectionScores: many(10) })).toBeCloseTo(
      100 * 0.1 ** NODE_SCORE_CONSTANTS.weights.connections,
    );
    expect(percentile([5, 1, 4, 2, 3], 0.1)).toBe(1);
    expect(percentile([5, 1, 4, 2, 3], 0.5)).toBe(3);
    expect(percentile([Number.NaN], 0.1)).toBeUndefined();
  });

  it('costs nothing below half load and follows the documented curve above it', () => {
    expect(nodeHealthScore({ ...healthy, cpuUtilisation: 0.5 })).toBe(100);
    expect(nodeHealthScore({ ...healthy, cpuUtilisation: 0.75 })).toBeCloseTo(100 * 0.5 ** 0.25);
    expect(nodeHealthScore({ ...healthy, eventLoopDelayMs: 110 })).toBeCloseTo(100 * 0.5 ** 0.25);
  });

  const nodeInputs = fc.record({
    connectionScores: fc.array(fc.double({ min: 0, max: 100, noNaN: true }), { maxLength: 30 }),
    cpuUtilisation: fc.double({ min: 0, max: 1, noNaN: true }),
    eventLoopDelayMs: fc.double({ min: 0, max: 1000, noNaN: true }),
    eventLoopUtilisation: fc.double({ min: 0, max: 1, noNaN: true }),
  });

  it('stays within 0–100 for any input', () => {
    fc.assert(
      fc.property(
        fc.array(anyNumber, { maxLength: 10 }),
        anyNumber,
        anyNumber,
        anyNumber,
        (connectionScores, cpuUtilisation, eventLoopDelayMs, eventLoopUtilisation) => {
          const score = nodeHealthScore({
            connectionScores,
            cpuUtilisation,
            eventLoopDelayMs,
            eventLoopUtilisation,
          });
          return score >= 0 && score <= 100 && !Number.isNaN(score);
        },
      ),
    );
  });

  it('never rises with more CPU, loop delay or loop utilisation, nor with a worse connection', () => {
    fc.assert(
      fc.property(
        nodeInputs,
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.nat({ max: 29 }),
        (inputs, more, index) => {
          const base = nodeHealthScore(inputs);
          const scores = [...inputs.connectionScores];
          const i = index % Math.max(1, scores.length);
          if (scores.length > 0) scores[i] = Math.max(0, (scores[i] ?? 0) - more * 100);
          return (
            nodeHealthScore({ ...inputs, cpuUtilisation: inputs.cpuUtilisation + more }) <= base &&
            nodeHealthScore({
              ...inputs,
              eventLoopDelayMs: inputs.eventLoopDelayMs + more * 500,
            }) <= base &&
            nodeHealthScore({
              ...inputs,
              eventLoopUtilisation: inputs.eventLoopUtilisation + more,
            }) <= base &&
            nodeHealthScore({ ...inputs, connectionScores: scores }) <= base
          );
        },
      ),
    );
  });
});
