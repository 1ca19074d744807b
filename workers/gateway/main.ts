/**
 * Gateway process entry: configuration from the environment (see config.ts), the store and bus
 * it names, and a clean stop on SIGTERM / SIGINT.
 */
import { randomBytes } from 'node:crypto';
import { InProcessBus } from '../../shared/bus/InProcessBus.js';
import type { EventBus } from '../../shared/bus/EventBus.js';
import { LinkClient } from '../../shared/link/LinkClient.js';
import { RemoteBus } from '../../shared/link/RemoteBus.js';
import { RemoteStore } from '../../shared/link/RemoteStore.js';
import { MemoryStore } from '../../shared/store/MemoryStore.js';
import type { StateStore } from '../../shared/store/StateStore.js';
import { createLogger } from '../../shared/telemetry/logger.js';
import { initTracing, shutdownTracing } from '../../shared/telemetry/tracing.js';
import { keyRingFromSecret } from '../../shared/tokens.js';
import { GatewayEnv } from './config.js';
import { startGateway } from './Gateway.js';

const env = GatewayEnv.parse(process.env);
const logger = createLogger('gateway', env.STREAMHEAL_LOG_LEVEL).child({
  node: env.STREAMHEAL_NODE_ID,
});
initTracing(`streamheal-gateway`);

let store: StateStore;
let bus: EventBus;
let link: LinkClient | undefined;
if (env.STREAMHEAL_STORE === 'link') {
  if (!env.STREAMHEAL_CLUSTER_SECRET)
    throw new Error('STREAMHEAL_CLUSTER_SECRET is required with STREAMHEAL_STORE=link');
  link = new LinkClient({
    url: env.STREAMHEAL_CONTROL_URL,
    secret: env.STREAMHEAL_CLUSTER_SECRET,
    logger,
  });
  store = new RemoteStore(link);
  bus = new RemoteBus(link);
} else {
  store = new MemoryStore({
    limits: {
      maxCount: env.STREAMHEAL_HISTORY_MAX_COUNT,
      maxAgeMs: env.STREAMHEAL_HISTORY_MAX_AGE_MS,
    },
  });
  bus = new InProcessBus();
}

const generated = (what: string) => {
  const value = randomBytes(24).toString('base64url');
  logger.warn(`${what} not set; generated one for this process`);
  return value;
};
const publishKey = env.STREAMHEAL_PUBLISH_KEY ?? generated('STREAMHEAL_PUBLISH_KEY');
const gateway = await startGateway({
  nodeId: env.STREAMHEAL_NODE_ID,
  host: env.STREAMHEAL_HOST,
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
  await Promise.all([store.close(), bus.close()]);
  link?.close();
  await shutdownTracing();
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
