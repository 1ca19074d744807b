/**
 * "This gateway is gone", from any of its three witnesses, pure:
 *   - ECS: `ECS Task State Change` (source `aws.ecs`) with `detail.lastStatus` STOPPED. ECS sends
 *     at least once and out of order; `detail.version` grows with every change of the task.
 *   - the local supervisor: `Gateway Process Exited` (source `streamheal.control`, `detail.pid`).
 *   - the store: `Node Lease Expired` (the gateway's `nodes/<id>` record went with its lease).
 * Two witnesses of one loss are one loss: a node already lost stays lost (no second decision)
 * until a newer incarnation of it registers; a report about an incarnation older than the one
 * registered now is stale.
 */
import type { BusEvent } from '../bus/EventBus.js';
import { ECS_TASK_STATE_CHANGE } from '../bus/catalogue.js';
import { NodeLostEvents } from '../bus/controlEvents.js';
import { Sources } from '../bus/events.js';
import { incarnationOf, isNewerIncarnation, type ClusterView } from './cluster.js';
import { decisionId, newNodeRecord, triggerOf } from './decideNode.js';
import type { Decision, NodeControlRecord, NodeLostCause, RegisteredNode } from './types.js';

export interface NodeLostReport {
  node: string;
  cause: NodeLostCause;
  /** For logs: `process exited (signal SIGKILL)`, `task stopped: Essential container in task exited`. */
  causeText: string;
  /** Event time (ms). */
  at: number;
  incarnation?: string;
  ecs?: { taskArn: string; version?: number };
}

export type ParsedNodeLost = { report: NodeLostReport } | { ignored: string };

/** The ECS task id: the last segment of its ARN (`arn:…:task/<cluster>/<id>`). */
export function taskIdOf(taskArn: string): string {
  return taskArn.slice(taskArn.lastIndexOf('/') + 1);
}

/**
 * The node of an ECS task. A gateway on ECS reads its task from the task metadata endpoint
 * (workers/gateway/ecsIdentity.ts) and registers under its task id with the task's `taskArn`
 * (`TaskARN` there, the same string as the event's `detail.taskArn`). While that registration
 * lives, it is found by `taskArn`, whatever its id (STREAMHEAL_NODE_ID may name it). A stopped
 * task's registration is usually gone by the time ECS reports the stop (a clean stop revokes
 * its lease; a crash lets it expire within seconds, and the stop event comes later): then the
 * node is the task id, which is the gateway's id unless STREAMHEAL_NODE_ID was set.
 */
export function nodeOfTask(
  taskArn: string,
  registered: ReadonlyMap<string, RegisteredNode>,
): string {
  for (const node of registered.values()) if (node.taskArn === taskArn) return node.id;
  return taskIdOf(taskArn);
}

/** What a node-lost event reports (the node of an ECS task: `nodeOfTask`). */
export function parseNodeLostEvent(
  event: BusEvent,
  registered: ReadonlyMap<string, RegisteredNode>,
): ParsedNodeLost {
  const at = Date.parse(event.time);
  if (!Number.isFinite(at)) return { ignored: 'event time does not parse' };
  const detail = event.detail as Record<string, unknown>;
  if (event.source === 'aws.ecs' && event['detail-type'] === ECS_TASK_STATE_CHANGE) {
    if (detail.lastStatus !== 'STOPPED') return { ignored: `task is ${String(detail.lastStatus)}` };
    const taskArn = detail.taskArn;
    if (typeof taskArn !== 'string' || taskArn === '') return { ignored: 'no detail.taskArn' };
    const version = typeof detail.version === 'number' ? detail.version : undefined;
    const why = [detail.stoppedReason, detail.stopCode].filter((s) => typeof s === 'string');
    return {
      report: {
        node: nodeOfTask(taskArn, registered),
        cause: 'ecs_task_stopped',
        causeText: `task stopped${why.length ? `: ${why.join(', ')}` : ''}`,
        at,
        incarnation: `task:${taskArn}`,
        ecs: { taskArn, ...(version === undefined ? {} : { version }) },
      },
    };
  }
  if (event.source !== Sources.control) return { ignored: `source ${event.source}` };
  const node = typeof detail.node === 'string' && detail.node !== '' ? detail.node : undefined;
  if (!node) return { ignored: 'no detail.node' };
  const incarnation = incarnationOf(detail);
  switch (event['detail-type']) {
    case NodeLostEvents.gatewayProcessExited: {
      const how =
        typeof detail.signal === 'string'
          ? `signal ${detail.signal}`
          : `code ${String(detail.code ?? 'unknown')}`;
      return {
        report: {
          node,
          cause: 'process_exited',
          causeText: `process exited (${how})`,
          at,
          ...(incarnation ? { incarnation } : {}),
        },
      };
    }
    case NodeLostEvents.nodeLeaseExpired:
      return {
        report: {
          node,
          cause: 'lease_expired',
          causeText: 'lease expired',
          at,
          ...(incarnation ? { incarnation } : {}),
        },
      };
    default:
      return { ignored: `detail-type ${event['detail-type']}` };
  }
}

export interface DecideLostOutput {
  outcome: 'applied' | 'duplicate' | 'stale';
  record: NodeControlRecord;
  decisions: Decision[];
  /** Why a duplicate or stale report changed nothing. */
  why?: string;
}

/** The node's record after a loss report, and the `lost` decision when it is a new loss. */
export function decideLost(
  stored: NodeControlRecord | undefined,
  report: NodeLostReport,
  event: BusEvent,
  view: ClusterView,
): DecideLostOutput {
  const record = stored ? structuredClone(stored) : newNodeRecord(report.node, report.at);
  const same = (why: string, outcome: 'duplicate' | 'stale' = 'duplicate'): DecideLostOutput => ({
    outcome,
    record,
    decisions: [],
    why,
  });
  const registration = view.registered.get(report.node);
  const lost = record.lost;
  if (record.status === 'lost' && lost) {
    if (report.ecs && lost.ecsVersion !== undefined && lost.incarnation === report.incarnation) {
      if ((report.ecs.version ?? 0) <= lost.ecsVersion) {
        return same(`ECS version ${report.ecs.version} ≤ ${lost.ecsVersion} already handled`);
      }
    }
    if (report.incarnation !== undefined && report.incarnation === lost.incarnation) {
      return same(`${report.incarnation} already reported lost`);
    }
    const cameBack = registration !== undefined && isNewerIncarnation(registration, lost);
    const aboutThat =
      report.incarnation === undefined ||
      (registration !== undefined && incarnationOf(registration) === report.incarnation);
    if (!(cameBack && aboutThat)) return same('already lost, and no newer incarnation registered');
  } else if (registration && report.incarnation !== undefined) {
    const current = incarnationOf(registration);
    const started = registration.startedAt ? Date.parse(registration.startedAt) : Number.NaN;
    if (current !== undefined && current !== report.incarnation && started > report.at) {
      return same(`${current} registered after ${report.incarnation} was lost`, 'stale');
    }
  }
  const decision: Decision = {
    kind: 'lost',
    id: decisionId(event.id, 'lost', report.node),
    node: report.node,
    cause: report.cause,
    causeText: report.causeText,
    at: report.at,
    ...(report.incarnation ? { incarnation: report.incarnation } : {}),
    trigger: triggerOf(event),
  };
  record.status = 'lost';
  record.statusSince = report.at;
  record.lost = {
    at: report.at,
    cause: report.cause,
    ...(report.incarnation ? { incarnation: report.incarnation } : {}),
    ...(report.ecs?.version === undefined ? {} : { ecsVersion: report.ecs.version }),
  };
  delete record.rule;
  delete record.reason;
  delete record.suppressed;
  record.outbox = [...record.outbox, decision];
  return { outcome: 'applied', record, decisions: [decision] };
}
