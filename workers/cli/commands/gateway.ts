/** `streamheal gateway`: one gateway in this process, configured by the environment. */
import { errorCode } from '../../../shared/errors.js';
import { BACKEND_ENV_HELP } from '../../backends.js';
import { CliError, ExitCodes, UsageError, parse, type Command } from '../args.js';

export const gateway: Command = {
  summary: 'run one gateway in this process (configured by STREAMHEAL_* variables)',
  help: `Usage: streamheal gateway

Runs one gateway in this process until SIGINT / SIGTERM. Configured by the environment:
  STREAMHEAL_NODE_ID            node id (default gateway-1)
  STREAMHEAL_PUBLIC_URL         the cluster's public endpoint behind a load balancer (moves redirect there)
  STREAMHEAL_HOST, STREAMHEAL_PORT   address to listen on (default 127.0.0.1:8081)
  STREAMHEAL_CLUSTER_SECRET     resume-token key, and control link secret (required with link)
  STREAMHEAL_PUBLISH_KEY        bearer key of POST /v1/publish (generated and logged when unset)
  STREAMHEAL_CORS_ORIGINS       browser origins allowed, comma-separated (* for any)
  STREAMHEAL_MAX_FRAME_BYTES, STREAMHEAL_MAX_CHANNELS, STREAMHEAL_REQUESTS_PER_SECOND,
  STREAMHEAL_MAX_BUFFERED_BYTES, STREAMHEAL_SSE_RETRY_MS,
  STREAMHEAL_HISTORY_MAX_COUNT, STREAMHEAL_HISTORY_MAX_AGE_MS, STREAMHEAL_LOG_LEVEL
  Failure detection: STREAMHEAL_HEARTBEAT_INTERVAL_MS (500; 0 = off), STREAMHEAL_HEARTBEAT_PROBE_MS (125),
  STREAMHEAL_PING_TIMEOUT_MS (500), STREAMHEAL_HEARTBEAT_MISSES (3), STREAMHEAL_HEARTBEAT_SWEEP_MS (50),
  STREAMHEAL_PHI_THRESHOLD (8),
  STREAMHEAL_TCP_KEEPALIVE_MS (1000), STREAMHEAL_TCP_USER_TIMEOUT_MS (5000), STREAMHEAL_KERNEL_SWEEP_MS (500),
  STREAMHEAL_CANARY_INTERVAL_MS (1000)

Store and bus (memory: a single node with its own store, the default; link: the store and bus
of a control process; etcd; dynamodb):
${BACKEND_ENV_HELP}
Endpoints: GET /v1/ws (WebSocket), GET /v1/sse?channel=…, POST /v1/publish, GET /metrics,
GET /healthz, GET /readyz.
`,
  async run(argv) {
    const { values, positionals } = parse('gateway', argv, {});
    if (values.help) {
      process.stdout.write(gateway.help);
      return ExitCodes.ok;
    }
    if (positionals.length)
      throw new UsageError(`unexpected argument ${positionals[0]}`, 'gateway');
    // The gateway entry configures itself from the environment and handles its own signals.
    try {
      await import('../../gateway/main.js');
    } catch (error) {
      if (errorCode(error) === 'invalid_config') {
        throw new CliError(`invalid gateway configuration: ${(error as Error).message}`);
      }
      const issues = (error as { issues?: { path: PropertyKey[]; message: string }[] }).issues;
      if (!issues) throw error;
      const list = issues.map((issue) => `${issue.path.map(String).join('.')}: ${issue.message}`);
      throw new CliError(`invalid gateway configuration: ${list.join('; ')}`);
    }
    return new Promise<number>(() => undefined);
  },
};
