/**
 * The control plane's own records and the shapes its pure functions exchange. Everything here is
 * plain JSON (the store holds it as is: embedded, RemoteStore, etcd, DynamoDB).
 *
 * Keys:
 *   control/nodes/<node>   NodeControlRecord: status, rule memory, outbox (one per gateway)
 *   control/cluster        ClusterControlRecord: which nodes are isolated or lost (the guard's CAS)
 *   decisions/<eventId>    idempotency claim of one event (idempotency.ts), with a TTL
 *   moves/<moveId>         a move request for the gateway side (moves.ts)
 */
import type { FactValue } from '../rules/index.js';

export const CONTROL_NODE_PREFIX = 'control/nodes/';
export const CLUSTER_KEY = 'control/cluster';
export const DECISION_PREFIX = 'decisions/';
export const MOVE_PREFIX = 'moves/';
/** Where gateways register (workers/gateway/Gateway.ts), under a lease. */
export const NODE_PREFIX = 'nodes/';

/**
 * A gateway as the control plane sees it:
 *   active     in rotation
 *   isolated   taken out of rotation by a rule whose action is `isolate`
 *   unhealthy  taken out by a rule whose action is `migrateSessions` (`markNode: unhealthy`)
 *   lost       gone (task stopped, process exited, lease expired) until a newer incarnation shows up
 * `isolated` and `unhealthy` are both ejections: they count against the cascade guard.
 */
export type NodeStatus = 'active' | 'isolated' | 'unhealthy' | 'lost';
export type EjectedStatus = 'isolated' | 'unhealthy';

export function isEjected(status: NodeStatus): status is EjectedStatus {
  return status === 'isolated' || status === 'unhealthy';
}

/** One thing learnt about a node at one instant, from a health event. */
export interface TimedObservation {
  /** The event's id, with `#n` when one event yields several observations. */
  id: string;
  /** Milliseconds since the epoch: when it was true (event time, or earlier when backdated). */
  t: number;
  facts: Record<string, FactValue>;
}

/**
 * What the node rules remember, in a form that survives JSON and policy edits:
 * - `buffer`: observations not older than the watermark, sorted by (t, id). Events may arrive
 *   out of order within the reorder window; the rules see them replayed in time order.
 * - `checkpoint`: per rule condition (by a hash of its JSON), the rule engine's state after every
 *   observation folded so far (older than the watermark). A policy edit that leaves a condition
 *   as it was keeps its memory; a changed condition starts afresh.
 * - `facts`: the last value of every fact folded so far, with its time.
 */
export interface RuleMemory {
  /** Observations older than this are folded into the checkpoint; events older than it are stale. */
  watermark: number;
  buffer: TimedObservation[];
  /** Condition hash → rule state (NaN stored as null). */
  checkpoint: Record<string, (number | null)[]>;
  facts: Record<string, { t: number; v: FactValue }>;
}

export interface LostInfo {
  /** Event time of the loss (ms). */
  at: number;
  cause: NodeLostCause;
  /** Which process or task it was: `pid:<n>`, `task:<arn>` (dedupes reports of one loss). */
  incarnation?: string;
  /** ECS `detail.version` of the task's stop event, when it came from ECS. */
  ecsVersion?: number;
}

export type NodeLostCause = 'ecs_task_stopped' | 'process_exited' | 'lease_expired';

export interface NodeControlRecord {
  node: string;
  status: NodeStatus;
  /** Event time (ms) of the last status change. */
  statusSince: number;
  /** The rule that ejected it, and its reason text. */
  rule?: string;
  reason?: string;
  /** A rule wanted it ejected and a guard refused: published once per rule until it clears. */
  suppressed?: { rule: string; since: number };
  lost?: LostInfo;
  rules: RuleMemory;
  /** Newest event time applied (ms). */
  newestEventTime: number;
  /** Ids of the last events applied (a second line of defence behind `decisions/<id>`). */
  recentEventIds: string[];
  /** Decisions committed with this record and not yet carried out (moves, events, logs). */
  outbox: Decision[];
}

/** The cluster-wide record the cascade guard is enforced on (compare-and-set). */
export interface ClusterControlRecord {
  ejected: Record<string, { status: EjectedStatus; since: number; rule?: string }>;
  lost: Record<string, { at: number; incarnation?: string }>;
}

/** A gateway's registration, as workers/gateway/Gateway.ts writes it (fields read here). */
export interface RegisteredNode {
  id: string;
  url?: string;
  pid?: number;
  startedAt?: string;
  connections?: { ws?: number; sse?: number };
  /** 0–1; absent means 1 (no evidence against it). */
  healthScore?: number;
  /** ECS task of the gateway, when it runs on ECS. */
  taskArn?: string;
}

/** What the event a decision was based on: for logs, alerts and dedup. */
export interface DecisionTrigger {
  eventId: string;
  source: string;
  detailType: string;
  time: string;
}

export interface MoveTarget {
  node: string;
  count: number;
}

export interface MovePlan {
  /** Sessions to move (the node's Active sessions, else its connection count). */
  count: number;
  targets: MoveTarget[];
}

/** A decision, as committed in the node record's outbox and then carried out. */
export type Decision =
  | {
      kind: 'eject';
      id: string;
      node: string;
      status: EjectedStatus;
      rule: string;
      reason: string;
      action: string;
      at: number;
      trigger: DecisionTrigger;
      trace?: Record<string, string>;
    }
  | {
      kind: 'reinstate';
      id: string;
      node: string;
      rule?: string;
      reason?: string;
      at: number;
      trigger: DecisionTrigger;
    }
  | {
      kind: 'suppressed';
      id: string;
      node: string;
      rule: string;
      reason: string;
      at: number;
      guard: GuardVerdict;
      trigger: DecisionTrigger;
    }
  | {
      kind: 'lost';
      id: string;
      node: string;
      cause: NodeLostCause;
      causeText: string;
      at: number;
      incarnation?: string;
      trigger: DecisionTrigger;
    };

/** The cascade guard's answer for one proposed ejection (guards.ts). */
export interface GuardVerdict {
  allowed: boolean;
  /** Why not: too many isolated already, or the healthy share would fall below panic. */
  refusedBy?: 'max_isolated_share' | 'panic_threshold';
  total: number;
  ejected: number;
  healthy: number;
  /** max(1, ⌊maxIsolatedShare × total⌋). */
  maxEjected: number;
  /** Healthy share if the ejection went ahead. */
  healthyShareAfter: number;
  maxIsolatedShare: number;
  panicThreshold: number;
}
