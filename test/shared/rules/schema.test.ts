import { describe, expect, it } from 'vitest';
import {
  MAX_RATE_EVENTS,
  RuleValidationError,
  SEED_NODE_RULES,
  formatPath,
  parseRuleSet,
  safeParseRuleSet,
} from '../../../shared/rules/index.js';
import { errorCode } from '../../../shared/errors.js';

function issuesOf(data: unknown): { path: string; message: string }[] {
  const result = safeParseRuleSet(data);
  if (result.ok) throw new Error('expected a validation error');
  return result.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
}

const rule = (when: unknown, name = 'r'): unknown => ({ name, when, then: { action: 'x' } });

describe('rule validation', () => {
  it('accepts the seed rules and round-trips them through JSON', () => {
    const parsed = parseRuleSet(JSON.parse(JSON.stringify(SEED_NODE_RULES)));
    expect(parsed).toEqual(SEED_NODE_RULES);
  });

  it('names the exact path of a problem deep in a nested condition', () => {
    const data = {
      match: 'all',
      rules: [
        rule({ type: 'fact', fact: 'ok' }, 'fine'),
        rule(
          {
            type: 'all',
            of: [
              { type: 'fact', fact: 'a' },
              {
                type: 'not',
                of: { type: 'consecutive', count: 0, of: { type: 'fact', fact: 'b' } },
              },
            ],
          },
          'broken',
        ),
      ],
    };
    expect(issuesOf(data)).toEqual([
      { path: 'rules[1].when.of[1].of.count', message: expect.stringMatching(/>=\s*1/) },
    ]);
  });

  it('reports every problem, each with its own path', () => {
    const paths = issuesOf({
      match: 'sometimes',
      rules: [
        rule({ type: 'thresholdFor', fact: 'cpu', op: '>', value: 0.95, forMs: -1 }),
        rule({ type: 'rateOver', event: 'rst', atLeast: MAX_RATE_EVENTS + 1, windowMs: 0 }),
        rule({ type: 'bogus' }),
        { name: 'r4', when: { type: 'fact', fact: 'a', extra: true }, then: { action: '' } },
      ],
    }).map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'match',
        'rules[0].when.forMs',
        'rules[1].when.atLeast',
        'rules[1].when.windowMs',
        'rules[2].when.type',
        'rules[3].when',
        'rules[3].then.action',
      ]),
    );
  });

  it('refuses stateful conditions inside consecutive, which counts plain predicates', () => {
    expect(
      issuesOf({
        match: 'all',
        rules: [
          rule({
            type: 'consecutive',
            count: 2,
            of: { type: 'rateOver', event: 'e', atLeast: 1, windowMs: 10 },
          }),
        ],
      }).map((i) => i.path),
    ).toEqual(['rules[0].when.of.type']);
  });

  it('refuses duplicate rule names at the duplicate', () => {
    const f = { type: 'fact', fact: 'a' };
    expect(issuesOf({ match: 'all', rules: [rule(f, 'a'), rule(f, 'b'), rule(f, 'a')] })).toEqual([
      { path: 'rules[2].name', message: 'duplicate rule name "a"' },
    ]);
  });

  it('keeps JSON parameters of an action and refuses values JSON cannot carry', () => {
    const then = { action: 'move', count: 3, targets: ['g2', 'g3'], opts: { paced: true } };
    expect(
      parseRuleSet({
        match: 'all',
        rules: [{ name: 'r', when: { type: 'fact', fact: 'a' }, then }],
      }),
    ).toEqual({ match: 'all', rules: [{ name: 'r', when: { type: 'fact', fact: 'a' }, then }] });
    expect(
      issuesOf({
        match: 'all',
        rules: [
          { name: 'r', when: { type: 'fact', fact: 'a' }, then: { action: 'x', f: () => 1 } },
        ],
      }).map((i) => i.path),
    ).toEqual(['rules[0].then.f']);
  });

  it('throws a RuleValidationError with a stable code and readable message', () => {
    let caught: unknown;
    try {
      parseRuleSet({
        match: 'all',
        rules: [rule({ type: 'compare', fact: 'x', op: '=>', value: 1 })],
      });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(RuleValidationError);
    expect(errorCode(caught)).toBe('invalid_rules');
    expect((caught as Error).message).toContain('rules[0].when.op');
    expect(formatPath([])).toBe('$');
  });
});
