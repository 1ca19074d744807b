/**
 * The events the control plane puts on the bus (source `streamheal.control`). Two kinds, routed
 * apart by the catalogue (shared/bus/catalogue.ts): a gateway is gone (to `nodeLost`), and a
 * decision was taken (to `alerts`). A new detail-type goes here first, so the catalogue routes
 * it; an event whose detail-type is in neither list reaches no function.
 */

/** A gateway is gone: its sessions must move. `detail.node` names it. */
export const NodeLostEvents = {
  /** The local supervisor saw a gateway process exit unexpectedly (workers/control/Supervisor.ts). */
  gatewayProcessExited: 'Gateway Process Exited',
  /** A gateway's registration lease in the store expired: it stopped renewing it. */
  nodeLeaseExpired: 'Node Lease Expired',
} as const;

/**
 * What the decide function did (seed 4.4's decision events). Provisional names until decide
 * lands; each carries `detail.node` and what the decision was based on.
 */
export const DecisionEvents = {
  nodeIsolated: 'Node Isolated',
  nodeReinstated: 'Node Reinstated',
  migrationStarted: 'Migration Started',
  migrationCompleted: 'Migration Completed',
  migrationFailed: 'Migration Failed',
  circuitOpened: 'Circuit Opened',
  circuitClosed: 'Circuit Closed',
} as const;

export type NodeLostEventType = (typeof NodeLostEvents)[keyof typeof NodeLostEvents];
export type DecisionEventType = (typeof DecisionEvents)[keyof typeof DecisionEvents];
