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
 * What the control plane decided (seed 4.4's decision events), published by decide and nodeLost
 * (shared/control) and delivered to webhooks by alerts. Each carries `detail.node`, `detail.decision`,
 * `detail.message` (the log line) and `detail.trigger` (the event it was based on); see
 * docs/control-plane.md for every field.
 */
export const DecisionEvents = {
  /** A node was taken out of rotation by a rule (isolated, or marked unhealthy). */
  nodeIsolated: 'Node Isolated',
  /** An isolated node went back into rotation (its rule stopped matching, `autoRejoin`). */
  nodeReinstated: 'Node Reinstated',
  /** A rule asked to isolate a node and a cascade guard refused (max share or panic threshold). */
  isolationSuppressed: 'Node Isolation Suppressed',
  /** A gateway is gone (task stopped, process exited, lease expired); its sessions resume elsewhere. */
  nodeDeclaredLost: 'Node Declared Lost',
  /** Sessions of an isolated node were handed to the move executor. */
  migrationStarted: 'Migration Started',
  migrationCompleted: 'Migration Completed',
  /** Fewer sessions moved than asked, no target was eligible, or the executor failed. */
  migrationFailed: 'Migration Failed',
  circuitOpened: 'Circuit Opened',
  circuitClosed: 'Circuit Closed',
} as const;

export type NodeLostEventType = (typeof NodeLostEvents)[keyof typeof NodeLostEvents];
export type DecisionEventType = (typeof DecisionEvents)[keyof typeof DecisionEvents];
