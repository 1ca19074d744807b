/**
 * The control-plane functions the orchestrator runs: the same runners the local control process
 * routes (functions/decide, functions/nodeLost, functions/alerts), over the etcd store and bus.
 */
import { alertsRunner, redeliverAlerts, type AlertDeps } from '../../functions/alerts/handler.js';
import { decideRunner } from '../../functions/decide/handler.js';
import { nodeLostRunner } from '../../functions/nodeLost/handler.js';
import type { ControlDeps } from '../../functions/runtime.js';
import type { TargetFunction } from '../../shared/bus/catalogue.js';
import type { EventBus } from '../../shared/bus/EventBus.js';
import type { RouteHandler } from '../../shared/bus/router.js';
import type { AlertTarget } from '../../shared/control/alerts/targets.js';
import type { MoveExecutor } from '../../shared/control/moves.js';
import type { StateStore } from '../../shared/store/StateStore.js';
import type { Logger } from '../../shared/telemetry/logger.js';

export interface FunctionsOptions {
  store: StateStore;
  bus: EventBus;
  logger: Logger;
  alertTargets: AlertTarget[];
  /** The FailoverPolicy that applies. @default 'default' */
  policyName?: string;
  /**
   * How long an event claimed by a run that never finished is left alone (idempotency.ts).
   * A leader that dies in the middle of an event leaves such a claim; its successor handles the
   * event again once this has passed. A run still going then (it never takes seconds unless
   * the store stalls) may be taken over, which the functions' conditional writes make safe.
   * @default 5_000
   */
  inProgressMs?: number;
  /**
   * Who carries out session moves. @default the functions' default, as in the local control
   * process (shared/control/moves.ts)
   */
  moves?: MoveExecutor;
}

export interface ControlFunctions {
  handlers: Record<TargetFunction, RouteHandler>;
  /** Sends dead-lettered alerts again (the leader calls it on a timer). */
  redeliver(): Promise<unknown>;
  hasAlertTargets: boolean;
}

export function controlFunctions(options: FunctionsOptions): ControlFunctions {
  const control: ControlDeps = {
    store: options.store,
    bus: options.bus,
    logger: options.logger,
    ...(options.moves ? { moves: options.moves } : {}),
    control: {
      ...(options.policyName ? { policyName: options.policyName } : {}),
      idempotency: { inProgressMs: options.inProgressMs ?? 5_000 },
    },
  };
  const alerts: AlertDeps = {
    store: options.store,
    logger: options.logger,
    targets: options.alertTargets,
  };
  return {
    handlers: {
      decide: decideRunner(control),
      nodeLost: nodeLostRunner(control),
      alerts: alertsRunner(alerts),
    },
    redeliver: () => redeliverAlerts(alerts),
    hasAlertTargets: options.alertTargets.length > 0,
  };
}
