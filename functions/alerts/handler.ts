/**
 * alerts: decision events to webhooks (signed JSON, Slack, PagerDuty Events v2), with retries,
 * backoff and a dead-letter queue in the store (shared/control/alerts/AlertDelivery.ts).
 *
 * Entries: a decision event (EventBridge rule `streamheal-alerts-decisions`, or the local
 * router) is delivered; a scheduled event (`source: aws.events`, `Scheduled Event`) or
 * `{ "action": "redeliver" }` sends the dead letters again. Targets come from
 * STREAMHEAL_ALERT_TARGETS / STREAMHEAL_ALERT_TARGETS_FILE (none by default); retries from
 * STREAMHEAL_ALERT_MAX_ATTEMPTS, _BACKOFF_BASE_MS, _TIMEOUT_MS (alertDeliveryFromEnv).
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
import { alertDeliveryFromEnv, alertTargetsFromEnv } from '../../shared/control/alerts/targets.js';
import { lambdaDeps } from '../runtime.js';

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

let lambda: AlertDeps | undefined;

export type AlertsInput = EventBridgeEvent | { action: 'redeliver' };

export async function handler(input: AlertsInput): Promise<DeliveryReport[] | RedeliveryReport> {
  const base = lambdaDeps('alerts');
  lambda ??= {
    store: base.store,
    logger: base.logger,
    targets: alertTargetsFromEnv(),
    ...alertDeliveryFromEnv(),
  };
  if (
    'action' in input ||
    (input.source === 'aws.events' && input['detail-type'] === 'Scheduled Event')
  ) {
    return redeliverAlerts(lambda);
  }
  // Failures are dead-lettered, not thrown: a Lambda retry would only repeat what the queue holds.
  return alerts(fromEventBridgeEvent(input), lambda);
}
