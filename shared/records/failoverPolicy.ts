/**
 * FailoverPolicy (seed 4.1): how the control plane and the gateways judge and heal, as one
 * validated, versioned record. It carries the rules as data (the rule engine's schema): the
 * per-node rules the decision function evaluates and the gateway's fast-path decision tree.
 *
 *   apiVersion: streamheal.io/v2
 *   kind: FailoverPolicy
 *   metadata: { name: default }
 *   spec:
 *     autoRejoin: true              an isolated node goes back into rotation once healthy
 *     maxFailoverAttempts: 3        v2 only; v1 records read as 3 (seed table)
 *     timeoutSeconds: 300           30–3600: idle timeout of the sessions it governs
 *     replicationLagThresholdMs: 500  ≥ 0; 0 disables lag detection
 *     guards: { maxIsolatedShare: 0.1, panicThreshold: 0.5 }
 *     nodeRules: { match: all, rules: [...] }       default: SEED_NODE_RULES
 *     decisionTree: { match: first, rules: [...] }  default: the seed's joint decision tree
 */
import { z } from 'zod';
import { compileDecisionTree, DECISION_TREE_RULES } from '../health/decisionTree.js';
import { RuleSetSchema, SEED_NODE_RULES, type Condition, type RuleSet } from '../rules/index.js';
import {
  API_V1,
  API_V2,
  MetadataSchema,
  MetadataV2Schema,
  ReplicationLagThresholdMsSchema,
  TimeoutSecondsSchema,
  changedMetadataIds,
  convertVersion,
  safeParseVersioned,
  stashConversionData,
  takeConversionData,
  type SchemaVersion,
  type VersionConversions,
} from './meta.js';
import {
  ImmutableFieldError,
  valueOrThrow,
  type IssuePath,
  type RecordIssue,
  type Validated,
} from './validation.js';

export const FAILOVER_POLICY_KIND = 'FailoverPolicy';
/** The policy every session falls under unless it names another. */
export const DEFAULT_POLICY_NAME = 'default';
/** What a v1 record (which has no such field) means: seed 4.1, "v1 默认为 3". */
export const DEFAULT_MAX_FAILOVER_ATTEMPTS = 3;

/**
 * Cascade guards (Envoy's): never isolate more than `maxIsolatedShare` of the nodes (at least
 * one), and stop isolating once the healthy share falls below `panicThreshold`, since by then
 * the fault is more likely in the judge than in the nodes.
 */
const GuardsSchema = z
  .strictObject({
    maxIsolatedShare: z.number().gt(0).max(1).default(0.1),
    panicThreshold: z.number().min(0).max(1).default(0.5),
  })
  .default(() => ({ maxIsolatedShare: 0.1, panicThreshold: 0.5 }));

const DECISION_TREE_ACTIONS = ['break', 'queue', 'retry'];

/**
 * A decision tree beyond rule validation: what `compileDecisionTree` requires, reported with
 * paths (relative to the tree) instead of one message.
 */
export function decisionTreeIssues(tree: RuleSet): RecordIssue[] {
  const issues: RecordIssue[] = [];
  if (tree.match !== 'first') {
    issues.push({ path: ['match'], message: 'must be "first": a decision tree takes one row' });
  }
  tree.rules.forEach((rule, i) => {
    const stateful = statefulPath(rule.when, ['rules', i, 'when']);
    if (stateful) {
      issues.push({
        path: stateful,
        message:
          'must be stateless (fact, compare, all, any, not): the gateway evaluates it for every connection every tick',
      });
    }
    if (!DECISION_TREE_ACTIONS.includes(rule.then.action)) {
      issues.push({
        path: ['rules', i, 'then', 'action'],
        message: `must be one of ${DECISION_TREE_ACTIONS.map((a) => `"${a}"`).join(', ')}, got ${JSON.stringify(rule.then.action)}`,
      });
    }
    const timeoutMs = rule.then.timeoutMs;
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      issues.push({ path: ['rules', i, 'then', 'timeoutMs'], message: 'must be a number > 0' });
    }
  });
  if (issues.length === 0) {
    // The gateway's own check has the last word, should it ever require more than the above.
    try {
      compileDecisionTree(tree);
    } catch (error) {
      issues.push({ path: [], message: (error as Error).message });
    }
  }
  return issues;
}

/** Path of the first stateful condition (consecutive, thresholdFor, rateOver) in `condition`. */
function statefulPath(condition: Condition, at: IssuePath): IssuePath | undefined {
  switch (condition.type) {
    case 'consecutive':
    case 'thresholdFor':
    case 'rateOver':
      return at;
    case 'not':
      return statefulPath(condition.of, [...at, 'of']);
    case 'all':
    case 'any':
      for (let j = 0; j < condition.of.length; j++) {
        const found = statefulPath(condition.of[j]!, [...at, 'of', j]);
        if (found) return found;
      }
      return undefined;
    default:
      return undefined;
  }
}

const DecisionTreeSchema = RuleSetSchema.superRefine((tree, ctx) => {
  for (const issue of decisionTreeIssues(tree)) {
    ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
  }
});

const specFields = {
  autoRejoin: z.boolean().default(true),
  timeoutSeconds: TimeoutSecondsSchema,
  replicationLagThresholdMs: ReplicationLagThresholdMsSchema,
  guards: GuardsSchema,
  nodeRules: RuleSetSchema.default(() => structuredClone(SEED_NODE_RULES)),
  decisionTree: DecisionTreeSchema.default(() => structuredClone(DECISION_TREE_RULES)),
};

export const FailoverPolicySpecV1Schema = z.strictObject(specFields);
export const FailoverPolicySpecV2Schema = z.strictObject({
  ...specFields,
  /** How many times one session may fail over (Failed → Active) before it is given up; 0: never. */
  maxFailoverAttempts: z.number().int().min(0).max(100).default(DEFAULT_MAX_FAILOVER_ATTEMPTS),
});

export const FailoverPolicyV1Schema = z.strictObject({
  apiVersion: z.literal(API_V1),
  kind: z.literal(FAILOVER_POLICY_KIND),
  metadata: MetadataSchema,
  spec: FailoverPolicySpecV1Schema.default(() => FailoverPolicySpecV1Schema.parse({})),
});

export const FailoverPolicyV2Schema = z.strictObject({
  apiVersion: z.literal(API_V2),
  kind: z.literal(FAILOVER_POLICY_KIND),
  metadata: MetadataV2Schema,
  spec: FailoverPolicySpecV2Schema.default(() => FailoverPolicySpecV2Schema.parse({})),
});

/** Either version, told apart by `apiVersion`. */
export const FailoverPolicyAnySchema = z.discriminatedUnion('apiVersion', [
  FailoverPolicyV1Schema,
  FailoverPolicyV2Schema,
]);

export type FailoverPolicyV1 = z.output<typeof FailoverPolicyV1Schema>;
export type FailoverPolicyV2 = z.output<typeof FailoverPolicyV2Schema>;
/** The current version: what the repository stores and returns. */
export type FailoverPolicy = FailoverPolicyV2;
export type FailoverPolicyAny = FailoverPolicyV1 | FailoverPolicyV2;

/** What v2 → v1 keeps in the conversion annotation. */
const ConversionDataSchema = z.strictObject({
  spec: z
    .strictObject({ maxFailoverAttempts: FailoverPolicySpecV2Schema.shape.maxFailoverAttempts })
    .optional(),
});

/** v1 → v2: `maxFailoverAttempts` from the conversion annotation, else 3. */
export function failoverPolicyV1ToV2(v1: FailoverPolicyV1): FailoverPolicyV2 {
  const { metadata, spec } = structuredClone(v1);
  const data = takeConversionData(metadata, ConversionDataSchema);
  const maxFailoverAttempts = data.spec?.maxFailoverAttempts ?? DEFAULT_MAX_FAILOVER_ATTEMPTS;
  return {
    apiVersion: API_V2,
    kind: FAILOVER_POLICY_KIND,
    metadata,
    spec: { ...spec, maxFailoverAttempts },
  };
}

/** v2 → v1: `maxFailoverAttempts` moves to the conversion annotation unless it is the default 3. */
export function failoverPolicyV2ToV1(v2: FailoverPolicyV2): FailoverPolicyV1 {
  const { metadata, spec } = structuredClone(v2);
  const { maxFailoverAttempts, ...v1Spec } = spec;
  if (maxFailoverAttempts !== DEFAULT_MAX_FAILOVER_ATTEMPTS) {
    stashConversionData(metadata, { spec: { maxFailoverAttempts } });
  }
  return { apiVersion: API_V1, kind: FAILOVER_POLICY_KIND, metadata, spec: v1Spec };
}

const CONVERSIONS: VersionConversions<FailoverPolicyV1, FailoverPolicyV2> = {
  v1ToV2: failoverPolicyV1ToV2,
  v2ToV1: failoverPolicyV2ToV1,
};

export function convertFailoverPolicy(record: FailoverPolicyAny, to: 'v1'): FailoverPolicyV1;
export function convertFailoverPolicy(record: FailoverPolicyAny, to: 'v2'): FailoverPolicyV2;
export function convertFailoverPolicy(
  record: FailoverPolicyAny,
  to: SchemaVersion,
): FailoverPolicyAny;
export function convertFailoverPolicy(
  record: FailoverPolicyAny,
  to: SchemaVersion,
): FailoverPolicyAny {
  return convertVersion(record, to, CONVERSIONS);
}

/**
 * Validates a policy of either version (defaults filled in) and returns it as v2, or every
 * problem with its path.
 */
export function safeParseFailoverPolicy(data: unknown): Validated<FailoverPolicy> {
  return safeParseVersioned(FailoverPolicyAnySchema, data, CONVERSIONS);
}

/** Like `safeParseFailoverPolicy`; throws RecordValidationError ('invalid_record'). */
export function parseFailoverPolicy(data: unknown): FailoverPolicy {
  return valueOrThrow(safeParseFailoverPolicy(data));
}

/**
 * An update of `previous` to `next` may not change an id: the name (the key) and the uid once
 * assigned. Throws ImmutableFieldError naming the field.
 */
export function checkPolicyUpdate(previous: FailoverPolicy, next: FailoverPolicy): void {
  const issues = changedMetadataIds(previous.metadata, next.metadata);
  if (issues.length) throw new ImmutableFieldError(issues);
}

/**
 * The default policy (a fresh copy each call): the seed's node rules ("3 consecutive ping
 * timeouts → node unhealthy → migrate its sessions", "CPU > 95 % for 30 s → isolate"), its
 * joint decision tree, and the seed's defaults for every field.
 */
export function defaultPolicy(): FailoverPolicy {
  return parseFailoverPolicy({
    apiVersion: API_V2,
    kind: FAILOVER_POLICY_KIND,
    metadata: { name: DEFAULT_POLICY_NAME },
  });
}
