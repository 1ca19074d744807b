import { parseRuleSet } from './schema.js';
import type {
  ComparisonOperator,
  Condition,
  Facts,
  Observation,
  Predicate,
  Rule,
  RuleSet,
} from './types.js';

/**
 * The rule engine. Rule data is compiled once into a plan (shared by every instance that uses
 * the same rules); each instance (a connection, a node) keeps only a `RuleState`, a
 * Float64Array holding what its stateful conditions remember:
 *   consecutive: 1 number (the run length)      thresholdFor: 1 (since when it holds)
 *   rateOver:    1 + atLeast (ring of event times)   fact/compare/all/any/not: nothing
 * The gateway's decision tree is stateless, so its 10,000+ connections share one empty state.
 *
 * Two calls, both pure apart from writing into the state they are given:
 *   observe(plan, state, observation, nowMs)  learn from something that happened
 *   evaluate(plan, state, facts, nowMs)       which rules match now
 * The gateway's fast path only evaluates (facts from its probes, every 300 ms); the control
 * plane observes each health event for a node and then evaluates that node's rules.
 */

/** What one instance remembers for a plan. Create it with `createRuleState(plan)`. */
export type RuleState = Float64Array;

type Evaluator = (state: RuleState, facts: Facts, nowMs: number) => boolean;
type Observer = (state: RuleState, observation: Observation, nowMs: number) => void;

export interface RulePlan {
  readonly ruleSet: RuleSet;
  readonly stateSize: number;
  /** @internal */ readonly evaluators: readonly Evaluator[];
  /** @internal */ readonly observers: readonly Observer[];
  /** @internal */ readonly initialState: RuleState;
}

const EMPTY_STATE: RuleState = new Float64Array(0);

/** Validates `ruleSet` (throws `RuleValidationError` with the path of each problem) and compiles it. */
export function compileRules(ruleSet: RuleSet): RulePlan {
  const valid = parseRuleSet(ruleSet);
  const compiler = new Compiler();
  const evaluators = valid.rules.map((rule) => compiler.condition(rule.when));
  const initialState = new Float64Array(compiler.initial);
  return {
    ruleSet: valid,
    stateSize: initialState.length,
    evaluators,
    observers: compiler.observers,
    initialState,
  };
}

export function createRuleState(plan: RulePlan): RuleState {
  return plan.stateSize === 0 ? EMPTY_STATE : plan.initialState.slice();
}

/** Feeds one observation, made at `nowMs`, to every stateful condition of the plan. */
export function observe(
  plan: RulePlan,
  state: RuleState,
  observation: Observation,
  nowMs: number,
): void {
  checkState(plan, state);
  for (const observer of plan.observers) observer(state, observation, nowMs);
}

/**
 * The rules that match at `nowMs`, in rule-set order; at most one when `match` is 'first'.
 * Reads the state without changing it, so it may be called as often as wanted.
 */
export function evaluate(plan: RulePlan, state: RuleState, facts: Facts, nowMs: number): Rule[] {
  checkState(plan, state);
  const matched: Rule[] = [];
  const rules = plan.ruleSet.rules;
  for (let i = 0; i < rules.length; i++) {
    if (plan.evaluators[i]!(state, facts, nowMs)) {
      matched.push(rules[i]!);
      if (plan.ruleSet.match === 'first') break;
    }
  }
  return matched;
}

/** The first rule that matches at `nowMs`, whatever the set's `match` mode. */
export function firstMatch(
  plan: RulePlan,
  state: RuleState,
  facts: Facts,
  nowMs: number,
): Rule | undefined {
  checkState(plan, state);
  // A plain loop: the gateway calls this for every connection on every tick.
  for (let i = 0; i < plan.evaluators.length; i++) {
    if (plan.evaluators[i]!(state, facts, nowMs)) return plan.ruleSet.rules[i];
  }
  return undefined;
}

function checkState(plan: RulePlan, state: RuleState): void {
  // States are laid out for one plan; after a policy change, create new ones.
  if (state.length !== plan.stateSize) {
    throw new RangeError(`rule state has ${state.length} slots, the plan needs ${plan.stateSize}`);
  }
}

function compare(a: number, op: ComparisonOperator, b: number): boolean {
  switch (op) {
    case '>':
      return a > b;
    case '>=':
      return a >= b;
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '==':
      return a === b;
    case '!=':
      return a !== b;
  }
}

/** How many events an observed value stands for: a count, or true for one. */
function eventCount(value: Observation[string]): number {
  if (value === true) return 1;
  return typeof value === 'number' && value >= 1 ? Math.floor(value) : 0;
}

/** Allocates state slots and collects observers while turning conditions into closures. */
class Compiler {
  readonly initial: number[] = [];
  readonly observers: Observer[] = [];

  private allocate(slots: number, initialValue: number): number {
    const offset = this.initial.length;
    for (let i = 0; i < slots; i++) this.initial.push(initialValue);
    return offset;
  }

  condition(condition: Condition): Evaluator {
    switch (condition.type) {
      case 'fact':
      case 'compare':
        return predicate(condition);
      case 'all': {
        return allOf(condition.of.map((c) => this.condition(c)));
      }
      case 'any': {
        return anyOf(condition.of.map((c) => this.condition(c)));
      }
      case 'not': {
        const inner = this.condition(condition.of);
        return (state, facts, now) => !inner(state, facts, now);
      }
      case 'consecutive':
        return this.consecutive(condition.count, condition.of);
      case 'thresholdFor': {
        const { fact, op, value, forMs } = condition;
        // The time since the metric has been continuously beyond the threshold; NaN: it is not.
        const since = this.allocate(1, Number.NaN);
        this.observers.push((state, observation, now) => {
          const observed = observation[fact];
          if (observed === undefined) return;
          if (typeof observed === 'number' && compare(observed, op, value)) {
            if (Number.isNaN(state[since]!)) state[since] = now;
          } else {
            state[since] = Number.NaN;
          }
        });
        return (state, _facts, now) => now - state[since]! >= forMs; // false while NaN
      }
      case 'rateOver':
        return this.rateOver(condition.event, condition.atLeast, condition.windowMs);
    }
  }

  private consecutive(count: number, of: Predicate): Evaluator {
    const test = predicate(of);
    const reads = [...factsRead(of)];
    const run = this.allocate(1, 0);
    this.observers.push((state, observation, now) => {
      // Only observations that say something about the predicate count, either way: a CPU
      // report must not break a run of ping timeouts.
      if (!reads.some((fact) => observation[fact] !== undefined)) return;
      state[run] = test(state, observation, now) ? Math.min(count, state[run]! + 1) : 0;
    });
    return (state) => state[run]! >= count;
  }

  /**
   * Remembers the times of the last `atLeast` events in a ring (slot 0 is the next write
   * position). The condition holds while the oldest of them is younger than `windowMs`.
   * An event reported out of order counts as happening at the latest time already recorded,
   * which keeps the ring sorted and errs towards firing.
   */
  private rateOver(event: string, atLeast: number, windowMs: number): Evaluator {
    const base = this.allocate(1 + atLeast, Number.NaN);
    this.initial[base] = 0;
    const ring = base + 1;
    this.observers.push((state, observation, now) => {
      const events = Math.min(eventCount(observation[event]), atLeast);
      let next = state[base]!;
      const latest = state[ring + ((next + atLeast - 1) % atLeast)]!;
      const at = Number.isNaN(latest) ? now : Math.max(now, latest);
      for (let i = 0; i < events; i++) {
        state[ring + next] = at;
        next = (next + 1) % atLeast;
      }
      state[base] = next;
    });
    return (state, _facts, now) => now - state[ring + state[base]!]! < windowMs; // false while NaN
  }
}

/** Stateless conditions; they read only the facts given. */
function predicate(condition: Predicate): Evaluator {
  switch (condition.type) {
    case 'fact': {
      const { fact } = condition;
      return (_state, facts) => facts[fact] === true;
    }
    case 'compare': {
      const { fact, op, value } = condition;
      return (_state, facts) => {
        const observed = facts[fact];
        return typeof observed === 'number' && compare(observed, op, value);
      };
    }
    case 'all': {
      return allOf(condition.of.map(predicate));
    }
    case 'any': {
      return anyOf(condition.of.map(predicate));
    }
    case 'not': {
      const inner = predicate(condition.of);
      return (state, facts, now) => !inner(state, facts, now);
    }
  }
}

/** Every fact name a condition reads, for relevance checks and for documentation tools. */
export function factsRead(condition: Condition, into = new Set<string>()): Set<string> {
  switch (condition.type) {
    case 'fact':
    case 'compare':
    case 'thresholdFor':
      into.add(condition.fact);
      break;
    case 'rateOver':
      into.add(condition.event);
      break;
    case 'consecutive':
    case 'not':
      factsRead(condition.of, into);
      break;
    case 'all':
    case 'any':
      for (const part of condition.of) factsRead(part, into);
      break;
  }
  return into;
}

// Plain loops rather than every/some with an arrow: those allocate a closure per call, and the
// gateway evaluates the decision tree for every connection on every tick.
function allOf(parts: Evaluator[]): Evaluator {
  return (state, facts, now) => {
    for (let i = 0; i < parts.length; i++) if (!parts[i]!(state, facts, now)) return false;
    return true;
  };
}

function anyOf(parts: Evaluator[]): Evaluator {
  return (state, facts, now) => {
    for (let i = 0; i < parts.length; i++) if (parts[i]!(state, facts, now)) return true;
    return false;
  };
}
