/** Gateway metrics in Prometheus text, one registry per gateway (tests run several in one process). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { PoolStats } from '../../shared/pool/ConnectionPool.js';

export function createGatewayMetrics(nodeId: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ node: nodeId });
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    /** The seed's error counter: anything that kept a message from a client or refused a request. */
    pushErrors: new Counter({
      name: 'stream_push_errors_total',
      help: 'Push errors by reason (refused requests, slow consumers, store failures)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    connections: new Gauge({
      name: 'streamheal_connections',
      help: 'Open client connections by transport',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    channels: new Gauge({
      name: 'streamheal_channels',
      help: 'Channels with a feed on this gateway',
      registers: [registry],
    }),
    published: new Counter({
      name: 'streamheal_messages_published_total',
      help: 'Messages accepted by POST /v1/publish on this gateway',
      registers: [registry],
    }),
    delivered: new Counter({
      name: 'streamheal_messages_delivered_total',
      help: 'Messages written to client connections',
      registers: [registry],
    }),
    publishDuration: new Histogram({
      name: 'streamheal_publish_duration_seconds',
      help: 'Time from publish request to stored position',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    resumes: new Counter({
      name: 'streamheal_resumes_total',
      help: 'Resume requests by result',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    // Fast path, write-block diagnosis and scores (seed 2.5, 3.2, 3.3)
    fastPathActions: new Counter({
      name: 'streamheal_fast_path_actions_total',
      help: 'Decision-tree actions taken on connections (break, queue, retry)',
      labelNames: ['action'] as const,
      registers: [registry],
    }),
    writeBlocked: new Gauge({
      name: 'streamheal_write_blocked_connections',
      help: 'Connections whose writes are backed up, by diagnosed cause, at the last fast-path tick',
      labelNames: ['cause'] as const,
      registers: [registry],
    }),
    migrations: new Counter({
      name: 'streamheal_migrations_total',
      help: 'Sessions asked to move (Migrate or Drain), by outcome: moved, rolled_back, not_found',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    migrationDuration: new Histogram({
      name: 'streamheal_migration_duration_seconds',
      help: 'Redirect sent to the old connection closed, for sessions that moved (seed 4.4 P99)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    synRetransmitRate: new Gauge({
      name: 'streamheal_syn_retransmit_rate',
      help: "Retransmitted SYNs and SYN-ACKs per connection opened on this host over the last scoring interval (the seed's retrans_syn / syn_init; /proc/net counters)",
      registers: [registry],
    }),
    connectionHealthScore: new Gauge({
      name: 'connection_health_score',
      help: "Connection health score 0-100 (the seed's RTT stability, FIN/RST and SYN retransmit blend): min (quantile 0), 10th percentile and median over this node's connections",
      labelNames: ['quantile'] as const,
      registers: [registry],
    }),
    nodeHealthScore: new Gauge({
      name: 'streamheal_node_health_score',
      help: 'Node health score 0-100 from its connections, CPU and event loop',
      registers: [registry],
    }),
    processCpu: new Gauge({
      name: 'streamheal_process_cpu_utilisation',
      help: 'CPU time used by this process per second of wall time (1 = one core)',
      registers: [registry],
    }),
    eventLoopDelay: new Gauge({
      name: 'streamheal_event_loop_delay_p99_seconds',
      help: 'Event-loop delay, 99th percentile over the last sample interval',
      registers: [registry],
    }),
    eventLoopUtilisation: new Gauge({
      name: 'streamheal_event_loop_utilisation',
      help: 'Share of the last sample interval the event loop was busy',
      registers: [registry],
    }),
    resumeLatency: new Histogram({
      name: 'streamheal_resume_duration_seconds',
      help: 'From a resume request to its answer, every missed message written (client resume latency at the gateway)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    canaryLatency: new Histogram({
      name: 'streamheal_canary_delivery_seconds',
      help: 'Delivery canary: publish through POST /v1/publish to delivery on this gateway',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2],
      registers: [registry],
    }),
    canaryMisses: new Counter({
      name: 'streamheal_canary_misses_total',
      help: 'Delivery canary probes not delivered within their deadline',
      registers: [registry],
    }),
    kernelProbesAvailable: new Gauge({
      name: 'streamheal_kernel_probes_available',
      help: '1 when the native TCP_INFO probes are loaded, 0 when the gateway runs with application probes only',
      registers: [registry],
    }),
    flashCuts: new Counter({
      name: 'streamheal_flash_cuts_total',
      help: 'Connections the kernel saw closed (CLOSE / CLOSE_WAIT or gone) before the application saw any error',
      registers: [registry],
    }),
    // Application heartbeat (seed 3.1)
    heartbeatPings: new Counter({
      name: 'streamheal_heartbeat_pings_sent_total',
      help: 'Heartbeat pings the gateway sent to WebSocket clients (scheduled and L1 resends)',
      registers: [registry],
    }),
    heartbeatClientPings: new Counter({
      name: 'streamheal_heartbeat_client_pings_total',
      help: 'Heartbeat pings from clients, each answered with a pong',
      registers: [registry],
    }),
    heartbeatTimeouts: new Counter({
      name: 'streamheal_heartbeat_timeouts_total',
      help: 'L1: pings without a pong within the ping timeout (each one resent at once)',
      registers: [registry],
    }),
    heartbeatDegraded: new Counter({
      name: 'streamheal_heartbeat_degraded_total',
      help: 'L2: sessions declared degraded after consecutive L1 timeouts, then closed as dead',
      registers: [registry],
    }),
    heartbeatLate: new Gauge({
      name: 'streamheal_heartbeat_late_sessions',
      help: 'Sessions with at least one L1 timeout in a row, at the last sweep',
      registers: [registry],
    }),
    heartbeatSuspect: new Gauge({
      name: 'streamheal_heartbeat_phi_suspect_sessions',
      help: 'Sessions whose phi-accrual suspicion level is at or above the threshold, at the last sweep',
      registers: [registry],
    }),
    heartbeatMaxPhi: new Gauge({
      name: 'streamheal_heartbeat_phi_max',
      help: 'Highest phi-accrual suspicion level over all sessions, at the last sweep',
      registers: [registry],
    }),
    heartbeatRtt: new Histogram({
      name: 'streamheal_heartbeat_rtt_seconds',
      help: 'Heartbeat round trip: pong arrival minus the echoed ping timestamp',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    heartbeatSweep: new Histogram({
      name: 'streamheal_heartbeat_sweep_duration_seconds',
      help: 'Time one tick of the heartbeat sweep (one lane of sessions) took',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05],
      registers: [registry],
    }),
  };
}

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;

/**
 * The control link's connection pool (docs/pools.md) on a gateway's /metrics, read on each
 * scrape from `stats` (LinkClient.poolStats).
 */
export function registerLinkPoolMetrics(registry: Registry, stats: () => PoolStats): void {
  new Gauge({
    name: 'streamheal_link_pool_connections',
    help: 'Control link connections by state',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const { open, opening } = stats();
      this.set({ state: 'open' }, open);
      this.set({ state: 'opening' }, opening);
    },
  });
  const gauge = (name: string, help: string, read: (s: PoolStats) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read(stats()));
      },
    });
  gauge(
    'streamheal_link_pool_requests_in_flight',
    'Requests in flight on the control link',
    (s) => s.inFlight,
  );
  gauge(
    'streamheal_link_pool_busy_ratio',
    'In flight / (open connections x capacity)',
    (s) => s.busyShare,
  );
  gauge(
    'streamheal_link_pool_scale_ups',
    'Times the pool grew (seed 2.2 triggers), since start',
    (s) => s.scaleUps,
  );
  gauge(
    'streamheal_link_pool_reclaimed',
    'Idle connections closed by the pool, since start',
    (s) => s.reclaimed,
  );
  gauge('streamheal_link_pool_connections_lost', 'Connections lost, since start', (s) => s.lost);
  gauge(
    'streamheal_link_pool_connect_failures',
    'Times the pool gave up connecting (5 attempts), since start',
    (s) => s.connectFailures,
  );
}
