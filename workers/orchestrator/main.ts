/**
 * Orchestrator process entry (`streamheal orchestrator`, or `node dist/workers/orchestrator/main.js`):
 * configuration from the environment (config.ts and workers/backends.ts; the store and bus must
 * be etcd), the status server, the functions, leader election; SIGTERM / SIGINT resign (a
 * standby takes over at once) and exit.
 */
import type { Server } from 'node:http';
import { alertTargetsFromEnv } from '../../shared/control/alerts/targets.js';
import { createLogger } from '../../shared/telemetry/logger.js';
import { initTracing, shutdownTracing } from '../../shared/telemetry/tracing.js';
import { backendConfigFromEnv, etcdConnectionOptions, openBackends } from '../backends.js';
import { OrchestratorEnv } from './config.js';
import { controlFunctions } from './functions.js';
import { serveStatus } from './http.js';
import { Orchestrator } from './Orchestrator.js';

const env = OrchestratorEnv.parse(process.env);
const config = backendConfigFromEnv(process.env, {
  store: 'etcd',
  allowedStores: ['etcd'],
  allowedBuses: ['etcd'],
  purpose: 'by the orchestrator (it elects its leader on etcd and reads the etcd bus)',
});
// `orchestrator`, not `node`: the functions log the gateway a decision is about as `node`.
const logger = createLogger('orchestrator', env.STREAMHEAL_LOG_LEVEL).child({
  orchestrator: env.STREAMHEAL_NODE_ID,
});
initTracing('streamheal-orchestrator');

const backends = openBackends(config, { logger });
let orchestrator: Orchestrator | undefined;
let server: Server | undefined;
let stopping = false;

async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'stopping');
  clearInterval(redelivery);
  await orchestrator?.close().catch((error: unknown) => logger.warn({ err: error }, 'close'));
  await backends.close();
  server?.closeAllConnections();
  server?.close();
  await shutdownTracing();
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));

const functions = controlFunctions({
  store: backends.store,
  bus: backends.bus,
  logger,
  alertTargets: alertTargetsFromEnv(process.env),
  ...(env.STREAMHEAL_POLICY_NAME ? { policyName: env.STREAMHEAL_POLICY_NAME } : {}),
  inProgressMs: env.STREAMHEAL_ORCHESTRATOR_IN_PROGRESS_MS,
});
const status = await serveStatus(
  () => orchestrator?.status(),
  env.STREAMHEAL_HOST,
  env.STREAMHEAL_PORT,
);
server = status.server;
orchestrator = new Orchestrator({
  name: env.STREAMHEAL_NODE_ID,
  etcd: etcdConnectionOptions(config.etcd!),
  prefix: config.etcd!.prefix,
  bus: backends.bus,
  handlers: functions.handlers,
  leaseMs: env.STREAMHEAL_ORCHESTRATOR_LEASE_MS,
  checkpointEveryMs: env.STREAMHEAL_ORCHESTRATOR_CHECKPOINT_MS,
  url: status.url,
  logger,
});
// Dead-lettered alerts are sent again by the leader only.
const redelivery = setInterval(() => {
  if (!functions.hasAlertTargets || orchestrator?.status().role !== 'leader') return;
  functions
    .redeliver()
    .catch((error: unknown) => logger.error({ err: error }, 'alert redelivery failed'));
}, env.STREAMHEAL_ALERT_REDELIVER_MS);
redelivery.unref();
orchestrator.start();
logger.info(
  { url: status.url, etcd: config.etcd!.endpoints, prefix: config.etcd!.prefix },
  `orchestrator ${env.STREAMHEAL_NODE_ID} campaigning; status on ${status.url}`,
);
