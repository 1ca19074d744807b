/**
 * Node rules over health events that arrive late, twice, or out of order, with their memory in
 * a JSON record (types.ts, RuleMemory) so it survives from one invocation to the next.
 *
 * Observations newer than the watermark (the newest event time seen minus the reorder window)
 * wait in a buffer sorted by time; the rules are evaluated on the folded state plus a replay of
 * the buffer in time order. Observations older than the watermark are folded into a checkpoint
 * per rule condition, in time order. So within the reorder window the arrival order does not
 * matter: any order of the same observations gives the same evaluation.
 */
import { createHash } from 'node:crypto';
import {
  compileRules,
  createRuleState,
  evaluate,
  observe,
  type Condition,
  type FactValue,
  type Rule,
  type RulePlan,
  type RuleSet,
} from '../rules/index.js';
import type { RuleMemory, TimedObservation } from './types.js';

export interface RuleMemoryOptions {
  /** How late an event may arrive and still be replayed in its place. @default 60_000 */
  reorderWindowMs: number;
  /** Observations kept in the buffer at most; older ones are folded early. @default 256 */
  maxBuffered: number;
}

export const DEFAULT_RULE_MEMORY_OPTIONS: RuleMemoryOptions = {
  reorderWindowMs: 60_000,
  maxBuffered: 256,
};

export function emptyRuleMemory(): RuleMemory {
  return { watermark: 0, buffer: [], checkpoint: {}, facts: {} };
}

/** A stable id of a condition: rules whose condition is unchanged keep their memory. */
export function conditionHash(condition: Condition): string {
  return createHash('sha256').update(stableJson(condition)).digest('base64url').slice(0, 16);
}

const plans = new Map<string, RulePlan>();
const MAX_CACHED_PLANS = 512;

/** The compiled plan of one condition (cached: each invocation evaluates the same few). */
function planFor(condition: Condition): { hash: string; plan: RulePlan } {
  const hash = conditionHash(condition);
  let plan = plans.get(hash);
  if (!plan) {
    if (plans.size >= MAX_CACHED_PLANS) plans.clear();
    plan = compileRules({
      match: 'all',
      rules: [{ name: hash, when: condition, then: { action: 'match' } }],
    });
    plans.set(hash, plan);
  }
  return { hash, plan };
}

/**
 * Adds observations seen at `newestEventTime` (the newest event time applied so far, this one
 * included), moves the watermark, folds what fell behind it. Returns a new memory; `memory` is
 * not changed. Observations whose id is already buffered are ignored.
 */
export function addObservations(
  memory: RuleMemory,
  observations: readonly TimedObservation[],
  newestEventTime: number,
  ruleSet: RuleSet,
  options: RuleMemoryOptions = DEFAULT_RULE_MEMORY_OPTIONS,
): RuleMemory {
  const next: RuleMemory = structuredClone(memory);
  const known = new Set(next.buffer.map((o) => o.id));
  for (const observation of observations) {
    if (known.has(observation.id)) continue;
    known.add(observation.id);
    next.buffer.push(structuredClone(observation));
  }
  next.buffer.sort(byTime);
  next.watermark = Math.max(next.watermark, newestEventTime - options.reorderWindowMs);
  const checkpoints = checkpointStates(next, ruleSet);
  let folded = 0;
  while (
    folded < next.buffer.length &&
    (next.buffer[folded]!.t < next.watermark || next.buffer.length - folded > options.maxBuffered)
  ) {
    const observation = next.buffer[folded++]!;
    for (const { plan, state } of checkpoints.values()) {
      observe(plan, state, observation.facts, observation.t);
    }
    for (const [fact, value] of Object.entries(observation.facts)) {
      const known = next.facts[fact];
      if (!known || known.t <= observation.t) next.facts[fact] = { t: observation.t, v: value };
    }
  }
  next.buffer.splice(0, folded);
  // Conditions no longer in the policy are forgotten; the others keep (or start) their state.
  next.checkpoint = {};
  for (const [hash, { state }] of checkpoints) next.checkpoint[hash] = encodeState(state);
  return next;
}

/**
 * The rules of `ruleSet` that match at `at` (in order; at most one when `match` is 'first'):
 * each rule's checkpoint plus the buffer replayed in time order, with the latest value of every
 * fact for `fact` and `compare` leaves.
 */
export function evaluateRuleMemory(memory: RuleMemory, ruleSet: RuleSet, at: number): Rule[] {
  const facts = latestFacts(memory);
  const matched: Rule[] = [];
  const checkpoints = checkpointStates(memory, ruleSet);
  for (const rule of ruleSet.rules) {
    const { hash, plan } = planFor(rule.when);
    const state = checkpoints.get(hash)!.state.slice();
    for (const observation of memory.buffer) observe(plan, state, observation.facts, observation.t);
    if (evaluate(plan, state, facts, at).length > 0) {
      matched.push(rule);
      if (ruleSet.match === 'first') break;
    }
  }
  return matched;
}

/** The last value of every fact, buffer included. */
export function latestFacts(memory: RuleMemory): Record<string, FactValue> {
  const latest = new Map<string, { t: number; v: FactValue }>(Object.entries(memory.facts));
  for (const observation of memory.buffer) {
    for (const [fact, v] of Object.entries(observation.facts)) {
      const known = latest.get(fact);
      if (!known || known.t <= observation.t) latest.set(fact, { t: observation.t, v });
    }
  }
  return Object.fromEntries([...latest].map(([fact, { v }]) => [fact, v]));
}

/** The checkpoint state of every condition of the rule set (fresh for a new condition). */
function checkpointStates(
  memory: RuleMemory,
  ruleSet: RuleSet,
): Map<string, { plan: RulePlan; state: Float64Array }> {
  const states = new Map<string, { plan: RulePlan; state: Float64Array }>();
  for (const rule of ruleSet.rules) {
    const { hash, plan } = planFor(rule.when);
    if (states.has(hash)) continue;
    const stored = memory.checkpoint[hash];
    const state =
      stored && stored.length === plan.stateSize ? decodeState(stored) : createRuleState(plan);
    states.set(hash, { plan, state: state.length === 0 ? state : state.slice() });
  }
  return states;
}

function byTime(a: TimedObservation, b: TimedObservation): number {
  return a.t - b.t || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** JSON has no NaN: the engine's "not started" marks are stored as null. */
function encodeState(state: Float64Array): (number | null)[] {
  return Array.from(state, (value) => (Number.isNaN(value) ? null : value));
}

function decodeState(stored: (number | null)[]): Float64Array {
  return Float64Array.from(stored, (value) => (value === null ? Number.NaN : value));
}

/** JSON with object keys sorted, so equal data always hashes the same. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
