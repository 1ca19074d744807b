import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  DECISION_TICK_MS,
  DECISION_TREE_RULES,
  FAST_PATH_ACTIONS,
  InvalidDecisionTreeError,
  compileDecisionTree,
  decideFastPath,
  type ConnectionSignals,
  type FastPathActionName,
} from '../../../shared/health/decisionTree.js';
import {
  RuleValidationError,
  compileRules,
  evaluate,
  createRuleState,
} from '../../../shared/rules/index.js';

/** The seed's table written out by hand, independently of the rule data. */
function seedTable({
  heartbeatLost: hb,
  writeBlocked: wb,
  retryPending: retry,
}: ConnectionSignals): FastPathActionName {
  if (hb && wb) return 'break';
  if (hb || (wb && !retry)) return 'queue';
  if (!hb && wb && retry) return 'retry';
  return 'none';
}

const signals = fc.record({
  heartbeatLost: fc.boolean(),
  writeBlocked: fc.boolean(),
  retryPending: fc.boolean(),
});

describe('joint decision tree (seed 3.3)', () => {
  it('maps all eight combinations as the seed’s table does', () => {
    const rows: [boolean, boolean, boolean, FastPathActionName][] = [
      // heartbeatLost, writeBlocked, retryPending → action
      [true, true, true, 'break'],
      [true, true, false, 'break'],
      [true, false, true, 'queue'],
      [true, false, false, 'queue'],
      [false, true, false, 'queue'],
      [false, true, true, 'retry'],
      [false, false, true, 'none'],
      [false, false, false, 'none'],
    ];
    for (const [heartbeatLost, writeBlocked, retryPending, expected] of rows) {
      expect(decideFastPath({ heartbeatLost, writeBlocked, retryPending }).action).toBe(expected);
    }
  });

  it('gives every action the seed’s timing', () => {
    expect(DECISION_TICK_MS).toBe(300);
    expect(
      decideFastPath({ heartbeatLost: true, writeBlocked: true, retryPending: false }),
    ).toEqual({ action: 'break', timeoutMs: 200 });
    expect(
      decideFastPath({ heartbeatLost: true, writeBlocked: false, retryPending: false }),
    ).toEqual({ action: 'queue', timeoutMs: 500 });
    expect(
      decideFastPath({ heartbeatLost: false, writeBlocked: true, retryPending: true }),
    ).toEqual({ action: 'retry', timeoutMs: 1_000 });
    expect(decideFastPath({ heartbeatLost: false, writeBlocked: false, retryPending: false })).toBe(
      FAST_PATH_ACTIONS.none,
    );
  });

  it('yields exactly one action for every combination, the one of the first matching row', () => {
    const plan = compileRules({ ...DECISION_TREE_RULES, match: 'all' });
    const state = createRuleState(plan);
    fc.assert(
      fc.property(signals, (s) => {
        const decided = decideFastPath(s);
        const matching = evaluate(plan, state, s, 0).map((rule) => rule.then.action);
        const expected = seedTable(s);
        return (
          decided.action === expected &&
          (expected === 'none' ? matching.length === 0 : matching[0] === expected) &&
          Object.values(FAST_PATH_ACTIONS).filter((a) => a.action === decided.action).length === 1
        );
      }),
      { numRuns: 200 },
    );
  });

  it('is plain data that survives JSON, and a policy may replace it', () => {
    const fromFile = compileDecisionTree(JSON.parse(JSON.stringify(DECISION_TREE_RULES)));
    fc.assert(fc.property(signals, (s) => fromFile.decide(s).action === seedTable(s)));
    const cautious = compileDecisionTree({
      match: 'first',
      rules: [
        {
          name: 'any-trouble',
          when: {
            type: 'any',
            of: [
              { type: 'fact', fact: 'heartbeatLost' },
              { type: 'fact', fact: 'writeBlocked' },
            ],
          },
          then: { action: 'break', timeoutMs: 100 },
        },
      ],
    });
    expect(
      cautious.decide({ heartbeatLost: false, writeBlocked: true, retryPending: true }),
    ).toEqual({ action: 'break', timeoutMs: 100 });
    expect(
      cautious.decide({ heartbeatLost: false, writeBlocked: false, retryPending: true }).action,
    ).toBe('none');
  });

  it('refuses trees the fast path cannot run', () => {
    const rule = { name: 'r', when: { type: 'fact', fact: 'heartbeatLost' } } as const;
    expect(() =>
      compileDecisionTree({
        match: 'all',
        rules: [{ ...rule, then: { action: 'break', timeoutMs: 1 } }],
      }),
    ).toThrow(InvalidDecisionTreeError);
    expect(() =>
      compileDecisionTree({
        match: 'first',
        rules: [{ ...rule, then: { action: 'explode', timeoutMs: 1 } }],
      }),
    ).toThrow(/rules\[0\]\.then\.action/);
    expect(() =>
      compileDecisionTree({ match: 'first', rules: [{ ...rule, then: { action: 'queue' } }] }),
    ).toThrow(/rules\[0\]\.then\.timeoutMs/);
    expect(() =>
      compileDecisionTree({
        match: 'first',
        rules: [
          {
            name: 'r',
            when: { type: 'consecutive', count: 2, of: { type: 'fact', fact: 'heartbeatLost' } },
            then: { action: 'break', timeoutMs: 1 },
          },
        ],
      }),
    ).toThrow(/stateless/);
    expect(() =>
      compileDecisionTree({
        match: 'first',
        rules: [{ name: '', when: rule.when, then: { action: 'break', timeoutMs: 1 } }],
      }),
    ).toThrow(RuleValidationError);
  });
});
