/**
 * Orchestrator process entry (`streamheal orchestrator`, or `node dist/workers/orchestrator/main.js`):
 * configuration from the environment (config.ts and workers/backends.ts; the store and bus must
 * be etcd), the status server, the functions, leader election; SIGTERM / SIGINT resign (a
 * standby takes over at once) and exit.
 */
import type { Server } from 'node:http';
import { EventBridgeBus } from '../../shared/bus/EventBridgeBus.js';
import { alertTargetsFromEnv } from '../../shared/control/alerts/targets.js';
import { GatewayMoveExecutor } from '../../shared/control/moves.js';
import { createLogger } from '../../shared/telemetry/logger.js';
import { initTracing, shutdownTracing } from '../../shared/telemetry/tracing.js';
import { keyRingFromSecret } from '../../shared/tokens.js';
import { backendConfigFromEnv, etcdConnectionOptions, openBackends } from '../backends.js';
import { OrchestratorEnv } from './config.js';
import { ForwardingBus } from './forward.js';
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
// Set once each is made; a signal may come before.
const running: { orchestrator?: Orchestrator; server?: Server; redelivery?: NodeJS.Timeout } = {};
let stopping = false;

async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'stopping');
  clearInterval(running.redelivery);
  await running.orchestrator
    ?.close()
    .catch((error: unknown) => logger.warn({ err: error }, 'close'));
  await backends.close();
  if (decisionBus !== backends.bus) await decisionBus.close();
  running.server?.closeAllConnections();
  running.server?.close();
  await shutdownTracing();
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));

// Decisions also to EventBridge when a bus is named (infra's etcd shape on AWS).
const decisionBus = env.STREAMHEAL_EVENT_BUS_NAME
  ? new ForwardingBus(
      backends.bus,
      new EventBridgeBus({
        eventBusName: env.STREAMHEAL_EVENT_BUS_NAME,
        onDrop: (drop) =>
          logger.warn({ reason: drop.reason, events: drop.events.length }, 'decisions dropped'),
      }),
      logger,
    )
  : backends.bus;
// Moves go through the gateways' control services, with redirect tokens from the cluster's key
// ring; without one, move requests are only recorded (shared/control/moves.ts).
const tokenKeys = process.env.STREAMHEAL_TOKEN_KEYS || process.env.STREAMHEAL_CLUSTER_SECRET;
if (!tokenKeys)
  logger.warn('no STREAMHEAL_TOKEN_KEYS or STREAMHEAL_CLUSTER_SECRET: moves are only recorded');
const functions = controlFunctions({
  store: backends.store,
  bus: decisionBus,
  logger,
  ...(tokenKeys
    ? { moves: new GatewayMoveExecutor(backends.store, keyRingFromSecret(tokenKeys)) }
    : {}),
  alertTargets: alertTargetsFromEnv(process.env),
  ...(env.STREAMHEAL_POLICY_NAME ? { policyName: env.STREAMHEAL_POLICY_NAME } : {}),
  inProgressMs: env.STREAMHEAL_ORCHESTRATOR_IN_PROGRESS_MS,
});
const status = await serveStatus(
  () => running.orchestrator?.status(),
  env.STREAMHEAL_HOST,
  env.STREAMHEAL_PORT,
);
running.server = status.server;
const orchestrator = new Orchestrator({
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
running.redelivery = setInterval(() => {
  if (!functions.hasAlertTargets || orchestrator.status().role !== 'leader') return;
  functions
    .redeliver()
    .catch((error: unknown) => logger.error({ err: error }, 'alert redelivery failed'));
}, env.STREAMHEAL_ALERT_REDELIVER_MS);
running.redelivery.unref();
running.orchestrator = orchestrator;
orchestrator.start();
logger.info(
  { url: status.url, etcd: config.etcd!.endpoints, prefix: config.etcd!.prefix },
  `orchestrator ${env.STREAMHEAL_NODE_ID} campaigning; status on ${status.url}`,
);
