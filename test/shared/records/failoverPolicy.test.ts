import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DECISION_TREE_RULES, compileDecisionTree } from '../../../shared/health/decisionTree.js';
import {
  API_V1,
  API_V2,
  CONVERSION_ANNOTATION,
  DEFAULT_MAX_FAILOVER_ATTEMPTS,
  RecordValidationError,
  checkPolicyUpdate,
  convertFailoverPolicy,
  defaultPolicy,
  failoverPolicyV1ToV2,
  failoverPolicyV2ToV1,
  formatIssue,
  parseFailoverPolicy,
  safeParseFailoverPolicy,
  type FailoverPolicyV1,
  type FailoverPolicyV2,
} from '../../../shared/records/index.js';
import {
  SEED_NODE_RULES,
  compileRules,
  createRuleState,
  evaluate,
  observe,
  type Condition,
  type Rule,
  type RuleSet,
} from '../../../shared/rules/index.js';

const policy = (spec: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  apiVersion: API_V2,
  kind: 'FailoverPolicy',
  metadata: { name: 'p' },
  spec,
  ...extra,
});

/** Every problem as `path: message`, in order. */
function problems(data: unknown): string[] {
  const result = safeParseFailoverPolicy(data);
  if (result.ok) throw new Error('expected validation to fail');
  return result.issues.map(formatIssue);
}

describe('FailoverPolicy schema', () => {
  it('fills in the seed defaults, the seed node rules and the joint decision tree', () => {
    // Act
    const parsed = parseFailoverPolicy(policy());

    // Assess
    expect(parsed.spec).toEqual({
      autoRejoin: true,
      timeoutSeconds: 300,
      replicationLagThresholdMs: 500,
      maxFailoverAttempts: 3,
      guards: { maxIsolatedShare: 0.1, panicThreshold: 0.5 },
      nodeRules: SEED_NODE_RULES,
      decisionTree: DECISION_TREE_RULES,
    });
    expect(parseFailoverPolicy({ ...policy(), spec: undefined }).spec).toEqual(parsed.spec);
    expect(defaultPolicy()).toEqual({ ...parsed, metadata: { name: 'default' } });
    // Defaults are copies: changing one parsed policy does not change the next.
    parsed.spec.nodeRules.rules.pop();
    expect(parseFailoverPolicy(policy()).spec.nodeRules).toEqual(SEED_NODE_RULES);
  });

  it('ships rules that behave as the seed says', () => {
    const spec = defaultPolicy().spec;
    const plan = compileRules(spec.nodeRules);
    const state = createRuleState(plan);
    const actions = (now: number) => evaluate(plan, state, {}, now).map((r) => r.then.action);
    // 3 consecutive ping timeouts → migrate the node's sessions.
    observe(plan, state, { pingTimedOut: true }, 0);
    observe(plan, state, { pingTimedOut: true }, 1_000);
    expect(actions(1_000)).toEqual([]);
    observe(plan, state, { pingTimedOut: true }, 2_000);
    expect(actions(2_000)).toEqual(['migrateSessions']);
    observe(plan, state, { pingTimedOut: false }, 3_000);
    // CPU > 95 % for 30 s → isolate.
    observe(plan, state, { cpuUtilisation: 0.97 }, 10_000);
    expect(actions(39_999)).toEqual([]);
    expect(actions(40_000)).toEqual(['isolate']);
    expect(evaluate(plan, state, {}, 40_000)[0]?.then.reason).toBe('CPU > 95% for 30s');
    // The decision tree is the gateway's: every row as in shared/health/decisionTree.ts.
    const tree = compileDecisionTree(spec.decisionTree);
    const seed = compileDecisionTree();
    for (const heartbeatLost of [false, true])
      for (const writeBlocked of [false, true])
        for (const retryPending of [false, true]) {
          const signals = { heartbeatLost, writeBlocked, retryPending };
          expect(tree.decide(signals)).toEqual(seed.decide(signals));
        }
  });

  it('bounds timeoutSeconds to 30–3600 and names the path', () => {
    expect(problems(policy({ timeoutSeconds: 3601 }))).toEqual([
      'spec.timeoutSeconds: must be ≤ 3600',
    ]);
    expect(problems(policy({ timeoutSeconds: 29 }))).toEqual(['spec.timeoutSeconds: must be ≥ 30']);
    expect(problems(policy({ timeoutSeconds: 30.5 }))).toEqual([
      'spec.timeoutSeconds: must be an integer, got 30.5',
    ]);
    expect(problems(policy({ timeoutSeconds: '300' }))).toEqual([
      'spec.timeoutSeconds: must be a number, got "300"',
    ]);
    fc.assert(
      fc.property(fc.integer({ min: -10_000, max: 10_000 }), (t) => {
        const result = safeParseFailoverPolicy(policy({ timeoutSeconds: t }));
        expect(result.ok).toBe(t >= 30 && t <= 3600);
        if (result.ok) expect(result.value.spec.timeoutSeconds).toBe(t);
        else expect(result.issues[0]!.path).toEqual(['spec', 'timeoutSeconds']);
      }),
    );
  });

  it('bounds replicationLagThresholdMs (≥ 0, 0 disables), maxFailoverAttempts and the guards', () => {
    expect(parseFailoverPolicy(policy({ replicationLagThresholdMs: 0 })).spec).toMatchObject({
      replicationLagThresholdMs: 0,
    });
    expect(
      problems(
        policy({
          replicationLagThresholdMs: -1,
          maxFailoverAttempts: 101,
          autoRejoin: 'yes',
          guards: { maxIsolatedShare: 0, panicThreshold: 1.5 },
        }),
      ),
    ).toEqual([
      'spec.autoRejoin: must be a boolean, got "yes"',
      'spec.replicationLagThresholdMs: must be ≥ 0',
      'spec.guards.maxIsolatedShare: must be > 0',
      'spec.guards.panicThreshold: must be ≤ 1',
      'spec.maxFailoverAttempts: must be ≤ 100',
    ]);
  });

  it('names unknown fields, wrong kinds and versions, and bad names exactly', () => {
    expect(problems(policy({ colour: 'red', timeoutSecond: 30 }))).toEqual([
      'spec.colour: unknown field',
      'spec.timeoutSecond: unknown field',
    ]);
    expect(problems({ ...policy(), apiVersion: 'streamheal.io/v3' })).toEqual([
      'apiVersion: must be one of "streamheal.io/v1", "streamheal.io/v2", got "streamheal.io/v3"',
    ]);
    expect(problems({ ...policy(), apiVersion: undefined })).toEqual([
      'apiVersion: required: one of "streamheal.io/v1", "streamheal.io/v2"',
    ]);
    expect(problems({ ...policy(), kind: 'StreamSession' })).toEqual([
      'kind: must be "FailoverPolicy", got "StreamSession"',
    ]);
    expect(problems({ ...policy(), metadata: { name: 'a/b' } })).toEqual([
      'metadata.name: must match /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/, got "a/b"',
    ]);
    expect(problems({ ...policy(), metadata: {} })).toEqual(['metadata.name: required']);
    expect(problems('not a policy')).toEqual(['$: must be an object, got "not a policy"']);
  });

  it('reports problems deep inside the rules with their full path', () => {
    const nodeRules = {
      match: 'all',
      rules: [
        { name: 'a', when: { type: 'fact', fact: 'x' }, then: { action: 'isolate' } },
        {
          name: 'b',
          when: {
            type: 'any',
            of: [
              { type: 'fact', fact: 'y' },
              { type: 'consecutive', count: 0, of: { type: 'fact', fact: 'z' } },
            ],
          },
          then: { action: 'isolate' },
        },
        { name: 'a', when: { type: 'rateOver', event: 'e' }, then: { action: 'x' } },
      ],
    };
    expect(problems(policy({ nodeRules }))).toEqual([
      'spec.nodeRules.rules[1].when.of[1].count: must be ≥ 1',
      'spec.nodeRules.rules[2].when.atLeast: required',
      'spec.nodeRules.rules[2].when.windowMs: required',
    ]);
    expect(
      problems(
        policy({
          nodeRules: {
            match: 'all',
            rules: [{ name: 'x', when: { type: 'often' }, then: { action: 'y' } }],
          },
        }),
      ),
    ).toEqual([
      'spec.nodeRules.rules[0].when.type: must be one of "fact", "compare", "consecutive", "thresholdFor", "rateOver", "all", "any", "not", got "often"',
    ]);
  });

  it('holds the decision tree to what the gateway can run', () => {
    const tree = structuredClone(DECISION_TREE_RULES) as RuleSet;
    tree.match = 'all';
    (tree.rules[1]!.when as { of: Condition[] }).of[0] = {
      type: 'consecutive',
      count: 2,
      of: { type: 'fact', fact: 'heartbeatLost' },
    };
    tree.rules[2]!.then = { action: 'explode', timeoutMs: 0 };
    expect(problems(policy({ decisionTree: tree }))).toEqual([
      'spec.decisionTree.match: must be "first": a decision tree takes one row',
      'spec.decisionTree.rules[1].when.of[0]: must be stateless (fact, compare, all, any, not): the gateway evaluates it for every connection every tick',
      'spec.decisionTree.rules[2].then.action: must be one of "break", "queue", "retry", got "explode"',
      'spec.decisionTree.rules[2].then.timeoutMs: must be a number > 0',
    ]);
  });

  it('refuses an update that changes the uid', () => {
    const a = { ...defaultPolicy(), metadata: { name: 'default', uid: 'u-1' } };
    const b = { ...a, metadata: { name: 'default', uid: 'u-2' } };
    expect(() => checkPolicyUpdate(a, b)).toThrow(
      'metadata.uid: is immutable (was "u-1", the update has "u-2")',
    );
    expect(() => checkPolicyUpdate(a, { ...a, metadata: { name: 'other' } })).toThrow(
      /metadata\.name: is immutable/,
    );
    // No uid in the update: it keeps the stored one.
    expect(() => checkPolicyUpdate(a, { ...a, metadata: { name: 'default' } })).not.toThrow();
    try {
      checkPolicyUpdate(a, b);
    } catch (error) {
      expect(error).toBeInstanceOf(RecordValidationError);
      expect((error as RecordValidationError).code).toBe('immutable_field');
    }
  });
});

describe('FailoverPolicy versions', () => {
  it('reads a v1 record (no maxFailoverAttempts) as v2 with the seed default 3', () => {
    const v1 = { ...policy({ autoRejoin: false }), apiVersion: API_V1 };
    const parsed = parseFailoverPolicy(v1);
    expect(parsed.apiVersion).toBe(API_V2);
    expect(parsed.spec.maxFailoverAttempts).toBe(DEFAULT_MAX_FAILOVER_ATTEMPTS);
    expect(parsed.spec.autoRejoin).toBe(false);
    expect(problems({ ...policy({ maxFailoverAttempts: 5 }), apiVersion: API_V1 })).toEqual([
      'spec.maxFailoverAttempts: unknown field',
    ]);
  });

  it('keeps v2-only values through v1 in the conversion annotation, only when not the default', () => {
    const v2 = parseFailoverPolicy(policy({ maxFailoverAttempts: 7 }));
    const v1 = failoverPolicyV2ToV1(v2);
    expect(v1.apiVersion).toBe(API_V1);
    expect('maxFailoverAttempts' in v1.spec).toBe(false);
    expect(v1.metadata.annotations).toEqual({
      [CONVERSION_ANNOTATION]: '{"spec":{"maxFailoverAttempts":7}}',
    });
    expect(failoverPolicyV1ToV2(v1)).toEqual(v2);
    expect(
      failoverPolicyV2ToV1(parseFailoverPolicy(policy())).metadata.annotations,
    ).toBeUndefined();
  });

  it('refuses a malformed conversion annotation on v1 and any on v2, at its path', () => {
    const annotated = (apiVersion: string, value: string) => ({
      ...policy(),
      apiVersion,
      metadata: { name: 'p', annotations: { [CONVERSION_ANNOTATION]: value } },
    });
    expect(problems(annotated(API_V1, '{"spec":{"maxFailoverAttempts":-1}}'))).toEqual([
      'metadata.annotations["streamheal.io/conversion-data"]: spec.maxFailoverAttempts: must be ≥ 0',
    ]);
    expect(problems(annotated(API_V1, 'nope'))).toEqual([
      'metadata.annotations["streamheal.io/conversion-data"]: must be JSON',
    ]);
    expect(problems(annotated(API_V2, '{}'))).toEqual([
      'metadata.annotations["streamheal.io/conversion-data"]: reserved for streamheal.io/v1 records',
    ]);
  });

  it('round-trips v2 → v1 → v2 and v1 → v2 → v1 for any valid policy, through JSON', () => {
    fc.assert(
      fc.property(policyV2(), (v2) => {
        const v1 = convertFailoverPolicy(v2, 'v1');
        const back = parseFailoverPolicy(JSON.parse(JSON.stringify(v1)));
        expect(back).toEqual(v2);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(policyV2(), (source) => {
        // A v1 record as a v1 writer would make it: no conversion annotation.
        const v1 = failoverPolicyV2ToV1({
          ...source,
          spec: { ...source.spec, maxFailoverAttempts: DEFAULT_MAX_FAILOVER_ATTEMPTS },
        }) as FailoverPolicyV1;
        const v2 = parseFailoverPolicy(JSON.parse(JSON.stringify(v1)));
        expect(convertFailoverPolicy(v2, 'v1')).toEqual(v1);
      }),
      { numRuns: 300 },
    );
  });
});

/** Valid v2 policies: every field, with rules drawn from the engine's condition kinds. */
function policyV2(): fc.Arbitrary<FailoverPolicyV2> {
  const fact = fc.constantFrom('pingTimedOut', 'cpuUtilisation', 'errors', 'lagMs');
  const leaf: fc.Arbitrary<Condition> = fc.oneof(
    fact.map((f) => ({ type: 'fact' as const, fact: f })),
    fc.record({
      type: fc.constant('compare' as const),
      fact,
      op: fc.constantFrom('>', '>=', '<', '<=', '==', '!=' as const),
      // JSON (the store) has no -0.
      value: fc
        .double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 })
        .map((v) => (Object.is(v, -0) ? 0 : v)),
    }),
    fc.record({
      type: fc.constant('consecutive' as const),
      count: fc.integer({ min: 1, max: 10 }),
      of: fact.map((f) => ({ type: 'fact' as const, fact: f })),
    }),
    fc.record({
      type: fc.constant('thresholdFor' as const),
      fact,
      op: fc.constantFrom('>', '>=', '<', '<=' as const),
      value: fc.integer({ min: 0, max: 100 }),
      forMs: fc.integer({ min: 0, max: 120_000 }),
    }),
    fc.record({
      type: fc.constant('rateOver' as const),
      event: fact,
      atLeast: fc.integer({ min: 1, max: 20 }),
      windowMs: fc.integer({ min: 1, max: 60_000 }),
    }),
  );
  const condition: fc.Arbitrary<Condition> = fc.oneof(
    { weight: 3, arbitrary: leaf },
    fc.record({
      type: fc.constantFrom('all' as const, 'any' as const),
      of: fc.array(leaf, { minLength: 1, maxLength: 3 }),
    }),
    fc.record({ type: fc.constant('not' as const), of: leaf }),
  );
  const rules = fc
    .uniqueArray(
      fc.record({
        name: fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/),
        when: condition,
        then: fc.record({
          action: fc.constantFrom('isolate', 'migrateSessions', 'restore'),
          reason: fc.string({ maxLength: 30 }),
        }),
      }) as fc.Arbitrary<Rule>,
      { selector: (rule) => rule.name, maxLength: 4 },
    )
    .chain((list) =>
      fc.constantFrom('first' as const, 'all' as const).map((match) => ({ match, rules: list })),
    );
  const annotations = fc.dictionary(
    fc.stringMatching(/^[a-z][a-z./-]{0,20}$/).filter((k) => k !== CONVERSION_ANNOTATION),
    fc.string({ maxLength: 20 }),
    { maxKeys: 3 },
  );
  return fc
    .record({
      name: fc.stringMatching(/^[a-z0-9](?:[a-z0-9._-]{0,20}[a-z0-9])?$/),
      uid: fc.option(fc.uuid(), { nil: undefined }),
      annotations,
      labels: fc.dictionary(
        fc.stringMatching(/^[a-z]{1,8}$/),
        fc.stringMatching(/^[a-z0-9]{0,8}$/),
        { maxKeys: 2 },
      ),
      autoRejoin: fc.boolean(),
      timeoutSeconds: fc.integer({ min: 30, max: 3600 }),
      replicationLagThresholdMs: fc.integer({ min: 0, max: 10_000_000 }),
      maxFailoverAttempts: fc.integer({ min: 0, max: 100 }),
      maxIsolatedShare: fc.double({ min: 0.01, max: 1, noNaN: true }),
      panicThreshold: fc.double({ min: 0, max: 1, noNaN: true }),
      nodeRules: rules,
      tree: fc.boolean(),
    })
    .map((r) =>
      parseFailoverPolicy({
        apiVersion: API_V2,
        kind: 'FailoverPolicy',
        metadata: {
          name: r.name,
          ...(r.uid === undefined ? {} : { uid: r.uid }),
          annotations: r.annotations,
          labels: r.labels,
        },
        spec: {
          autoRejoin: r.autoRejoin,
          timeoutSeconds: r.timeoutSeconds,
          replicationLagThresholdMs: r.replicationLagThresholdMs,
          maxFailoverAttempts: r.maxFailoverAttempts,
          guards: { maxIsolatedShare: r.maxIsolatedShare, panicThreshold: r.panicThreshold },
          nodeRules: r.nodeRules,
          ...(r.tree
            ? {
                decisionTree: {
                  ...DECISION_TREE_RULES,
                  rules: DECISION_TREE_RULES.rules.slice(0, 2),
                },
              }
            : {}),
        },
      }),
    );
}
