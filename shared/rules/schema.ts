import { z } from 'zod';
import { StreamhealError } from '../errors.js';
import type { Condition, Predicate, Rule, RuleAction, RuleSet } from './types.js';

/**
 * Validation for rule data. Policies embed these schemas, so a problem deep in a rule is
 * reported with its full path (`rules[2].when.of[1].count`). Bounds keep per-instance state
 * small: `rateOver` remembers `atLeast` timestamps, so it is capped.
 */

/** Largest `rateOver.atLeast`: each instance keeps that many timestamps. */
export const MAX_RATE_EVENTS = 1000;

const factName = z.string().min(1).max(200);
const finite = z.number().finite();
const durationMs = z.number().finite().nonnegative();

const factCondition = z.strictObject({ type: z.literal('fact'), fact: factName });
const compareCondition = z.strictObject({
  type: z.literal('compare'),
  fact: factName,
  op: z.enum(['>', '>=', '<', '<=', '==', '!=']),
  value: finite,
});

export const PredicateSchema: z.ZodType<Predicate> = z.discriminatedUnion('type', [
  factCondition,
  compareCondition,
  z.strictObject({
    type: z.literal('all'),
    get of() {
      return z.array(PredicateSchema).min(1);
    },
  }),
  z.strictObject({
    type: z.literal('any'),
    get of() {
      return z.array(PredicateSchema).min(1);
    },
  }),
  z.strictObject({
    type: z.literal('not'),
    get of() {
      return PredicateSchema;
    },
  }),
]);

export const ConditionSchema: z.ZodType<Condition> = z.discriminatedUnion('type', [
  factCondition,
  compareCondition,
  z.strictObject({
    type: z.literal('consecutive'),
    count: z.number().int().min(1).max(1_000_000),
    of: PredicateSchema,
  }),
  z.strictObject({
    type: z.literal('thresholdFor'),
    fact: factName,
    op: z.enum(['>', '>=', '<', '<=']),
    value: finite,
    forMs: durationMs,
  }),
  z.strictObject({
    type: z.literal('rateOver'),
    event: factName,
    atLeast: z.number().int().min(1).max(MAX_RATE_EVENTS),
    windowMs: durationMs.positive(),
  }),
  z.strictObject({
    type: z.literal('all'),
    get of() {
      return z.array(ConditionSchema).min(1);
    },
  }),
  z.strictObject({
    type: z.literal('any'),
    get of() {
      return z.array(ConditionSchema).min(1);
    },
  }),
  z.strictObject({
    type: z.literal('not'),
    get of() {
      return ConditionSchema;
    },
  }),
]);

export const RuleActionSchema: z.ZodType<RuleAction> = z
  .object({ action: z.string().min(1) })
  .catchall(z.json()) as z.ZodType<RuleAction>;

export const RuleSchema: z.ZodType<Rule> = z.strictObject({
  name: z.string().min(1).max(200),
  description: z.string().optional(),
  when: ConditionSchema,
  then: RuleActionSchema,
});

export const RuleSetSchema: z.ZodType<RuleSet> = z
  .strictObject({
    match: z.enum(['first', 'all']),
    rules: z.array(RuleSchema),
  })
  .superRefine((set, ctx) => {
    const seen = new Set<string>();
    set.rules.forEach((rule, index) => {
      if (seen.has(rule.name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['rules', index, 'name'],
          message: `duplicate rule name "${rule.name}"`,
        });
      }
      seen.add(rule.name);
    });
  });

export interface RuleIssue {
  /** Where the problem is, from the root of the data given (e.g. ['rules', 0, 'when', 'count']). */
  path: (string | number)[];
  message: string;
}

/** Rule data that does not validate. `issues` lists every problem with its path. */
export class RuleValidationError extends StreamhealError {
  readonly issues: RuleIssue[];
  constructor(issues: RuleIssue[]) {
    super(
      'invalid_rules',
      `invalid rules: ${issues.map((i) => `${formatPath(i.path)}: ${i.message}`).join('; ')}`,
    );
    this.issues = issues;
  }
}

/** `['rules', 0, 'when', 'of', 1]` → `rules[0].when.of[1]`; the root is `$`. */
export function formatPath(path: readonly (string | number)[]): string {
  if (path.length === 0) return '$';
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`))
    .join('');
}

export type RuleSetParseResult =
  { ok: true; ruleSet: RuleSet } | { ok: false; error: RuleValidationError };

export function safeParseRuleSet(data: unknown): RuleSetParseResult {
  const result = RuleSetSchema.safeParse(data);
  if (result.success) return { ok: true, ruleSet: result.data };
  const issues = result.error.issues.map((issue) => ({
    path: issue.path.map((part) => (typeof part === 'symbol' ? String(part) : part)),
    message: issue.message,
  }));
  return { ok: false, error: new RuleValidationError(issues) };
}

/** Validates rule data (from a file, the store, an API) and returns it typed, or throws. */
export function parseRuleSet(data: unknown): RuleSet {
  const result = safeParseRuleSet(data);
  if (!result.ok) throw result.error;
  return result.ruleSet;
}
