import { StreamhealError } from '../errors.js';
import {
  compileRules,
  createRuleState,
  firstMatch,
  type RulePlan,
  type RuleSet,
} from '../rules/index.js';

/**
 * The seed's joint decision tree (section 3.3): what the gateway's fast path does with one
 * connection, from its heartbeat and write-path signals. It is rule data run by the same
 * engine as the control plane's rules, so a policy can carry (and change) it.
 *
 * Rows, first match wins, in this order:
 *   heartbeat lost AND write blocked                      → break  (200 ms)
 *   heartbeat lost OR (write blocked AND NOT retry pending) → queue (500 ms)
 *   heartbeat fine AND write blocked AND retry pending    → retry  (1 s)
 *   otherwise                                             → none
 */

/** The gateway evaluates every connection's tree this often (the seed's 300 ms select). */
export const DECISION_TICK_MS = 300;

/** The signals the tree reads, one set per connection per tick. */
export type ConnectionSignals = {
  /** No heartbeat answer within its tier's timeout. */
  heartbeatLost: boolean;
  /** Writes are backing up (buffered or kernel not-sent bytes over the high-water mark). */
  writeBlocked: boolean;
  /** A retry of the blocked write is already scheduled. */
  retryPending: boolean;
};

export type FastPathActionName = 'break' | 'queue' | 'retry' | 'none';

/**
 * An action with the seed's timeout threshold for it (the table's 超时阈值 column): how long
 * the action may take before the gateway gives up on it and escalates.
 *   break  open the connection's circuit and flush what can still be written, within 200 ms
 *   queue  hold its messages in the local queue, rate limited, for up to 500 ms
 *   retry  retry the blocked write with backoff, for up to 1 s
 *   none   nothing to do; `timeoutMs` is 0
 */
export interface FastPathAction {
  readonly action: FastPathActionName;
  readonly timeoutMs: number;
}

export const FAST_PATH_ACTIONS: Readonly<Record<FastPathActionName, FastPathAction>> = {
  break: { action: 'break', timeoutMs: 200 },
  queue: { action: 'queue', timeoutMs: 500 },
  retry: { action: 'retry', timeoutMs: 1_000 },
  none: { action: 'none', timeoutMs: 0 },
};

const heartbeatLost = { type: 'fact', fact: 'heartbeatLost' } as const;
const writeBlocked = { type: 'fact', fact: 'writeBlocked' } as const;
const retryPending = { type: 'fact', fact: 'retryPending' } as const;

/** The seed's tree as rule data; rows without a match fall through to `none`. */
export const DECISION_TREE_RULES: RuleSet = {
  match: 'first',
  rules: [
    {
      name: 'break',
      description: 'heartbeat lost AND write blocked',
      when: { type: 'all', of: [heartbeatLost, writeBlocked] },
      then: { ...FAST_PATH_ACTIONS.break },
    },
    {
      name: 'queue',
      description: 'heartbeat lost OR (write blocked AND NOT retry pending)',
      when: {
        type: 'any',
        of: [heartbeatLost, { type: 'all', of: [writeBlocked, { type: 'not', of: retryPending }] }],
      },
      then: { ...FAST_PATH_ACTIONS.queue },
    },
    {
      name: 'retry',
      description: 'heartbeat fine AND write blocked AND retry pending',
      when: { type: 'all', of: [{ type: 'not', of: heartbeatLost }, writeBlocked, retryPending] },
      then: { ...FAST_PATH_ACTIONS.retry },
    },
  ],
};

/** A tree in rule data that cannot serve as the fast path's tree. */
export class InvalidDecisionTreeError extends StreamhealError {
  constructor(message: string) {
    super('invalid_decision_tree', message);
  }
}

export interface DecisionTree {
  readonly plan: RulePlan;
  /** The action for one connection now. Allocates nothing; safe to call for every connection. */
  decide(signals: ConnectionSignals): FastPathAction;
}

/**
 * Compiles a decision tree (the seed's by default, or one from a policy). Besides rule
 * validation it requires first-match order, known actions with a positive `timeoutMs`, and
 * no stateful conditions: the gateway evaluates it for 10,000+ connections every tick, so
 * any history belongs in the probes that produce the signals, not in per-connection rule state.
 */
export function compileDecisionTree(ruleSet: RuleSet = DECISION_TREE_RULES): DecisionTree {
  const plan = compileRules(ruleSet);
  if (plan.ruleSet.match !== 'first') {
    throw new InvalidDecisionTreeError("a decision tree needs match: 'first'");
  }
  if (plan.stateSize !== 0) {
    throw new InvalidDecisionTreeError(
      'a decision tree must be stateless (fact, compare, all, any, not)',
    );
  }
  const actions = new Map(
    plan.ruleSet.rules.map((rule, index) => [rule, toAction(rule.then, index)] as const),
  );
  const state = createRuleState(plan);
  return {
    plan,
    decide(signals) {
      const rule = firstMatch(plan, state, signals, 0);
      return rule === undefined
        ? FAST_PATH_ACTIONS.none
        : (actions.get(rule) ?? FAST_PATH_ACTIONS.none);
    },
  };
}

function toAction(then: { action: string; [key: string]: unknown }, index: number): FastPathAction {
  const where = `rules[${index}].then`;
  if (then.action !== 'break' && then.action !== 'queue' && then.action !== 'retry') {
    throw new InvalidDecisionTreeError(
      `${where}.action: expected 'break', 'queue' or 'retry', got ${JSON.stringify(then.action)}`,
    );
  }
  const timeoutMs = then.timeoutMs;
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
    throw new InvalidDecisionTreeError(`${where}.timeoutMs: expected a number > 0`);
  }
  return Object.freeze({ action: then.action, timeoutMs });
}

let seedTree: DecisionTree | undefined;

/** The seed's tree, compiled on first use. */
export function decideFastPath(signals: ConnectionSignals): FastPathAction {
  seedTree ??= compileDecisionTree();
  return seedTree.decide(signals);
}
