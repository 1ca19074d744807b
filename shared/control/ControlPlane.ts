/**
 * The decide and nodeLost functions over a store and a bus: the reads, conditional writes and
 * side effects around the pure cores (decideNode.ts, nodeLost.ts). functions/decide and
 * functions/nodeLost are thin adapters over this class (Lambda, and the local control process's
 * router), so the same code runs in every shape of streamheal.
 *
 * Delivery is at least once, duplicated and out of order; per event:
 *   1. `decisions/<eventId>` is claimed (idempotency.ts): a completed event is not run again.
 *   2. The node's record (`control/nodes/<node>`), the cluster record (`control/cluster`) and the
 *      registrations (`nodes/`) are read; the pure core decides.
 *   3. An ejection first reserves its place in the cluster record, written only if unchanged
 *      since read: of two concurrent ejections the guard sees the first, so they cannot exceed
 *      it together. Then the node record is written only if unchanged since read, with the new
 *      decisions in its outbox. A lost race starts again from 2.
 *   4. The cluster record is brought in line with the node's committed status.
 *   5. The outbox is carried out (log lines, decision events, moves, sessions marked Failed),
 *      then emptied. A crash between 3 and 5 leaves the outbox for the redelivery, or the node's
 *      next event, to carry out: moves are recorded under the decision's id and events carry
 *      ids derived from it, so doing it twice asks and tells once.
 */
import { SpanKind, context, trace, type Context } from '@opentelemetry/api';
import type { BusEvent, EventBus } from '../bus/EventBus.js';
import { DecisionEvents } from '../bus/controlEvents.js';
import { errorCode, StreamhealError } from '../errors.js';
import {
  RecordRepository,
  SESSION_PREFIX,
  defaultPolicy,
  transitionSession,
  type FailoverPolicy,
} from '../records/index.js';
import type { StateStore, StoredRecord } from '../store/StateStore.js';
import type { Logger } from '../telemetry/logger.js';
import { extractContext, injectContext, tracer } from '../telemetry/tracing.js';
import {
  DECISION_DETAIL_TYPES,
  decisionEvent,
  ejectLine,
  lostLine,
  noTargetLine,
  rebalancedLine,
  reinstateLine,
  suppressedLine,
} from './announcements.js';
import {
  connectionsOf,
  eligibleTargets,
  emptyClusterRecord,
  planTargets,
  type ClusterView,
} from './cluster.js';
import { decideNode, type DecideOutcome } from './decideNode.js';
import { runOnce, type IdempotencyOptions } from './idempotency.js';
import { StoreMoveExecutor, type MoveExecutor } from './moves.js';
import { decideLost, parseNodeLostEvent } from './nodeLost.js';
import type { RuleMemoryOptions } from './ruleMemory.js';
import {
  CLUSTER_KEY,
  CONTROL_NODE_PREFIX,
  NODE_PREFIX,
  isEjected,
  type ClusterControlRecord,
  type Decision,
  type NodeControlRecord,
  type RegisteredNode,
} from './types.js';

export interface ControlPlaneOptions {
  store: StateStore;
  bus: EventBus;
  logger: Logger;
  /** @default StoreMoveExecutor over `store` (records `moves/<id>`) */
  moves?: MoveExecutor;
  /** The FailoverPolicy whose rules and guards apply. @default 'default' */
  policyName?: string;
  idempotency?: Partial<IdempotencyOptions>;
  memory?: Partial<RuleMemoryOptions>;
  /** Wall clock for records and event times (rules run on event time). @default Date.now */
  now?: () => number;
  /** Rounds of read-decide-write when concurrent writers keep winning. @default 20 */
  maxAttempts?: number;
}

export interface HandledEvent {
  eventId: string;
  outcome: DecideOutcome;
  node?: string;
  /** Decisions this event made (not those of an earlier event carried out meanwhile). */
  decisions: { kind: Decision['kind']; id: string }[];
  /** Names of the rules matching after the event (decide). */
  matched?: string[];
  why?: string;
}

/** Concurrent writers kept winning for `maxAttempts` rounds. */
export class ContentionError extends StreamhealError {
  constructor(key: string, attempts: number) {
    super('contention', `${key}: still changing after ${attempts} attempts`);
  }
}

/** Lost entries older than this are dropped from the cluster record. */
const LOST_RETENTION_MS = 24 * 3_600_000;
/** Sessions marked Failed at once when a node is lost. */
const SESSION_CONCURRENCY = 16;

export class ControlPlane {
  private readonly store: StateStore;
  private readonly bus: EventBus;
  private readonly logger: Logger;
  private readonly moves: MoveExecutor;
  private readonly repository: RecordRepository;
  private readonly now: () => number;
  private readonly maxAttempts: number;

  constructor(private readonly options: ControlPlaneOptions) {
    this.store = options.store;
    this.bus = options.bus;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
    this.moves = options.moves ?? new StoreMoveExecutor(options.store, { now: this.now });
    this.repository = new RecordRepository(options.store);
    this.maxAttempts = options.maxAttempts ?? 20;
  }

  /** The decide function: one gateway health event. */
  async decide(event: BusEvent): Promise<HandledEvent> {
    const node = nodeOf(event);
    if (node === undefined) {
      return { eventId: event.id, outcome: 'ignored', decisions: [], why: 'no detail.node' };
    }
    return this.once(event, 'decide', () =>
      this.traced('streamheal.decide', event, node, (ctx) => this.decideOnce(event, node, ctx)),
    );
  }

  /** The nodeLost function: ECS task stopped, supervisor saw an exit, or a lease expired. */
  async nodeLost(event: BusEvent): Promise<HandledEvent> {
    return this.once(event, 'nodeLost', () =>
      this.traced('streamheal.node_lost', event, nodeOf(event), () => this.lostOnce(event)),
    );
  }

  /** Carries out whatever a node's outbox still holds (e.g. after a crash). */
  async flushOutbox(node: string): Promise<void> {
    await this.executeOutbox(node);
  }

  private async once(
    event: BusEvent,
    name: string,
    run: () => Promise<HandledEvent>,
  ): Promise<HandledEvent> {
    const done = await runOnce(this.store, event.id, name, run, {
      now: this.now,
      ...this.options.idempotency,
    });
    if (!done.duplicate) return done.result;
    this.logger.debug({ event: event.id, function: name }, 'duplicate event: already handled');
    return {
      eventId: event.id,
      outcome: 'duplicate',
      ...(done.result?.node === undefined ? {} : { node: done.result.node }),
      decisions: [],
      why: 'event already handled',
    };
  }

  private async decideOnce(event: BusEvent, node: string, ctx: Context): Promise<HandledEvent> {
    const policy = await this.policy();
    const traceCarrier = injectContext(ctx);
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const [stored, cluster, view] = await this.readNodeAndView(node);
      const out = decideNode({
        node,
        record: stored?.value,
        event,
        policy,
        view,
        trace: traceCarrier,
        ...(this.options.memory ? { memory: this.options.memory } : {}),
      });
      if (out.outcome !== 'applied') {
        // A reservation left by a round that lost its race is released here.
        const reserved = cluster.value.ejected[node] !== undefined;
        if (reserved !== isEjected(stored?.value.status ?? 'active')) await this.syncCluster(node);
        if (stored?.value.outbox.length) await this.executeOutbox(node);
        return { eventId: event.id, outcome: out.outcome, node, decisions: [] };
      }
      const eject = out.decisions.find((d) => d.kind === 'eject');
      if (eject?.kind === 'eject' && cluster.value.ejected[node] === undefined) {
        // Reserve the guard's place first: concurrent ejections serialise on this record.
        const reserved = structuredClone(cluster.value);
        reserved.ejected[node] = { status: eject.status, since: eject.at, rule: eject.rule };
        if (!(await this.putIfVersion(CLUSTER_KEY, reserved, cluster.version))) continue;
      }
      if (
        !(await this.putIfVersion(CONTROL_NODE_PREFIX + node, out.record, stored?.version ?? 0))
      ) {
        continue;
      }
      await this.syncCluster(node);
      await this.executeOutbox(node);
      return {
        eventId: event.id,
        outcome: 'applied',
        node,
        decisions: out.decisions.map(({ kind, id }) => ({ kind, id })),
        matched: out.matched,
      };
    }
    throw new ContentionError(CONTROL_NODE_PREFIX + node, this.maxAttempts);
  }

  private async lostOnce(event: BusEvent): Promise<HandledEvent> {
    const registered = await this.registered();
    const parsed = parseNodeLostEvent(event, registered);
    if ('ignored' in parsed) {
      this.logger.debug({ event: event.id, why: parsed.ignored }, 'node-lost event ignored');
      return { eventId: event.id, outcome: 'ignored', decisions: [], why: parsed.ignored };
    }
    const { report } = parsed;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const [stored, , view] = await this.readNodeAndView(report.node);
      const out = decideLost(stored?.value, report, event, view);
      if (out.outcome !== 'applied') {
        this.logger.debug(
          { event: event.id, node: report.node, outcome: out.outcome, why: out.why },
          `${report.node}: loss report changes nothing (${out.why})`,
        );
        if (stored?.value.outbox.length) await this.executeOutbox(report.node);
        return {
          eventId: event.id,
          outcome: out.outcome,
          node: report.node,
          decisions: [],
          ...(out.why ? { why: out.why } : {}),
        };
      }
      const key = CONTROL_NODE_PREFIX + report.node;
      if (!(await this.putIfVersion(key, out.record, stored?.version ?? 0))) continue;
      await this.syncCluster(report.node);
      await this.executeOutbox(report.node);
      return {
        eventId: event.id,
        outcome: 'applied',
        node: report.node,
        decisions: out.decisions.map(({ kind, id }) => ({ kind, id })),
      };
    }
    throw new ContentionError(CONTROL_NODE_PREFIX + report.node, this.maxAttempts);
  }

  // ------------------------------------------------------------------ store

  private async policy(): Promise<FailoverPolicy> {
    const name = this.options.policyName ?? 'default';
    try {
      const stored = await this.repository.getPolicy(name);
      return stored?.record ?? defaultPolicy();
    } catch (error) {
      if (errorCode(error) !== 'invalid_stored_record') throw error;
      this.logger.error({ err: error, policy: name }, `policy ${name} is invalid; using defaults`);
      return defaultPolicy();
    }
  }

  private async registered(): Promise<Map<string, RegisteredNode>> {
    const records = await this.store.list<RegisteredNode>(NODE_PREFIX);
    const nodes = new Map<string, RegisteredNode>();
    for (const { key, value } of records) {
      if (value && typeof value === 'object') {
        const id = key.slice(NODE_PREFIX.length);
        nodes.set(id, { ...value, id });
      }
    }
    return nodes;
  }

  private async cluster(): Promise<{ value: ClusterControlRecord; version: number }> {
    const stored = await this.store.get<ClusterControlRecord>(CLUSTER_KEY);
    return stored
      ? { value: { ...emptyClusterRecord(), ...stored.value }, version: stored.version }
      : { value: emptyClusterRecord(), version: 0 };
  }

  private async readView(): Promise<ClusterView> {
    const [registered, cluster] = await Promise.all([this.registered(), this.cluster()]);
    return { registered, cluster: cluster.value };
  }

  private async readNodeAndView(
    node: string,
  ): Promise<
    [
      StoredRecord<NodeControlRecord> | undefined,
      { value: ClusterControlRecord; version: number },
      ClusterView,
    ]
  > {
    const [stored, cluster, registered] = await Promise.all([
      this.store.get<NodeControlRecord>(CONTROL_NODE_PREFIX + node),
      this.cluster(),
      this.registered(),
    ]);
    return [stored, cluster, { registered, cluster: cluster.value }];
  }

  /** A conditional write; false when another writer got there first. */
  private async putIfVersion(key: string, value: unknown, version: number): Promise<boolean> {
    try {
      await this.store.put(key, value, { ifVersion: version });
      return true;
    } catch (error) {
      if (errorCode(error) === 'condition_failed') return false;
      throw error;
    }
  }

  /** Makes the cluster record say what the node's record says (ejected, lost, or neither). */
  private async syncCluster(node: string): Promise<void> {
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const [stored, cluster] = await Promise.all([
        this.store.get<NodeControlRecord>(CONTROL_NODE_PREFIX + node),
        this.cluster(),
      ]);
      const record = stored?.value;
      const next = structuredClone(cluster.value);
      delete next.ejected[node];
      if (record && isEjected(record.status)) {
        next.ejected[node] = {
          status: record.status,
          since: record.statusSince,
          ...(record.rule === undefined ? {} : { rule: record.rule }),
        };
      }
      if (record?.status === 'lost' && record.lost) {
        next.lost[node] = {
          at: record.lost.at,
          ...(record.lost.incarnation ? { incarnation: record.lost.incarnation } : {}),
        };
      } else if (record?.status === 'active') {
        delete next.lost[node];
      }
      const horizon = this.now() - LOST_RETENTION_MS;
      for (const [id, lost] of Object.entries(next.lost)) {
        if (lost.at < horizon && id !== node) delete next.lost[id];
      }
      if (JSON.stringify(next) === JSON.stringify(cluster.value)) return;
      if (await this.putIfVersion(CLUSTER_KEY, next, cluster.version)) return;
    }
    throw new ContentionError(CLUSTER_KEY, this.maxAttempts);
  }

  // ------------------------------------------------------------------ side effects

  private async executeOutbox(node: string): Promise<void> {
    const stored = await this.store.get<NodeControlRecord>(CONTROL_NODE_PREFIX + node);
    const outbox = stored?.value.outbox ?? [];
    if (outbox.length === 0) return;
    for (const decision of outbox) {
      try {
        await this.carryOut(decision);
      } catch (error) {
        this.logger.error(
          { err: error, node, decision: decision.id, kind: decision.kind },
          `carrying out the ${decision.kind} decision for ${node} failed`,
        );
      }
    }
    const done = new Set(outbox.map((decision) => decision.id));
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const current = await this.store.get<NodeControlRecord>(CONTROL_NODE_PREFIX + node);
      if (!current) return;
      const remaining = current.value.outbox.filter((decision) => !done.has(decision.id));
      if (remaining.length === current.value.outbox.length) return;
      const next = { ...current.value, outbox: remaining };
      if (await this.putIfVersion(CONTROL_NODE_PREFIX + node, next, current.version)) return;
    }
  }

  private async carryOut(decision: Decision): Promise<void> {
    switch (decision.kind) {
      case 'eject':
        return this.carryOutEject(decision);
      case 'reinstate': {
        const message = reinstateLine(decision.node, decision.rule);
        this.logger.info(
          { node: decision.node, rule: decision.rule, decision: decision.id },
          message,
        );
        await this.publish(
          decisionEvent(
            DECISION_DETAIL_TYPES.reinstate,
            decision,
            {
              decision: 'reinstate',
              message,
              status: 'active',
              ...(decision.rule === undefined ? {} : { rule: decision.rule }),
            },
            undefined,
            this.now(),
          ),
        );
        return;
      }
      case 'suppressed': {
        const message = suppressedLine(decision.node, decision.reason, decision.guard);
        this.logger.warn(
          {
            node: decision.node,
            rule: decision.rule,
            guard: decision.guard,
            decision: decision.id,
          },
          message,
        );
        await this.publish(
          decisionEvent(
            DECISION_DETAIL_TYPES.suppressed,
            decision,
            {
              decision: 'suppressed',
              message,
              rule: decision.rule,
              reason: decision.reason,
              guard: decision.guard,
            },
            undefined,
            this.now(),
          ),
        );
        return;
      }
      case 'lost': {
        const sessions = await this.failSessions(decision.node, decision.causeText, decision.at);
        const message = lostLine(decision.node, decision.causeText, sessions);
        this.logger.warn(
          { node: decision.node, cause: decision.cause, sessions, decision: decision.id },
          message,
        );
        await this.publish(
          decisionEvent(
            DECISION_DETAIL_TYPES.lost,
            decision,
            {
              decision: 'lost',
              message,
              status: 'lost',
              cause: decision.cause,
              causeText: decision.causeText,
              sessions,
              ...(decision.incarnation ? { incarnation: decision.incarnation } : {}),
            },
            undefined,
            this.now(),
          ),
        );
        return;
      }
    }
  }

  private async carryOutEject(decision: Extract<Decision, { kind: 'eject' }>): Promise<void> {
    const { node, status, reason, rule } = decision;
    const isolating = ejectLine(node, status, reason);
    this.logger.warn({ node, rule, status, decision: decision.id }, isolating);
    await this.publish(
      decisionEvent(
        DECISION_DETAIL_TYPES.eject,
        decision,
        {
          decision: status === 'isolated' ? 'isolate' : 'mark_unhealthy',
          message: isolating,
          status,
          rule,
          reason,
          action: decision.action,
          ...(decision.trace ? { trace: decision.trace } : {}),
        },
        undefined,
        this.now(),
      ),
    );
    const view = await this.readView();
    const count = await this.sessionCount(node, view.registered.get(node));
    if (count === 0) {
      const eligible = eligibleTargets(view, node).map((n) => ({ node: n.id, count: 0 }));
      this.logger.info({ node, moved: 0 }, rebalancedLine(0, eligible));
      return;
    }
    const targets = planTargets(view, node, count);
    const migration = (
      type: (typeof DecisionEvents)[keyof typeof DecisionEvents],
      part: string,
      message: string,
      extra: Record<string, unknown>,
    ) =>
      this.publish(
        decisionEvent(
          type,
          decision,
          {
            decision: part,
            message,
            from: node,
            requested: count,
            targets,
            moveId: decision.id,
            ...(decision.trace ? { trace: decision.trace } : {}),
            ...extra,
          },
          part,
          this.now(),
        ),
      );
    if (targets.length === 0) {
      const message = noTargetLine(node, count);
      this.logger.error({ node, requested: count }, message);
      await migration(DecisionEvents.migrationFailed, 'migration_failed', message, {
        moved: 0,
        error: 'no eligible target',
      });
      return;
    }
    const started = `moving ${count} connections from ${node} to ${targets.map((t) => `${t.node} (${t.count})`).join(', ')}`;
    this.logger.info({ node, requested: count, targets, moveId: decision.id }, started);
    await migration(DecisionEvents.migrationStarted, 'migration_started', started, {});
    let moved: number;
    try {
      moved = await this.moves.moveSessions(node, targets, count, decision.trace ?? {}, {
        moveId: decision.id,
        reason,
        rule,
        triggerEventId: decision.trigger.eventId,
      });
    } catch (error) {
      const message = `moving ${count} connections from ${node} failed: ${(error as Error).message}`;
      this.logger.error({ err: error, node, requested: count }, message);
      await migration(DecisionEvents.migrationFailed, 'migration_failed', message, {
        moved: 0,
        error: (error as Error).message,
      });
      return;
    }
    const message = rebalancedLine(moved, targets);
    this.logger.info({ node, moved, requested: count, targets, moveId: decision.id }, message);
    await migration(
      moved >= count ? DecisionEvents.migrationCompleted : DecisionEvents.migrationFailed,
      moved >= count ? 'migration_completed' : 'migration_failed',
      message,
      { moved },
    );
  }

  /** The node's Active sessions (StreamSession records), else its registered connections. */
  private async sessionCount(
    node: string,
    registration: RegisteredNode | undefined,
  ): Promise<number> {
    const active = await this.activeSessions(node);
    return active.length > 0 ? active.length : connectionsOf(registration);
  }

  private async activeSessions(node: string): Promise<string[]> {
    const records = await this.store.list<{
      spec?: { nodeId?: string };
      status?: { phase?: string };
    }>(SESSION_PREFIX);
    return records
      .filter((r) => r.value?.spec?.nodeId === node && r.value?.status?.phase === 'Active')
      .map((r) => r.key.slice(SESSION_PREFIX.length));
  }

  /** Marks the node's Active sessions Failed (to resume elsewhere); resolves with how many. */
  private async failSessions(node: string, causeText: string, at: number): Promise<number> {
    const names = await this.activeSessions(node);
    let marked = 0;
    for (let i = 0; i < names.length; i += SESSION_CONCURRENCY) {
      await Promise.all(
        names.slice(i, i + SESSION_CONCURRENCY).map(async (name) => {
          try {
            const result = await this.repository.updateSession(name, (session) =>
              session.spec.nodeId === node && session.status.phase === 'Active'
                ? transitionSession(session, 'Failed', {
                    now: at,
                    message: `gateway ${node} lost: ${causeText}; resume elsewhere`,
                  })
                : session,
            );
            if (result?.outcome === 'updated') marked++;
          } catch (error) {
            this.logger.error({ err: error, node, session: name }, `session ${name} not marked`);
          }
        }),
      );
    }
    return marked;
  }

  private async publish(event: BusEvent): Promise<void> {
    try {
      await this.bus.put([event]);
    } catch (error) {
      this.logger.error(
        { err: error, event: event.id, detailType: event['detail-type'] },
        `decision event ${event['detail-type']} not published`,
      );
    }
  }

  // ------------------------------------------------------------------ tracing

  private async traced<T extends HandledEvent>(
    name: string,
    event: BusEvent,
    node: string | undefined,
    run: (ctx: Context) => Promise<T>,
  ): Promise<T> {
    const parent = extractContext(traceCarrierOf(event));
    return tracer().startActiveSpan(
      name,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          'streamheal.event.id': event.id,
          'streamheal.event.detail_type': event['detail-type'],
          ...(node === undefined ? {} : { 'streamheal.node': node }),
        },
      },
      parent,
      async (span) => {
        try {
          const result = await run(trace.setSpan(context.active(), span));
          span.setAttribute('streamheal.outcome', result.outcome);
          span.setAttribute('streamheal.decisions', result.decisions.map((d) => d.kind).join(','));
          return result;
        } catch (error) {
          span.recordException(error as Error);
          throw error;
        } finally {
          span.end();
        }
      },
    );
  }
}

/** The node an event is about: `detail.node`, else its first resource. */
export function nodeOf(event: BusEvent): string | undefined {
  const node = (event.detail as { node?: unknown }).node;
  if (typeof node === 'string' && node !== '') return node;
  return event.resources?.[0];
}

/** W3C trace context an event carries: `detail.trace` (a carrier) or `detail.traceparent`. */
function traceCarrierOf(event: BusEvent): Record<string, string> | undefined {
  const detail = event.detail as { trace?: unknown; traceparent?: unknown; tracestate?: unknown };
  if (detail.trace && typeof detail.trace === 'object') {
    const carrier: Record<string, string> = {};
    for (const [k, v] of Object.entries(detail.trace)) if (typeof v === 'string') carrier[k] = v;
    return carrier;
  }
  if (typeof detail.traceparent === 'string') {
    return {
      traceparent: detail.traceparent,
      ...(typeof detail.tracestate === 'string' ? { tracestate: detail.tracestate } : {}),
    };
  }
  return undefined;
}
