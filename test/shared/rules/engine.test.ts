import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  RuleValidationError,
  SEED_NODE_RULES,
  compileRules,
  createRuleState,
  evaluate,
  factsRead,
  firstMatch,
  observe,
  type Condition,
  type Facts,
  type Predicate,
  type RulePlan,
  type RuleSet,
} from '../../../shared/rules/index.js';

const when = (condition: Condition, match: RuleSet['match'] = 'all'): RulePlan =>
  compileRules({ match, rules: [{ name: 'r', when: condition, then: { action: 'act' } }] });

/** Whether the single rule of `plan` matches. */
const holds = (plan: RulePlan, state: Float64Array, facts: Facts, now: number): boolean =>
  evaluate(plan, state, facts, now).length > 0;

describe('stateless conditions', () => {
  it('reads boolean facts and compares numbers; unknown facts satisfy no leaf', () => {
    const plan = when({
      type: 'all',
      of: [
        { type: 'fact', fact: 'up' },
        { type: 'compare', fact: 'cpu', op: '>=', value: 0.5 },
      ],
    });
    const state = createRuleState(plan);
    expect(plan.stateSize).toBe(0);
    expect(holds(plan, state, { up: true, cpu: 0.5 }, 0)).toBe(true);
    expect(holds(plan, state, { up: true, cpu: 0.4 }, 0)).toBe(false);
    expect(holds(plan, state, { up: 1, cpu: 0.9 }, 0)).toBe(false);
    expect(holds(plan, state, { up: true }, 0)).toBe(false);
    expect(holds(plan, state, { up: true, cpu: true }, 0)).toBe(false);
    expect(holds(when({ type: 'not', of: { type: 'fact', fact: 'up' } }), state, {}, 0)).toBe(true);
  });

  it('supports every comparison operator', () => {
    const ops = {
      '>': [false, false, true],
      '>=': [false, true, true],
      '<': [true, false, false],
      '<=': [true, true, false],
      '==': [false, true, false],
      '!=': [true, false, true],
    } as const;
    for (const [op, expected] of Object.entries(ops)) {
      const plan = when({ type: 'compare', fact: 'x', op: op as keyof typeof ops, value: 5 });
      const state = createRuleState(plan);
      expect([4, 5, 6].map((x) => holds(plan, state, { x }, 0))).toEqual(expected);
    }
  });
});

describe('rule sets', () => {
  const set = (match: RuleSet['match']): RulePlan =>
    compileRules({
      match,
      rules: [
        { name: 'a', when: { type: 'fact', fact: 'a' }, then: { action: 'A' } },
        { name: 'b', when: { type: 'fact', fact: 'b' }, then: { action: 'B' } },
      ],
    });

  it("reports every match in order for 'all' and only the first for 'first'", () => {
    const all = set('all');
    const first = set('first');
    const facts = { a: true, b: true };
    expect(evaluate(all, createRuleState(all), facts, 0).map((r) => r.name)).toEqual(['a', 'b']);
    expect(evaluate(first, createRuleState(first), facts, 0).map((r) => r.name)).toEqual(['a']);
    expect(firstMatch(all, createRuleState(all), { b: true }, 0)?.then.action).toBe('B');
    expect(firstMatch(all, createRuleState(all), {}, 0)).toBeUndefined();
  });

  it('validates what it compiles, and refuses a state made for another plan', () => {
    expect(() => when({ type: 'consecutive', count: 0, of: { type: 'fact', fact: 'a' } })).toThrow(
      RuleValidationError,
    );
    const stateful = when({ type: 'consecutive', count: 2, of: { type: 'fact', fact: 'a' } });
    expect(() => observe(stateful, new Float64Array(0), {}, 0)).toThrow(RangeError);
    expect(() => evaluate(set('all'), createRuleState(stateful), {}, 0)).toThrow(RangeError);
  });

  it('keeps per-instance state small and separate', () => {
    expect(compileRules(SEED_NODE_RULES).stateSize).toBe(2);
    const plan = when({ type: 'rateOver', event: 'rst', atLeast: 5, windowMs: 1000 });
    expect(plan.stateSize).toBe(6);
    const one = createRuleState(plan);
    const other = createRuleState(plan);
    for (let i = 0; i < 5; i++) observe(plan, one, { rst: true }, i);
    expect(holds(plan, one, {}, 10)).toBe(true);
    expect(holds(plan, other, {}, 10)).toBe(false);
  });

  it('lists the facts a condition reads', () => {
    expect([...factsRead(SEED_NODE_RULES.rules[0]!.when)]).toEqual(['pingTimedOut']);
    expect([
      ...factsRead({
        type: 'any',
        of: [
          { type: 'rateOver', event: 'rst', atLeast: 1, windowMs: 1 },
          { type: 'not', of: { type: 'compare', fact: 'cpu', op: '>', value: 1 } },
        ],
      }),
    ]).toEqual(['rst', 'cpu']);
  });
});

describe('consecutive', () => {
  const plan = when({ type: 'consecutive', count: 3, of: { type: 'fact', fact: 'timeout' } });

  it('fires on the Nth consecutive observation and resets on a good one', () => {
    const state = createRuleState(plan);
    const seen = [true, true, false, true, true, true, true, false].map((timeout, t) => {
      observe(plan, state, { timeout }, t);
      return holds(plan, state, {}, t);
    });
    expect(seen).toEqual([false, false, false, false, false, true, true, false]);
  });

  it('ignores observations that do not mention its facts', () => {
    const state = createRuleState(plan);
    observe(plan, state, { timeout: true }, 0);
    observe(plan, state, { timeout: true }, 1);
    observe(plan, state, { cpu: 0.99 }, 2);
    observe(plan, state, { timeout: true }, 3);
    expect(holds(plan, state, {}, 3)).toBe(true);
  });

  it('holds exactly when the last N relevant observations all satisfied the predicate', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.option(fc.boolean(), { nil: undefined }), { maxLength: 40 }),
        (count, sequence) => {
          const p = when({ type: 'consecutive', count, of: { type: 'fact', fact: 'bad' } });
          const state = createRuleState(p);
          const relevant: boolean[] = [];
          return sequence.every((bad, t) => {
            observe(p, state, bad === undefined ? { other: 1 } : { bad }, t);
            if (bad !== undefined) relevant.push(bad);
            const expected = relevant.length >= count && relevant.slice(-count).every(Boolean);
            return holds(p, state, {}, t) === expected;
          });
        },
      ),
    );
  });
});

describe('thresholdFor', () => {
  const plan = when({ type: 'thresholdFor', fact: 'cpu', op: '>', value: 0.95, forMs: 30_000 });

  it('fires only once the metric has been over the threshold for the full duration', () => {
    const state = createRuleState(plan);
    observe(plan, state, { cpu: 0.97 }, 1_000);
    expect(holds(plan, state, {}, 30_999)).toBe(false);
    observe(plan, state, { cpu: 0.99 }, 20_000); // still over: the clock keeps running
    observe(plan, state, { load: 3 }, 25_000); // says nothing about CPU
    expect(holds(plan, state, {}, 31_000)).toBe(true);
    observe(plan, state, { cpu: 0.5 }, 32_000);
    expect(holds(plan, state, {}, 32_000)).toBe(false);
    observe(plan, state, { cpu: 0.96 }, 33_000);
    expect(holds(plan, state, {}, 62_999)).toBe(false);
    expect(holds(plan, state, {}, 63_000)).toBe(true);
    observe(plan, state, { cpu: Number.NaN }, 64_000);
    expect(holds(plan, state, {}, 100_000)).toBe(false);
  });

  it('holds at time t exactly when every observation since some t0 <= t − forMs was over', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5_000 }),
        fc.array(fc.record({ gap: fc.integer({ min: 0, max: 2_000 }), over: fc.boolean() }), {
          minLength: 1,
          maxLength: 30,
        }),
        fc.integer({ min: 0, max: 10_000 }),
        (forMs, steps, after) => {
          const p = when({ type: 'thresholdFor', fact: 'm', op: '>=', value: 10, forMs });
          const state = createRuleState(p);
          let t = 0;
          let overSince: number | undefined;
          for (const { gap, over } of steps) {
            t += gap;
            observe(p, state, { m: over ? 10 : 9 }, t);
            overSince = over ? (overSince ?? t) : undefined;
          }
          const now = t + after;
          const expected = overSince !== undefined && now - overSince >= forMs;
          return holds(p, state, {}, now) === expected;
        },
      ),
    );
  });
});

describe('rateOver', () => {
  it('holds while at least N events fell in the window, counting numbers and true', () => {
    const plan = when({ type: 'rateOver', event: 'rst', atLeast: 3, windowMs: 1_000 });
    const state = createRuleState(plan);
    observe(plan, state, { rst: true }, 0);
    observe(plan, state, { rst: 2 }, 500);
    expect(holds(plan, state, {}, 999)).toBe(true);
    expect(holds(plan, state, {}, 1_000)).toBe(false); // the event at 0 has left the window
    observe(plan, state, { rst: false }, 1_200);
    observe(plan, state, { rst: 0 }, 1_200);
    expect(holds(plan, state, {}, 1_200)).toBe(false);
    observe(plan, state, { rst: 50 }, 1_300);
    expect(holds(plan, state, {}, 2_299)).toBe(true);
  });

  it('agrees with counting every event, for in-order event streams', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 3_000 }),
        fc.array(fc.record({ gap: fc.integer({ min: 0, max: 700 }), n: fc.nat({ max: 3 }) }), {
          maxLength: 40,
        }),
        (atLeast, windowMs, steps) => {
          const plan = when({ type: 'rateOver', event: 'e', atLeast, windowMs });
          const state = createRuleState(plan);
          const times: number[] = [];
          let t = 0;
          return steps.every(({ gap, n }) => {
            t += gap;
            observe(plan, state, { e: n }, t);
            for (let i = 0; i < n; i++) times.push(t);
            const inWindow = times.filter((at) => t - at < windowMs).length;
            return holds(plan, state, {}, t) === inWindow >= atLeast;
          });
        },
      ),
    );
  });

  it('counts an event reported out of order as happening at the latest time seen', () => {
    const plan = when({ type: 'rateOver', event: 'e', atLeast: 2, windowMs: 100 });
    const state = createRuleState(plan);
    observe(plan, state, { e: 1 }, 1_000);
    observe(plan, state, { e: 1 }, 10); // late report
    expect(holds(plan, state, {}, 1_050)).toBe(true);
  });
});

describe('boolean algebra of composites', () => {
  const FACTS = ['a', 'b', 'c', 'd'] as const;
  const { predicate } = fc.letrec<{ predicate: Predicate }>((tie) => ({
    predicate: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constantFrom(...FACTS).map((fact): Predicate => ({ type: 'fact', fact })),
      fc
        .record({ fact: fc.constantFrom(...FACTS), value: fc.integer({ min: 0, max: 3 }) })
        .map(({ fact, value }): Predicate => ({ type: 'compare', fact, op: '>=', value })),
      fc
        .array(tie('predicate'), { minLength: 1, maxLength: 3 })
        .map((of): Predicate => ({ type: 'all', of })),
      fc
        .array(tie('predicate'), { minLength: 1, maxLength: 3 })
        .map((of): Predicate => ({ type: 'any', of })),
      tie('predicate').map((of): Predicate => ({ type: 'not', of })),
    ),
  }));
  const facts = fc.record(
    Object.fromEntries(
      FACTS.map((f) => [
        f,
        fc.option(fc.oneof(fc.boolean(), fc.integer({ min: 0, max: 3 })), { nil: undefined }),
      ]),
    ) as Record<(typeof FACTS)[number], fc.Arbitrary<boolean | number | undefined>>,
  );

  /** A direct interpreter, to check the compiled closures against. */
  function truth(p: Predicate, f: Facts): boolean {
    switch (p.type) {
      case 'fact':
        return f[p.fact] === true;
      case 'compare': {
        const v = f[p.fact];
        return typeof v === 'number' && v >= p.value;
      }
      case 'all':
        return p.of.every((q) => truth(q, f));
      case 'any':
        return p.of.some((q) => truth(q, f));
      case 'not':
        return !truth(p.of, f);
    }
  }

  const check = (condition: Condition, f: Facts): boolean => {
    const plan = when(condition);
    return holds(plan, createRuleState(plan), f, 0);
  };

  it('evaluates any nesting as boolean logic says', () => {
    fc.assert(fc.property(predicate, facts, (p, f) => check(p, f) === truth(p, f)));
  });

  it('obeys double negation and De Morgan’s laws', () => {
    fc.assert(
      fc.property(predicate, predicate, facts, (x, y, f) => {
        const notX: Condition = { type: 'not', of: x };
        const notY: Condition = { type: 'not', of: y };
        return (
          check({ type: 'not', of: notX }, f) === check(x, f) &&
          check({ type: 'not', of: { type: 'all', of: [x, y] } }, f) ===
            check({ type: 'any', of: [notX, notY] }, f) &&
          check({ type: 'not', of: { type: 'any', of: [x, y] } }, f) ===
            check({ type: 'all', of: [notX, notY] }, f)
        );
      }),
    );
  });

  it('obeys De Morgan over stateful leaves too, through any sequence of observations', () => {
    const x: Condition = { type: 'consecutive', count: 2, of: { type: 'fact', fact: 'a' } };
    const y: Condition = { type: 'thresholdFor', fact: 'b', op: '>=', value: 2, forMs: 100 };
    const z: Condition = { type: 'rateOver', event: 'c', atLeast: 2, windowMs: 150 };
    const rules = (conditions: Condition[]): RulePlan =>
      compileRules({
        match: 'all',
        rules: conditions.map((when, i) => ({ name: `r${i}`, when, then: { action: 'x' } })),
      });
    const not = (of: Condition): Condition => ({ type: 'not', of });
    const plan = rules([
      not({ type: 'all', of: [x, y, z] }),
      { type: 'any', of: [not(x), not(y), not(z)] },
      not({ type: 'any', of: [x, y] }),
      { type: 'all', of: [not(x), not(y)] },
      not(not(z)),
      z,
    ]);
    fc.assert(
      fc.property(
        fc.array(fc.record({ gap: fc.integer({ min: 0, max: 80 }), facts }), { maxLength: 30 }),
        (steps) => {
          const state = createRuleState(plan);
          let t = 0;
          return steps.every(({ gap, facts: observation }) => {
            t += gap;
            observe(plan, state, observation, t);
            const matched = new Set(evaluate(plan, state, {}, t).map((r) => r.name));
            return (
              matched.has('r0') === matched.has('r1') &&
              matched.has('r2') === matched.has('r3') &&
              matched.has('r4') === matched.has('r5')
            );
          });
        },
      ),
    );
  });
});

describe('the seed’s node rules', () => {
  const plan = compileRules(SEED_NODE_RULES);
  const actions = (state: Float64Array, now: number): string[] =>
    evaluate(plan, state, {}, now).map((rule) => rule.then.action);

  it('3 consecutive ping timeouts → migrate the node’s sessions; a pong breaks the run', () => {
    const state = createRuleState(plan);
    observe(plan, state, { pingTimedOut: true }, 0);
    observe(plan, state, { pingTimedOut: true }, 500);
    observe(plan, state, { pingTimedOut: false }, 1_000);
    observe(plan, state, { pingTimedOut: true }, 1_500);
    observe(plan, state, { pingTimedOut: true }, 2_000);
    expect(actions(state, 2_000)).toEqual([]);
    observe(plan, state, { pingTimedOut: true }, 2_500);
    const [rule] = evaluate(plan, state, {}, 2_500);
    expect(rule?.then).toEqual({
      action: 'migrateSessions',
      markNode: 'unhealthy',
      reason: '3 consecutive ping timeouts',
    });
  });

  it('CPU > 95 % for 30 s → isolate, not a moment sooner', () => {
    const state = createRuleState(plan);
    for (let t = 0; t < 30_000; t += 5_000) {
      observe(plan, state, { cpuUtilisation: 0.97 }, t);
      expect(actions(state, t)).toEqual([]);
    }
    observe(plan, state, { cpuUtilisation: 0.97 }, 30_000);
    expect(actions(state, 30_000)).toEqual(['isolate']);
    expect(evaluate(plan, state, {}, 30_000)[0]?.then.reason).toBe('CPU > 95% for 30s');
  });
});
