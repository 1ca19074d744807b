/**
 * What the control-plane functions run on, built once per process: the store, the bus, a logger,
 * the move executor. Two ways to get one:
 *   - the local control process (and tests) pass their own (`ControlDeps`);
 *   - a Lambda builds it from its environment on first use (`lambdaDeps`): DynamoDB for the store
 *     (`DynamoStore.fromEnv`, docs/dynamodb.md), EventBridge for the bus (`STREAMHEAL_EVENT_BUS_NAME`,
 *     default `default`). Endpoints come from the SDK's usual variables (AWS_ENDPOINT_URL_…), which
 *     is how LocalStack runs are pointed at LocalStack.
 * Handlers stay thin: they turn the delivered event into a BusEvent and call the shared code.
 */
import type { EventBus } from '../shared/bus/EventBus.js';
import { EventBridgeBus } from '../shared/bus/EventBridgeBus.js';
import { ControlPlane, type ControlPlaneOptions } from '../shared/control/ControlPlane.js';
import type { MoveExecutor } from '../shared/control/moves.js';
import { DynamoStore } from '../shared/store/DynamoStore.js';
import type { StateStore } from '../shared/store/StateStore.js';
import { createLogger, type Logger } from '../shared/telemetry/logger.js';
import type { LevelWithSilent } from 'pino';

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

/** The Lambda's dependencies, from its environment, made on the first invocation and kept. */
export function lambdaDeps(name: string, env: NodeJS.ProcessEnv = process.env): ControlDeps {
  lambda ??= {
    store: DynamoStore.fromEnv(env),
    bus: new EventBridgeBus({ eventBusName: env.STREAMHEAL_EVENT_BUS_NAME || 'default' }),
    logger: createLogger(name, (env.STREAMHEAL_LOG_LEVEL || 'info') as LevelWithSilent),
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
  if (!deps) return;
  await deps.bus.close();
  await deps.store.close();
}
