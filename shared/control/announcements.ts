/**
 * How decisions are told: the log lines (the seed's demo, verbatim in form:
 * `isolating gateway-01 due to CPU > 95% for 30s` then `rebalanced 1247 connections to
 * gateway-02,03`) and the decision events on the bus (source `streamheal.control`, detail-types
 * in shared/bus/controlEvents.ts). Pure: building, not sending.
 */
import type { BusEvent } from '../bus/EventBus.js';
import { DecisionEvents, type DecisionEventType } from '../bus/controlEvents.js';
import { Sources } from '../bus/events.js';
import { formatNodeList } from './cluster.js';
import { decisionId } from './decideNode.js';
import type { Decision, GuardVerdict, MoveTarget } from './types.js';

export function ejectLine(node: string, status: 'isolated' | 'unhealthy', reason: string): string {
  return status === 'isolated'
    ? `isolating ${node} due to ${reason}`
    : `marking ${node} unhealthy due to ${reason}`;
}

export function rebalancedLine(moved: number, targets: readonly MoveTarget[]): string {
  return `rebalanced ${moved} connections to ${formatNodeList(targets.map((t) => t.node))}`;
}

export function noTargetLine(node: string, count: number): string {
  return `could not rebalance ${count} connections from ${node}: no eligible target`;
}

export function reinstateLine(node: string, rule: string | undefined): string {
  return `reinstating ${node}: ${rule ?? 'its rule'} no longer matches`;
}

export function suppressedLine(node: string, reason: string, guard: GuardVerdict): string {
  const why =
    guard.refusedBy === 'panic_threshold'
      ? `healthy share would be ${share(guard.healthyShareAfter)}, below the panic threshold ${share(guard.panicThreshold)}`
      : `${guard.ejected} of ${guard.total} already isolated, at most ${guard.maxEjected}`;
  return `not isolating ${node} (${reason}): cascade guard, ${why}`;
}

export function lostLine(node: string, causeText: string, sessions: number): string {
  return `${node} lost (${causeText}); ${sessions} sessions marked for resume elsewhere`;
}

function share(value: number): string {
  return `${Math.round(value * 1000) / 10}%`;
}

/** Detail fields every decision event carries. */
export interface DecisionDetailBase {
  node: string;
  decision: string;
  /** The log line. */
  message: string;
  /** Event time the decision was taken at (ISO-8601). */
  at: string;
  trigger: Decision['trigger'];
}

/**
 * A decision event. Its id is derived from the decision (and `part` for the migration events
 * that follow an ejection), so carrying out a decision twice publishes the same ids twice and
 * consumers drop the second.
 */
export function decisionEvent(
  detailType: DecisionEventType,
  decision: Decision,
  detail: Record<string, unknown> & { decision: string; message: string },
  part?: string,
  now: number = Date.now(),
): BusEvent {
  return {
    id: part === undefined ? decision.id : decisionId(decision.id, part, decision.node),
    source: Sources.control,
    'detail-type': detailType,
    time: new Date(now).toISOString(),
    detail: {
      node: decision.node,
      at: new Date(decision.at).toISOString(),
      trigger: decision.trigger,
      ...detail,
    },
    resources: [decision.node],
  };
}

export const DECISION_DETAIL_TYPES = {
  eject: DecisionEvents.nodeIsolated,
  reinstate: DecisionEvents.nodeReinstated,
  suppressed: DecisionEvents.isolationSuppressed,
  lost: DecisionEvents.nodeDeclaredLost,
} as const satisfies Record<Decision['kind'], DecisionEventType>;
