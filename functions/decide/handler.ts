/**
 * decide: gateway health events in, decisions out (shared/control/ControlPlane.ts). `decide` is
 * the function; `handler` is its Lambda entry (EventBridge rule `streamheal-decide-gateway-health`)
 * and `decideRunner` its twin for the local control process's router. Both call the same code.
 */
import type { EventBridgeEvent } from '../../shared/bus/eventBridgeEntry.js';
import { fromEventBridgeEvent } from '../../shared/bus/eventBridgeEntry.js';
import type { BusEvent } from '../../shared/bus/EventBus.js';
import type { RouteHandler } from '../../shared/bus/router.js';
import type { HandledEvent } from '../../shared/control/ControlPlane.js';
import { controlPlaneOf, drainBus, lambdaDeps, type ControlDeps } from '../runtime.js';

export function decide(event: BusEvent, deps: ControlDeps): Promise<HandledEvent> {
  return controlPlaneOf(deps).decide(event);
}

/** For routeCatalogue: errors are thrown to the bus's handler-error hook (logged there). */
export function decideRunner(deps: ControlDeps): RouteHandler {
  return async (event) => {
    await decide(event, deps);
  };
}

/** Lambda entry. A throw makes Lambda retry; `decisions/<id>` keeps a retry from deciding twice. */
export async function handler(event: EventBridgeEvent): Promise<HandledEvent> {
  const deps = lambdaDeps('decide');
  try {
    return await decide(fromEventBridgeEvent(event), deps);
  } finally {
    await drainBus(deps);
  }
}
