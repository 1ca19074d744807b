/**
 * The decision function's core, pure: one health event about a node, the node's control record,
 * the policy and the cluster in; the node's next record and the decisions out. No I/O, no clock:
 * rules run on event time, so the same inputs always give the same outputs (DecideService does
 * the reads, the conditional writes and the side effects).
 *
 * Per event:
 *   1. An event about a node reported lost, from before the loss, is stale; one from after it
 *      means a newer incarnation speaks, and the node starts afresh (active, no memory).
 *   2. An event already applied (its id among the node's recent ones) is a duplicate; one older
 *      than the watermark (newest event time − reorder window) is stale. Neither changes anything.
 *   3. Its observations (observations.ts) join the node's rule memory (ruleMemory.ts); the
 *      policy's node rules are evaluated at the newest event time.
 *   4. The first matching rule whose action ejects (`isolate`, `migrateSessions`) wants the node
 *      out: it is ejected if the cascade guard allows (guards.ts), else the refusal is reported
 *      once per rule. No ejecting rule matching and `autoRejoin`: an ejected node is reinstated.
 *      While ejected, the record names the first matching rule in policy order (no new decision).
 * So the node's status after an event is what the rules say about all its events so far, in time
 * order, whatever order they came in (within the reorder window; guards permitting).
 */
import { createHash } from 'node:crypto';
import type { BusEvent } from '../bus/EventBus.js';
import type { FailoverPolicy } from '../records/index.js';
import type { Rule } from '../rules/index.js';
import { guardCounts, type ClusterView } from './cluster.js';
import { ejectionVerdict } from './guards.js';
import { eventTimeMs, healthObservations } from './observations.js';
import {
  addObservations,
  DEFAULT_RULE_MEMORY_OPTIONS,
  emptyRuleMemory,
  evaluateRuleMemory,
  type RuleMemoryOptions,
} from './ruleMemory.js';
import {
  isEjected,
  type Decision,
  type DecisionTrigger,
  type EjectedStatus,
  type NodeControlRecord,
} from './types.js';

/** Rule actions that take a node out of rotation. Other actions are left to other consumers. */
export const EJECTING_ACTIONS: ReadonlySet<string> = new Set(['isolate', 'migrateSessions']);

/** Event ids remembered per node, behind the `decisions/<id>` claims. */
const RECENT_EVENT_IDS = 64;

export type DecideOutcome = 'applied' | 'duplicate' | 'stale' | 'ignored';

export interface DecideNodeInput {
  node: string;
  /** The stored record, or undefined for a node never seen. */
  record: NodeControlRecord | undefined;
  event: BusEvent;
  policy: FailoverPolicy;
  view: ClusterView;
  /** Trace context of the decision, carried into move requests. */
  trace?: Record<string, string>;
  memory?: Partial<RuleMemoryOptions>;
}

export interface DecideNodeOutput {
  outcome: DecideOutcome;
  /** The next record (a copy; the input is not changed). Its outbox holds `decisions` too. */
  record: NodeControlRecord;
  /** Decisions this event made. */
  decisions: Decision[];
  /** Names of the rules matching after this event. */
  matched: string[];
}

export function newNodeRecord(node: string, at: number): NodeControlRecord {
  return {
    node,
    status: 'active',
    statusSince: at,
    rules: emptyRuleMemory(),
    newestEventTime: 0,
    recentEventIds: [],
    outbox: [],
  };
}

export function triggerOf(event: BusEvent): DecisionTrigger {
  return {
    eventId: event.id,
    source: event.source,
    detailType: event['detail-type'],
    time: event.time,
  };
}

/** A decision's id: the same event and kind always give the same id (consumers dedupe on it). */
export function decisionId(eventId: string, kind: string, node: string): string {
  const hex = createHash('sha256').update(`${eventId}\n${kind}\n${node}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

export function decideNode(input: DecideNodeInput): DecideNodeOutput {
  const { node, event, policy, view } = input;
  const t = eventTimeMs(event);
  const stored = input.record ? structuredClone(input.record) : undefined;
  if (!Number.isFinite(t)) {
    return {
      outcome: 'ignored',
      record: stored ?? newNodeRecord(node, 0),
      decisions: [],
      matched: [],
    };
  }
  let record = stored ?? newNodeRecord(node, t);
  const unchanged = (outcome: DecideOutcome): DecideNodeOutput => ({
    outcome,
    record,
    decisions: [],
    matched: [],
  });

  if (record.status === 'lost') {
    if (t <= (record.lost?.at ?? 0)) return unchanged('stale');
    // A newer incarnation reports: it starts in rotation with nothing remembered.
    record = { ...newNodeRecord(node, t), outbox: record.outbox };
  }
  if (record.recentEventIds.includes(event.id)) return unchanged('duplicate');
  if (t < record.rules.watermark) return unchanged('stale');

  const memoryOptions = { ...DEFAULT_RULE_MEMORY_OPTIONS, ...input.memory };
  const ruleSet = policy.spec.nodeRules;
  const newest = Math.max(record.newestEventTime, t);
  const observations = healthObservations(event, view.registered.get(node));
  record.rules = addObservations(record.rules, observations, newest, ruleSet, memoryOptions);
  record.newestEventTime = newest;
  record.recentEventIds = [...record.recentEventIds, event.id].slice(-RECENT_EVENT_IDS);

  const matched = evaluateRuleMemory(record.rules, ruleSet, newest);
  const ejecting = matched.find((rule) => EJECTING_ACTIONS.has(rule.then.action));
  const trigger = triggerOf(event);
  const decisions: Decision[] = [];

  if (record.status === 'active' && ejecting) {
    const verdict = ejectionVerdict(guardCounts(view, node), policy.spec.guards);
    const reason = reasonOf(ejecting);
    if (verdict.allowed) {
      const status = ejectedStatus(ejecting);
      record.status = status;
      record.statusSince = newest;
      record.rule = ejecting.name;
      record.reason = reason;
      delete record.suppressed;
      decisions.push({
        kind: 'eject',
        id: decisionId(event.id, 'eject', node),
        node,
        status,
        rule: ejecting.name,
        reason,
        action: ejecting.then.action,
        at: newest,
        trigger,
        ...(input.trace ? { trace: input.trace } : {}),
      });
    } else if (record.suppressed?.rule !== ejecting.name) {
      record.suppressed = { rule: ejecting.name, since: newest };
      decisions.push({
        kind: 'suppressed',
        id: decisionId(event.id, 'suppressed', node),
        node,
        rule: ejecting.name,
        reason,
        at: newest,
        guard: verdict,
        trigger,
      });
    }
  } else if (isEjected(record.status) && ejecting && ejecting.name !== record.rule) {
    // Still out, now for another rule (the first in policy order that matches): the record says
    // which, so the state does not depend on which rule's evidence happened to arrive first.
    record.status = ejectedStatus(ejecting);
    record.rule = ejecting.name;
    record.reason = reasonOf(ejecting);
  } else if (isEjected(record.status) && !ejecting && policy.spec.autoRejoin) {
    decisions.push({
      kind: 'reinstate',
      id: decisionId(event.id, 'reinstate', node),
      node,
      ...(record.rule === undefined ? {} : { rule: record.rule }),
      ...(record.reason === undefined ? {} : { reason: record.reason }),
      at: newest,
      trigger,
    });
    record.status = 'active';
    record.statusSince = newest;
    delete record.rule;
    delete record.reason;
  }
  if (!ejecting) delete record.suppressed;
  record.outbox = [...record.outbox, ...decisions];
  return { outcome: 'applied', record, decisions, matched: matched.map((rule) => rule.name) };
}

/** The text of the log line: the rule's `reason`, else its description, else its name. */
export function reasonOf(rule: Rule): string {
  const reason = rule.then.reason;
  return typeof reason === 'string' && reason !== '' ? reason : (rule.description ?? rule.name);
}

/** `isolate` isolates; `migrateSessions` marks the node as its `markNode` says (unhealthy). */
function ejectedStatus(rule: Rule): EjectedStatus {
  const mark = rule.then.markNode;
  if (mark === 'isolated' || mark === 'unhealthy') return mark;
  return rule.then.action === 'isolate' ? 'isolated' : 'unhealthy';
}
