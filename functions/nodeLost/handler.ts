/**
 * nodeLost: "this gateway is gone" — ECS Task State Change (STOPPED), the supervisor's Gateway
 * Process Exited, or Node Lease Expired. Its Active sessions are marked Failed (to resume
 * elsewhere) and a `Node Declared Lost` decision event is published (shared/control).
 */
import type { EventBridgeEvent } from '../../shared/bus/eventBridgeEntry.js';
import { fromEventBridgeEvent } from '../../shared/bus/eventBridgeEntry.js';
import type { BusEvent } from '../../shared/bus/EventBus.js';
import type { RouteHandler } from '../../shared/bus/router.js';
import type { HandledEvent } from '../../shared/control/ControlPlane.js';
import { controlPlaneOf, drainBus, lambdaDeps, type ControlDeps } from '../runtime.js';

export function nodeLost(event: BusEvent, deps: ControlDeps): Promise<HandledEvent> {
  return controlPlaneOf(deps).nodeLost(event);
}

export function nodeLostRunner(deps: ControlDeps): RouteHandler {
  return async (event) => {
    await nodeLost(event, deps);
  };
}

/**
 * Lambda entry. ECS events keep EventBridge's id (they carry no streamhealEventId), so a
 * redelivered copy is the same id; a second STOPPED event of the task is a duplicate by its task.
 */
export async function handler(event: EventBridgeEvent): Promise<HandledEvent> {
  const deps = lambdaDeps('nodeLost');
  try {
    return await nodeLost(fromEventBridgeEvent(event), deps);
  } finally {
    await drainBus(deps);
  }
}
