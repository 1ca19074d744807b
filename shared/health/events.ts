/**
 * The health events a gateway puts on the bus (source `streamheal.gateway`), one detail-type
 * per kind of state transition. Sent on transitions, not on every tick; `detail.node` names
 * the gateway in every one.
 */
export const HealthEvents = {
  /** The gateway listens (`detail.url`) / has stopped. */
  gatewayStarted: 'Gateway Started',
  gatewayStopped: 'Gateway Stopped',
  /** Sessions that crossed into "degraded" (L2: three missed heartbeats) since the last report. */
  connectionsDegraded: 'Connections Degraded',
  /** Degraded sessions that answered again. */
  connectionsRecovered: 'Connections Recovered',
  /** Connections the kernel saw close (CLOSE / CLOSE_WAIT) with no application error, per window. */
  flashCuts: 'Flash Cuts',
  /** Connections whose writes backed up, with the cause (slow_client, network, process). */
  writeBlocked: 'Write Blocked',
  /** A node-level condition began (CPU or event loop over threshold for its duration). */
  nodeOverloaded: 'Node Overloaded',
  nodeRecovered: 'Node Recovered',
  /** The delivery canary missed its deadline, or recovered. */
  canaryFailing: 'Delivery Canary Failing',
  canaryRecovered: 'Delivery Canary Recovered',
} as const;

export type HealthEventType = (typeof HealthEvents)[keyof typeof HealthEvents];
