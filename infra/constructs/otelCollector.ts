/**
 * Configuration of the optional OpenTelemetry collector beside the gateway (AWS Distro for
 * OpenTelemetry): it takes the gateway's spans over OTLP on loopback and sends them to X-Ray,
 * and scrapes the gateway's Prometheus `/metrics` into CloudWatch as embedded metric format
 * logs (namespace `Streamheal/Gateway`). A pure function of ports and names, so tests read it.
 */
import { stringify } from 'yaml';

export interface CollectorConfigInput {
  /** The gateway's HTTP port inside the task (its /metrics). */
  gatewayHttpPort: number;
  /** CloudWatch log group the EMF records go to. */
  metricsLogGroupName: string;
  /** @default 'Streamheal/Gateway' */
  namespace?: string;
  /** @default 30 */
  scrapeIntervalSeconds?: number;
}

/** OTLP/HTTP endpoint the gateway exports spans to (OTEL_EXPORTER_OTLP_ENDPOINT). */
export const COLLECTOR_OTLP_HTTP = 'http://127.0.0.1:4318';

/** Gateway metrics kept in CloudWatch (the rest stay in /metrics only). */
export const EXPORTED_GATEWAY_METRICS = [
  'streamheal_connections',
  'streamheal_channels',
  'streamheal_write_blocked_connections',
  'streamheal_node_health_score',
  'streamheal_process_cpu_utilisation',
  'streamheal_event_loop_delay_p99_seconds',
  'streamheal_kernel_probes_available',
  'streamheal_migrations_total',
  'streamheal_resumes_total',
  'streamheal_canary_misses_total',
  'streamheal_flash_cuts_total',
  'streamheal_heartbeat_timeouts_total',
];

export function collectorConfig(input: CollectorConfigInput): string {
  const namespace = input.namespace ?? 'Streamheal/Gateway';
  return stringify({
    receivers: {
      otlp: {
        protocols: {
          grpc: { endpoint: '127.0.0.1:4317' },
          http: { endpoint: '127.0.0.1:4318' },
        },
      },
      prometheus: {
        config: {
          scrape_configs: [
            {
              job_name: 'streamheal-gateway',
              scrape_interval: `${input.scrapeIntervalSeconds ?? 30}s`,
              metrics_path: '/metrics',
              static_configs: [{ targets: [`127.0.0.1:${input.gatewayHttpPort}`] }],
            },
          ],
        },
      },
    },
    processors: { batch: {} },
    exporters: {
      awsxray: {},
      awsemf: {
        namespace,
        log_group_name: input.metricsLogGroupName,
        dimension_rollup_option: 'NoDimensionRollup',
        metric_declarations: [
          { dimensions: [['node']], metric_name_selectors: EXPORTED_GATEWAY_METRICS },
        ],
      },
    },
    service: {
      pipelines: {
        traces: { receivers: ['otlp'], processors: ['batch'], exporters: ['awsxray'] },
        metrics: { receivers: ['prometheus'], processors: ['batch'], exporters: ['awsemf'] },
      },
    },
  });
}
