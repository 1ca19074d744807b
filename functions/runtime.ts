/**
 * What the control-plane functions run on, built once per process: the store, the bus, a logger,
 * the move executor. Two ways to get one:
 *   - the local control process (and tests) pass their own (`ControlDeps`);
 *   - a Lambda builds it from its environment on first use (`lambdaDeps`): DynamoDB for the store
 *     (`DynamoStore.fromEnv`, docs/dynamodb.md), EventBridge for the bus (`STREAMHEAL_EVENT_BUS_NAME`,
 *     default `default`). Endpoints come from the SDK's usual variables (AWS_ENDPOINT_URL_…), which
 *     is how LocalStack runs are pointed at LocalStack. Moves go through the source gateway's
 *     gRPC control service (GatewayMoveExecutor: the address in its node record, calls and
 *     redirect tokens signed with the token key ring, `KeyRingSource`), which is why decide and
 *     nodeLost run in the VPC with read access to the ring.
 * Handlers stay thin: they turn the delivered event into a BusEvent and call the shared code.
 */
import type { EventBus } from '../shared/bus/EventBus.js';
import { EventBridgeBus } from '../shared/bus/EventBridgeBus.js';
import { ControlPlane, type ControlPlaneOptions } from '../shared/control/ControlPlane.js';
import { GatewayMoveExecutor, type MoveExecutor } from '../shared/control/moves.js';
import { DynamoStore } from '../shared/store/DynamoStore.js';
import type { StateStore } from '../shared/store/StateStore.js';
import { createLogger, type Logger } from '../shared/telemetry/logger.js';
import type { LevelWithSilent } from 'pino';
import { KeyRingSource } from './tokens/keyRing.js';

export interface ControlDeps {
  store: StateStore;
  bus: EventBus;
  logger: Logger;
  moves?: MoveExecutor;
  /** Passed on to the ControlPlane (policy name, idempotency TTLs, reorder window, clock). */
  control?: Omit<ControlPlaneOptions, 'store' | 'bus' | 'logger' | 'moves'>;
}

const planes = new WeakMap<ControlDeps, ControlPlane>();

/** One ControlPlane per set of dependencies (its compiled rules are cached with it). */
export function controlPlaneOf(deps: ControlDeps): ControlPlane {
  let plane = planes.get(deps);
  if (!plane) {
    plane = new ControlPlane({
      store: deps.store,
      bus: deps.bus,
      logger: deps.logger,
      ...(deps.moves ? { moves: deps.moves } : {}),
      ...deps.control,
    });
    planes.set(deps, plane);
  }
  return plane;
}

let lambda: ControlDeps | undefined;
let keyRings: KeyRingSource | undefined;

/**
 * How long a client has to move before its session stays put: within decide's Lambda timeout
 * (10 s), so a move that does not complete is reported rather than cut off. Clients move in
 * parallel, so this does not grow with their number.
 */
export const LAMBDA_MOVE_TTL_MS = 5_000;

/** The Lambda's dependencies, from its environment, made on the first invocation and kept. */
export function lambdaDeps(name: string, env: NodeJS.ProcessEnv = process.env): ControlDeps {
  if (lambda) return lambda;
  const store = DynamoStore.fromEnv(env);
  const logger = createLogger(name, (env.STREAMHEAL_LOG_LEVEL || 'info') as LevelWithSilent);
  // Read on the first move only (a function that moves nothing never asks Secrets Manager).
  const ring = (keyRings = new KeyRingSource({ env, logger }));
  const ttl = Number(env.STREAMHEAL_MOVE_TTL_MS);
  lambda = {
    store,
    bus: new EventBridgeBus({ eventBusName: env.STREAMHEAL_EVENT_BUS_NAME || 'default' }),
    logger,
    moves: new GatewayMoveExecutor(store, () => ring.get(), {
      ttlMs: Number.isInteger(ttl) && ttl > 0 ? ttl : LAMBDA_MOVE_TTL_MS,
      // A reachable gateway answers in milliseconds; an unreachable one must not eat the budget.
      statusTimeoutMs: 2_000,
    }),
    control: {
      ...(env.STREAMHEAL_POLICY_NAME ? { policyName: env.STREAMHEAL_POLICY_NAME } : {}),
    },
  };
  return lambda;
}

/**
 * Waits until the events put during the invocation are accepted: a Lambda is frozen as soon as
 * the handler returns, and EventBridgeBus sends from a spool. Buses without a spool return at once.
 */
export async function drainBus(deps: ControlDeps, timeoutMs = 10_000): Promise<void> {
  const bus = deps.bus as EventBus & { flush?: (ms: number) => Promise<boolean> };
  if (typeof bus.flush !== 'function') return;
  if (!(await bus.flush(timeoutMs))) {
    deps.logger.error({ timeoutMs }, 'decision events not yet accepted by the bus when returning');
  }
}

/** Closes what `lambdaDeps` made (tests; a Lambda runtime just freezes). */
export async function closeLambdaDeps(): Promise<void> {
  const deps = lambda;
  lambda = undefined;
  keyRings?.close();
  keyRings = undefined;
  if (!deps) return;
  await deps.bus.close();
  await deps.store.close();
}
