import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  CONNECT_RETRY_DEFAULTS,
  POOL_SCALING_DEFAULTS,
  PoolConnectError,
  decideScaling,
  nextConnectAttempt,
  type PoolSnapshot,
} from '../../../shared/pool/scaling.js';
import { errorCode } from '../../../shared/errors.js';

const MINUTE = 60_000;
const NOW = 10 * MINUTE;

const pool = (overrides: Partial<PoolSnapshot> = {}): PoolSnapshot => ({
  size: 10,
  active: 5,
  cpuUtilisation: 0.3,
  idle: [],
  ...overrides,
});

describe('decideScaling', () => {
  it('uses the seed’s triggers', () => {
    expect(POOL_SCALING_DEFAULTS).toMatchObject({
      busyCpuAbove: 0.8,
      activeShareAtLeast: 0.9,
      scaleUpStep: 2,
      idleTimeoutMs: 300_000,
      cooldownMs: 30_000,
    });
  });

  it('grows by 2 only when busy (CPU > 80 %) AND at least 90 % of the pool is in use', () => {
    expect(decideScaling(pool({ cpuUtilisation: 0.85, active: 9 }), NOW)).toEqual({
      kind: 'scaleUp',
      add: 2,
      targetSize: 12,
    });
    expect(decideScaling(pool({ cpuUtilisation: 0.8, active: 10 }), NOW)).toEqual({
      kind: 'hold',
      reason: 'steady',
    });
    expect(decideScaling(pool({ cpuUtilisation: 0.99, active: 8 }), NOW).kind).toBe('hold');
  });

  it('does not grow past maxSize', () => {
    const full = pool({ cpuUtilisation: 0.9, active: 10 });
    expect(decideScaling(full, NOW, { maxSize: 11 })).toMatchObject({ add: 1, targetSize: 11 });
    expect(decideScaling(full, NOW, { maxSize: 10 })).toEqual({
      kind: 'hold',
      reason: 'atMaxSize',
    });
  });

  it('reclaims connections idle longer than 5 minutes, longest idle first, down to minSize', () => {
    const idle = [
      { id: 'recent', idleSinceMs: NOW - MINUTE },
      { id: 'b', idleSinceMs: NOW - 6 * MINUTE },
      { id: 'exactly5', idleSinceMs: NOW - 5 * MINUTE },
      { id: 'a', idleSinceMs: NOW - 9 * MINUTE },
    ];
    expect(decideScaling(pool({ size: 4, active: 0, idle }), NOW)).toEqual({
      kind: 'reclaim',
      close: ['a', 'b'],
    });
    expect(decideScaling(pool({ size: 4, active: 0, idle }), NOW, { minSize: 3 })).toEqual({
      kind: 'reclaim',
      close: ['a'],
    });
    expect(decideScaling(pool({ size: 4, active: 0, idle }), NOW, { minSize: 4 })).toEqual({
      kind: 'hold',
      reason: 'atMinSize',
    });
  });

  it('prefers growing to reclaiming when both are due', () => {
    const busy = pool({
      size: 20,
      active: 19,
      cpuUtilisation: 0.95,
      idle: [{ id: 'old', idleSinceMs: 0 }],
    });
    expect(decideScaling(busy, NOW).kind).toBe('scaleUp');
  });

  it('takes at most one action per 30 s cool-down', () => {
    const busy = pool({ cpuUtilisation: 0.95, active: 10 });
    expect(decideScaling({ ...busy, lastScalingAtMs: NOW - 29_999 }, NOW)).toEqual({
      kind: 'coolingDown',
      untilMs: NOW + 1,
      pending: 'scaleUp',
    });
    expect(decideScaling({ ...busy, lastScalingAtMs: NOW - 30_000 }, NOW).kind).toBe('scaleUp');
    const idle = pool({ idle: [{ id: 'old', idleSinceMs: 0 }], lastScalingAtMs: NOW - 1 });
    expect(decideScaling(idle, NOW)).toMatchObject({ kind: 'coolingDown', pending: 'reclaim' });
    expect(decideScaling(pool({ lastScalingAtMs: NOW - 1 }), NOW)).toEqual({
      kind: 'hold',
      reason: 'steady',
    });
  });

  it('never acts twice within a cool-down, whatever the load, when the caller records its actions', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            gap: fc.integer({ min: 0, max: 20_000 }),
            cpu: fc.double({ min: 0, max: 1, noNaN: true }),
            activeShare: fc.double({ min: 0, max: 1, noNaN: true }),
            idleAgeMs: fc.integer({ min: 0, max: 10 * MINUTE }),
          }),
          { maxLength: 60 },
        ),
        (ticks) => {
          let now = NOW;
          let size = 10;
          let lastScalingAtMs: number | undefined;
          const actedAt: number[] = [];
          for (const tick of ticks) {
            now += tick.gap;
            const active = Math.round(tick.activeShare * size);
            const idle = Array.from({ length: size - active }, (_, i) => ({
              id: String(i),
              idleSinceMs: now - tick.idleAgeMs,
            }));
            const decision = decideScaling(
              { size, active, cpuUtilisation: tick.cpu, idle, lastScalingAtMs },
              now,
              { maxSize: 50 },
            );
            if (decision.kind === 'scaleUp') size = decision.targetSize;
            if (decision.kind === 'reclaim') size -= decision.close.length;
            if (decision.kind === 'scaleUp' || decision.kind === 'reclaim') {
              lastScalingAtMs = now;
              actedAt.push(now);
            }
            if (size < 0 || size > 50) return false;
          }
          return actedAt.every((t, i) => i === 0 || t - actedAt[i - 1]! >= 30_000);
        },
      ),
    );
  });
});

describe('nextConnectAttempt', () => {
  it('retries at once twice, then with seedBackoff, and gives up after the 5th attempt', () => {
    expect(CONNECT_RETRY_DEFAULTS.maxAttempts).toBe(5);
    const noJitter = (): number => 0;
    const plan = [1, 2, 3, 4].map((failures) =>
      nextConnectAttempt(failures, {}, undefined, noJitter),
    );
    expect(plan).toEqual([
      { kind: 'retry', attempt: 2, delayMs: 0 },
      { kind: 'retry', attempt: 3, delayMs: 0 },
      { kind: 'retry', attempt: 4, delayMs: 500 },
      { kind: 'retry', attempt: 5, delayMs: 1_000 },
    ]);
    const cause = new Error('ECONNREFUSED');
    const last = nextConnectAttempt(5, {}, cause);
    expect(last.kind).toBe('giveUp');
    if (last.kind !== 'giveUp') return;
    expect(last.error).toBeInstanceOf(PoolConnectError);
    expect(errorCode(last.error)).toBe('pool_connect_failed');
    expect(last.error.attempts).toBe(5);
    expect(last.error.cause).toBe(cause);
  });

  it('can back off before every retry', () => {
    expect(nextConnectAttempt(1, { backoffAfterFailures: 1 }, undefined, () => 0)).toEqual({
      kind: 'retry',
      attempt: 2,
      delayMs: 500,
    });
  });

  it('never makes more than maxAttempts attempts, and every delay is within the seed envelope', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 5 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (maxAttempts, backoffAfterFailures, r) => {
          let attempts = 1;
          for (let failures = 1; ; failures++) {
            const decision = nextConnectAttempt(
              failures,
              { maxAttempts, backoffAfterFailures },
              undefined,
              () => r,
            );
            if (decision.kind === 'giveUp') return attempts === maxAttempts;
            attempts = decision.attempt;
            if (
              decision.attempt !== failures + 1 ||
              decision.delayMs < 0 ||
              decision.delayMs >= 78_000
            ) {
              return false;
            }
            if (failures >= backoffAfterFailures && decision.delayMs < 100) return false;
          }
        },
      ),
    );
  });
});
