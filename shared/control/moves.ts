/**
 * Moving sessions off a node: the decision function says what (from, targets, how many) and a
 * MoveExecutor does it. The gateway side (gRPC Migrate, make-before-break, redirect tokens) is
 * one executor; until it is wired, StoreMoveExecutor records each request as a `moves/<id>`
 * record for it to pick up.
 */
import { errorCode } from '../errors.js';
import type { StateStore } from '../store/StateStore.js';
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
