/**
 * Gateway process entry: configuration from the environment (see config.ts), the store and bus
 * it names, and a clean stop on SIGTERM / SIGINT.
 */
import { randomBytes } from 'node:crypto';
import { createLogger } from '../../shared/telemetry/logger.js';
import { initTracing, shutdownTracing } from '../../shared/telemetry/tracing.js';
import { keyRingFromSecret } from '../../shared/tokens.js';
import { backendConfigFromEnv, openBackends } from '../backends.js';
import { GatewayEnv } from './config.js';
import { gatewayIdentity } from './ecsIdentity.js';
import { startGateway } from './Gateway.js';
import { registerLinkPoolMetrics } from './metrics.js';

// STREAMHEAL_STORE is read with the other backend variables, by workers/backends.ts.
const env = GatewayEnv.omit({ STREAMHEAL_STORE: true }).parse(process.env);
// Node id, task ARN and advertised address (on ECS from the task metadata endpoint).
const identity = await gatewayIdentity(env).catch((error: unknown) => {
  createLogger('gateway', env.STREAMHEAL_LOG_LEVEL).fatal({ err: error }, String(error));
  process.exit(1);
});
const logger = createLogger('gateway', env.STREAMHEAL_LOG_LEVEL).child({
  node: identity.nodeId,
});
if (identity.ecs) logger.info({ ecs: identity.ecs }, 'ECS task identity');
initTracing(`streamheal-gateway`);

// Store and bus from STREAMHEAL_STORE / STREAMHEAL_BUS (workers/backends.ts).
const backends = openBackends(backendConfigFromEnv(process.env), { logger });
const { store, bus } = backends;
// Not awaited: a gateway whose store is away starts anyway and is not ready until it answers.
backends.ready().catch((error: unknown) => logger.error({ err: error }, 'store not reachable yet'));

const generated = (what: string) => {
  const value = randomBytes(24).toString('base64url');
  logger.warn(`${what} not set; generated one for this process`);
  return value;
};
const publishKey = env.STREAMHEAL_PUBLISH_KEY ?? generated('STREAMHEAL_PUBLISH_KEY');
const gateway = await startGateway({
  nodeId: identity.nodeId,
  host: env.STREAMHEAL_HOST,
  ...(identity.advertise ? { advertise: identity.advertise } : {}),
  ...(identity.taskArn ? { taskArn: identity.taskArn } : {}),
  port: env.STREAMHEAL_PORT,
  store,
  bus,
  keyRing: keyRingFromSecret(
    env.STREAMHEAL_CLUSTER_SECRET ?? generated('STREAMHEAL_CLUSTER_SECRET'),
  ),
  publishKey,
  corsOrigins: env.STREAMHEAL_CORS_ORIGINS,
  limits: {
    maxFrameBytes: env.STREAMHEAL_MAX_FRAME_BYTES,
    maxChannels: env.STREAMHEAL_MAX_CHANNELS,
    requestsPerSecond: env.STREAMHEAL_REQUESTS_PER_SECOND,
  },
  maxBufferedBytes: env.STREAMHEAL_MAX_BUFFERED_BYTES,
  sseRetryMs: env.STREAMHEAL_SSE_RETRY_MS,
  heartbeat: env.STREAMHEAL_HEARTBEAT_INTERVAL_MS > 0 && {
    intervalMs: env.STREAMHEAL_HEARTBEAT_INTERVAL_MS,
    probeMs: env.STREAMHEAL_HEARTBEAT_PROBE_MS,
    timeoutMs: env.STREAMHEAL_PING_TIMEOUT_MS,
    misses: env.STREAMHEAL_HEARTBEAT_MISSES,
    sweepMs: env.STREAMHEAL_HEARTBEAT_SWEEP_MS,
    phiThreshold: env.STREAMHEAL_PHI_THRESHOLD,
  },
  tcpKeepAliveMs: env.STREAMHEAL_TCP_KEEPALIVE_MS,
  ...(env.STREAMHEAL_CONTROL_PORT === undefined
    ? {}
    : { controlPort: env.STREAMHEAL_CONTROL_PORT }),
  drainMs: env.STREAMHEAL_DRAIN_MS,
  detection: {
    tcpUserTimeoutMs: env.STREAMHEAL_TCP_USER_TIMEOUT_MS,
    kernelSweepMs: env.STREAMHEAL_KERNEL_SWEEP_MS,
    canaryIntervalMs: env.STREAMHEAL_CANARY_INTERVAL_MS,
  },
  logger,
});
if (backends.link) {
  const link = backends.link;
  registerLinkPoolMetrics(gateway.metrics.registry, () => link.poolStats());
}
if (!env.STREAMHEAL_PUBLISH_KEY) logger.info({ publishKey }, 'publish key');

let stopping = false;
/**
 * SIGTERM (ECS, Kubernetes, the local supervisor's restart) drains first: sessions move to the
 * other gateways make-before-break within STREAMHEAL_DRAIN_MS, then the rest are closed. SIGINT
 * (Ctrl-C, the local supervisor stopping the whole cluster) closes at once: clients reconnect.
 */
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'stopping');
  if (signal === 'SIGTERM' && env.STREAMHEAL_DRAIN_MS > 0) await gateway.drain();
  await gateway.close();
  await backends.close();
  await shutdownTracing();
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
