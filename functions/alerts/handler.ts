/**
 * alerts: decision events to webhooks (signed JSON, Slack, PagerDuty Events v2), with retries,
 * backoff and a dead-letter queue in the store (shared/control/alerts/AlertDelivery.ts).
 *
 * Entries: a decision event (EventBridge rule `streamheal-alerts-decisions`, or the local
 * router) is delivered; a scheduled event (`source: aws.events`, `Scheduled Event`) or
 * `{ "action": "redeliver" }` sends the dead letters again. Targets (receivers) come from a
 * Secrets Manager secret named by STREAMHEAL_ALERT_TARGETS_SECRET_ARN (re-read every
 * STREAMHEAL_ALERT_TARGETS_CACHE_MS, 5 min), or STREAMHEAL_ALERT_TARGETS /
 * STREAMHEAL_ALERT_TARGETS_FILE (receivers.ts; none by default); retries from
 * STREAMHEAL_ALERT_MAX_ATTEMPTS, _BACKOFF_BASE_MS, _TIMEOUT_MS (alertDeliveryFromEnv).
 *
 * Failed deliveries are dead-lettered in the store, not thrown. Receivers that cannot be known
 * (the secret unreadable at first read, or malformed) are thrown: the invocation fails, so Lambda
 * retries it and then puts it in the function's dead-letter queue, and the Errors alarm fires.
 */
import type { EventBridgeEvent } from '../../shared/bus/eventBridgeEntry.js';
import { fromEventBridgeEvent } from '../../shared/bus/eventBridgeEntry.js';
import type { BusEvent } from '../../shared/bus/EventBus.js';
import type { RouteHandler } from '../../shared/bus/router.js';
import {
  AlertDelivery,
  type AlertDeliveryOptions,
  type DeliveryReport,
  type RedeliveryReport,
} from '../../shared/control/alerts/AlertDelivery.js';
import { alertDeliveryFromEnv } from '../../shared/control/alerts/targets.js';
import { lambdaDeps } from '../runtime.js';
import { AlertReceivers } from './receivers.js';

export type AlertDeps = AlertDeliveryOptions;

const deliveries = new WeakMap<AlertDeps, AlertDelivery>();

function deliveryOf(deps: AlertDeps): AlertDelivery {
  let delivery = deliveries.get(deps);
  if (!delivery) {
    delivery = new AlertDelivery(deps);
    deliveries.set(deps, delivery);
  }
  return delivery;
}

export function alerts(event: BusEvent, deps: AlertDeps): Promise<DeliveryReport[]> {
  return deliveryOf(deps).deliver(event);
}

export function redeliverAlerts(deps: AlertDeps): Promise<RedeliveryReport> {
  return deliveryOf(deps).redeliver();
}

export function alertsRunner(deps: AlertDeps): RouteHandler {
  return async (event) => {
    await alerts(event, deps);
  };
}

interface LambdaState {
  receivers: AlertReceivers;
  settings: ReturnType<typeof alertDeliveryFromEnv>;
  /** Rebuilt when the receivers change (an edited secret), kept while they do not. */
  deps?: AlertDeps;
}

let lambda: LambdaState | undefined;

export type AlertsInput = EventBridgeEvent | { action: 'redeliver' };

export async function handler(input: AlertsInput): Promise<DeliveryReport[] | RedeliveryReport> {
  const base = lambdaDeps('alerts');
  lambda ??= {
    receivers: new AlertReceivers({ logger: base.logger }),
    settings: alertDeliveryFromEnv(),
  };
  // Throws when the receivers cannot be known: the event is retried, not acknowledged.
  const targets = await lambda.receivers.get();
  if (lambda.deps?.targets !== targets) {
    lambda.deps = { store: base.store, logger: base.logger, targets, ...lambda.settings };
  }
  const deps = lambda.deps;
  if (
    'action' in input ||
    (input.source === 'aws.events' && input['detail-type'] === 'Scheduled Event')
  ) {
    return redeliverAlerts(deps);
  }
  // Failures are dead-lettered, not thrown: a Lambda retry would only repeat what the queue holds.
  return alerts(fromEventBridgeEvent(input), deps);
}

/** Forgets what `handler` read and made (tests; a Lambda runtime just freezes). */
export function closeAlertsLambda(): void {
  lambda?.receivers.close();
  lambda = undefined;
}
