/**
 * Rules as plain data: JSON (or YAML) in a policy file, objects in code, the same shapes.
 *
 * A condition is a tree. Leaves read facts (`fact`, `compare`) or remember a little history
 * (`consecutive`, `thresholdFor`, `rateOver`); `all`, `any` and `not` combine them and nest
 * freely. A rule pairs a condition with an action; a rule set is an ordered list of rules.
 */

/** A fact's value. Booleans for states (heartbeatLost), numbers for metrics and event counts. */
export type FactValue = number | boolean;

/** What is known now, by fact name. An absent fact is unknown: it satisfies no leaf. */
export type Facts = Readonly<Record<string, FactValue | undefined>>;

/**
 * Something seen at one instant: a probe result, a health event's detail. Stateful conditions
 * learn only from the facts an observation carries; facts it leaves out are not reset.
 * For `rateOver`, a number is how many events happened (true counts as one).
 */
export type Observation = Facts;

/** True iff the fact is `true`. */
export interface FactCondition {
  type: 'fact';
  fact: string;
}

export type ComparisonOperator = '>' | '>=' | '<' | '<=' | '==' | '!=';

/** True iff the fact is a number and `fact op value` holds. */
export interface CompareCondition {
  type: 'compare';
  fact: string;
  op: ComparisonOperator;
  value: number;
}

/**
 * True once the last `count` observations that mention the predicate's facts all satisfied
 * it (e.g. three ping timeouts in a row). One observation that does not satisfy it resets.
 */
export interface ConsecutiveCondition {
  type: 'consecutive';
  count: number;
  of: Predicate;
}

/**
 * True once a metric has been beyond a threshold for `forMs` without interruption, e.g. CPU
 * > 0.95 for 30,000 ms. Each observed value holds until the next one arrives (as Prometheus
 * treats samples); a value on the good side, or a non-number, restarts the clock.
 */
export interface ThresholdForCondition {
  type: 'thresholdFor';
  fact: string;
  op: '>' | '>=' | '<' | '<=';
  value: number;
  forMs: number;
}

/** True while at least `atLeast` events named `event` were observed in the last `windowMs`. */
export interface RateOverCondition {
  type: 'rateOver';
  event: string;
  atLeast: number;
  windowMs: number;
}

export interface AllOf<C> {
  type: 'all';
  of: C[];
}
export interface AnyOf<C> {
  type: 'any';
  of: C[];
}
export interface NotOf<C> {
  type: 'not';
  of: C;
}

/** Stateless conditions: what `consecutive` counts. */
export type Predicate =
  FactCondition | CompareCondition | AllOf<Predicate> | AnyOf<Predicate> | NotOf<Predicate>;

export type Condition =
  | FactCondition
  | CompareCondition
  | ConsecutiveCondition
  | ThresholdForCondition
  | RateOverCondition
  | AllOf<Condition>
  | AnyOf<Condition>
  | NotOf<Condition>;

export type JsonValue =
  string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * What to do when a rule matches. Only `action` is interpreted by the engine's users; any
 * other field is a parameter for them (a reason for the log line, a timeout, a target count).
 */
export interface RuleAction {
  action: string;
  [parameter: string]: JsonValue;
}

export interface Rule {
  /** Unique within its rule set; decisions and logs name the rule that made them. */
  name: string;
  description?: string;
  when: Condition;
  then: RuleAction;
}

export interface RuleSet {
  /**
   * 'first': the first matching rule wins, in order (a decision tree).
   * 'all': every matching rule is reported, in order (independent alarms).
   */
  match: 'first' | 'all';
  rules: Rule[];
}
