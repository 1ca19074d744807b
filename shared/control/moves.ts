/**
 * Moving sessions off a node: the decision function says what (from, targets, how many) and a
 * MoveExecutor does it. GatewayMoveExecutor moves them for real through the gateways' gRPC
 * control service (make-before-break, one redirect token per session); StoreMoveExecutor only
 * records each request as a `moves/<id>` record (for setups whose gateways run no control
 * service, and for tests of the decision logic).
 *
 * Where clients are sent: a gateway whose node record advertises a `publicUrl` (the cluster's
 * load balancer, STREAMHEAL_PUBLIC_URL, the one source of truth) has clients that cannot reach
 * another gateway's own `url`; its sessions are redirected to that public URL with
 * cluster-targeted tokens (CLUSTER_TARGET), and the load balancer picks the gateway. Without it,
 * each session goes to its target's `url` with a token for that target.
 */
import { errorCode } from '../errors.js';
import { GatewayControlClient, type Move } from '../protocol/gatewayControl.js';
import { CLUSTER_TARGET, parsePublicUrl, signRedirectToken } from '../redirectTokens.js';
import type { StateStore } from '../store/StateStore.js';
import type { KeyRing } from '../tokens.js';
import { MOVE_PREFIX, type MoveTarget } from './types.js';

export interface MoveContext {
  /** Stable per decision: the same decision carried out twice asks for the same move. */
  moveId: string;
  reason?: string;
  rule?: string;
  /** Id of the event the decision was based on. */
  triggerEventId?: string;
}

export interface MoveExecutor {
  /**
   * Moves `count` sessions of `fromNode` to `targets` (their counts sum to `count`), carrying the
   * decision's trace context (W3C carrier) to the gateways. Resolves with how many moved.
   */
  moveSessions(
    fromNode: string,
    targets: readonly MoveTarget[],
    count: number,
    trace: Record<string, string>,
    context: MoveContext,
  ): Promise<number>;
}

/** A `moves/<id>` record. */
export interface MoveRequestRecord {
  id: string;
  fromNode: string;
  targets: MoveTarget[];
  count: number;
  /** W3C trace context of the decision (traceparent, tracestate). */
  trace: Record<string, string>;
  reason?: string;
  rule?: string;
  triggerEventId?: string;
  requestedAt: string;
  /** `requested` when written here; the gateway side moves it on (`moving`, `done`, `failed`). */
  status: 'requested';
}

export interface StoreMoveExecutorOptions {
  /** Kept this long, then deleted by the store. @default 86_400_000 (24 h) */
  ttlMs?: number;
  now?: () => number;
}

/**
 * Records the request (`moves/<moveId>`, written only if absent, so a repeated decision does not
 * ask twice) and reports the whole count as handed over.
 */
export class StoreMoveExecutor implements MoveExecutor {
  constructor(
    private readonly store: StateStore,
    private readonly options: StoreMoveExecutorOptions = {},
  ) {}

  async moveSessions(
    fromNode: string,
    targets: readonly MoveTarget[],
    count: number,
    trace: Record<string, string>,
    context: MoveContext,
  ): Promise<number> {
    const record: MoveRequestRecord = {
      id: context.moveId,
      fromNode,
      targets: targets.map((t) => ({ node: t.node, count: t.count })),
      count,
      trace: { ...trace },
      ...(context.reason === undefined ? {} : { reason: context.reason }),
      ...(context.rule === undefined ? {} : { rule: context.rule }),
      ...(context.triggerEventId === undefined ? {} : { triggerEventId: context.triggerEventId }),
      requestedAt: new Date((this.options.now ?? Date.now)()).toISOString(),
      status: 'requested',
    };
    try {
      await this.store.put(MOVE_PREFIX + context.moveId, record, {
        ifVersion: 0,
        ttlMs: this.options.ttlMs ?? 86_400_000,
      });
      return count;
    } catch (error) {
      if (errorCode(error) !== 'condition_failed') throw error;
      const existing = await this.store.get<MoveRequestRecord>(MOVE_PREFIX + context.moveId);
      return existing?.value.count ?? count;
    }
  }
}

/** What GatewayMoveExecutor reads of a gateway's `nodes/<id>` record. */
interface GatewayNode {
  id: string;
  url: string;
  /** `host:port` of its control service. */
  control?: string;
  /** The cluster's public endpoint its clients came through, if any. */
  publicUrl?: string;
}

export interface GatewayMoveExecutorOptions {
  /** How long each client has to move before its session stays put. @default 30_000 */
  ttlMs?: number;
  /**
   * How long the source gateway has to answer Status. A gateway that cannot be reached (a
   * dropped SYN) would otherwise hold the caller until gRPC's own connect timeout, past a
   * Lambda's. @default 5_000
   */
  statusTimeoutMs?: number;
}

/**
 * The ring, or where to get it when a move happens (a Lambda's comes from Secrets Manager:
 * functions/tokens/keyRing.ts `KeyRingSource`, cached and refreshed there).
 */
export type KeyRingProvider = KeyRing | (() => Promise<KeyRing>);

/**
 * Asks the source gateway (the control address in its node record) for up to `count` session
 * ids, signs a redirect token per session for its target (or for the cluster, to the public URL
 * the source advertises: then the targets' shares only count how many move, and the load
 * balancer picks where), and calls Migrate with the decision's trace context. Resolves with how many moved: moved means resumed on the target before the
 * old connection closed. A gateway without a control service, one that cannot be reached or
 * does not answer Status in time, or one that refuses the ring fails the move with the reason
 * (decide then publishes Migration Failed with it).
 */
export class GatewayMoveExecutor implements MoveExecutor {
  constructor(
    private readonly store: StateStore,
    private readonly keyRing: KeyRingProvider,
    private readonly options: GatewayMoveExecutorOptions = {},
  ) {}

  async moveSessions(
    fromNode: string,
    targets: readonly MoveTarget[],
    count: number,
    trace: Record<string, string>,
  ): Promise<number> {
    const nodes = new Map(
      (await this.store.list<GatewayNode>('nodes/')).map((record) => [
        record.value.id,
        record.value,
      ]),
    );
    const source = nodes.get(fromNode);
    if (!source?.control)
      throw new Error(`gateway ${fromNode} has no control service in its node record; cannot move`);
    // Checked like the gateway checks it; a record that says something else fails the move.
    const publicUrl = source.publicUrl === undefined ? undefined : parsePublicUrl(source.publicUrl);
    const keyRing = typeof this.keyRing === 'function' ? await this.keyRing() : this.keyRing;
    const client = new GatewayControlClient(source.control, keyRing);
    try {
      const { sessions } = await withTimeout(
        client.status(count),
        this.options.statusTimeoutMs ?? 5_000,
        `gateway ${fromNode} did not answer Status at ${source.control}`,
      );
      const moves: Move[] = [];
      for (const target of targets) {
        const node = nodes.get(target.node);
        if (!node) continue; // gone since the decision: its share stays
        for (let i = 0; i < target.count && moves.length < sessions.length; i++) {
          const session = sessions[moves.length]!;
          const to = publicUrl ? { id: CLUSTER_TARGET, url: publicUrl } : node;
          const { token } = await signRedirectToken(keyRing, {
            sessionId: session,
            sourceNode: fromNode,
            targetNode: to.id,
          });
          moves.push({ session, targetNode: to.id, targetUrl: to.url, token });
        }
      }
      if (moves.length === 0) return 0;
      const results = await client.migrate(moves, {
        ...(this.options.ttlMs === undefined ? {} : { ttlMs: this.options.ttlMs }),
        trace,
      });
      return results.filter((result) => result.outcome === 'MOVED').length;
    } finally {
      client.close();
    }
  }
}

/** `promise`, or a rejection with `message` after `ms` (the caller closes what it opened). */
async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
