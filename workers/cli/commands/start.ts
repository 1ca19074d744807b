/**
 * `streamheal start`: the local cluster in the foreground until SIGINT / SIGTERM, on the
 * embedded store (default), an existing etcd cluster (`--store etcd --etcd URLS`, with
 * orchestrators) or DynamoDB tables (`--store dynamodb`).
 */
import { createLogger } from '../../../shared/telemetry/logger.js';
import { initTracing, shutdownTracing } from '../../../shared/telemetry/tracing.js';
import type { LevelWithSilent } from 'pino';
import {
  CLUSTER_DEFAULTS,
  ClusterConfigError,
  LocalCluster,
  describeCluster,
} from '../../control/cluster.js';
import {
  BackendConfigError,
  backendConfigFromEnv,
  type BackendConfig,
  type StoreKind,
} from '../../backends.js';
import { CliError, ExitCodes, integerOption, parse, UsageError, type Command } from '../args.js';

/** The bus each store runs with in a local cluster (the control process routes in-process). */
const CLUSTER_BUS = { memory: 'inprocess', etcd: 'etcd', dynamodb: 'inprocess' } as const;

export const start: Command = {
  summary: 'run the local cluster: a control process and 3 gateways (embedded, etcd or DynamoDB)',
  help: `Usage: streamheal start [options]

Runs the local cluster in the foreground: one control process holding the embedded store and
event bus, and gateway processes kept running by a supervisor (a gateway that exits is started
again on the same port). Prints the endpoints and the publish key when everything is ready and
writes a cluster file so that \`status\`, \`publish\` and \`tail\` need no flags.
Ctrl-C (SIGINT) or SIGTERM stops everything.

Options:
  --gateways N         number of gateways (default ${CLUSTER_DEFAULTS.gateways})
  --port-base PORT     port of gateway-1; gateway-i listens on PORT+i-1 (default ${CLUSTER_DEFAULTS.portBase})
  --control-port PORT  port of the control server (default ${CLUSTER_DEFAULTS.controlPort})
  --host HOST          address to listen on (default ${CLUSTER_DEFAULTS.host})
  --store STORE        memory (embedded in the control process, the default), etcd or dynamodb
                       (default $STREAMHEAL_STORE, else memory)
  --etcd URLS          etcd client URLs, comma-separated (implies --store etcd; default
                       $STREAMHEAL_ETCD_ENDPOINTS), e.g. http://127.0.0.1:2379,http://127.0.0.1:2381
  --etcd-prefix PREFIX key prefix in etcd (default $STREAMHEAL_ETCD_PREFIX, else streamheal/)
  --orchestrators N    orchestrator processes with etcd (default 2; one leads, the others stand
                       by); 0 runs the functions in the control process instead
  --orchestrator-port PORT  port of orchestrator-1's status server (default control port + 1)
  --create-tables      with dynamodb: create missing tables first (LocalStack, first runs)
  -h, --help           show this help

With etcd the gateways and orchestrators use etcd directly (docs/self-hosted.md); with DynamoDB
the gateways use the tables directly and the control process's event bus over the control link
(AWS_ENDPOINT_URL etc. as for any AWS client, docs/localstack.md).

Environment:
  STREAMHEAL_PUBLISH_KEY     bearer key of POST /v1/publish (generated when unset)
  STREAMHEAL_CLUSTER_SECRET  control link secret and resume-token key (generated when unset)
  STREAMHEAL_CLUSTER_FILE    cluster file (default $TMPDIR/streamheal/cluster.json)
  STREAMHEAL_LOG_LEVEL       trace | debug | info | warn | error | silent (default info)
  STREAMHEAL_ETCD_*, STREAMHEAL_DYNAMODB_*  store settings (see \`streamheal gateway --help\`)
  Other STREAMHEAL_* gateway settings are passed on to the gateways (see \`streamheal gateway --help\`).
`,
  async run(argv) {
    const { values, positionals } = parse('start', argv, {
      gateways: { type: 'string' },
      'port-base': { type: 'string' },
      'control-port': { type: 'string' },
      host: { type: 'string' },
      store: { type: 'string' },
      etcd: { type: 'string' },
      'etcd-prefix': { type: 'string' },
      orchestrators: { type: 'string' },
      'orchestrator-port': { type: 'string' },
      'create-tables': { type: 'boolean' },
    });
    if (values.help) {
      process.stdout.write(start.help);
      return ExitCodes.ok;
    }
    if (positionals.length)
      throw new CliError(`unexpected argument ${positionals[0]}`, ExitCodes.usage);
    const level = (process.env.STREAMHEAL_LOG_LEVEL || 'info') as LevelWithSilent;
    const logger = createLogger('control', level);
    initTracing('streamheal-control');

    const backends = clusterBackends({
      store: values.store as string | undefined,
      etcd: values.etcd as string | undefined,
      etcdPrefix: values['etcd-prefix'] as string | undefined,
      createTables: values['create-tables'] === true,
    });
    const orchestrators = integerOption(
      'orchestrators',
      values.orchestrators as string | undefined,
      0,
      16,
    );
    if (orchestrators !== undefined && backends.store !== 'etcd') {
      throw new UsageError('--orchestrators needs --store etcd', 'start');
    }
    let cluster: LocalCluster;
    try {
      cluster = new LocalCluster({
        backends,
        orchestrators,
        orchestratorPortBase: integerOption(
          'orchestrator-port',
          values['orchestrator-port'] as string | undefined,
          1,
          65535,
        ),
        logger,
        host: values.host as string | undefined,
        gateways: integerOption('gateways', values.gateways as string | undefined, 1, 1000),
        portBase: integerOption('port-base', values['port-base'] as string | undefined, 1, 65535),
        controlPort: integerOption(
          'control-port',
          values['control-port'] as string | undefined,
          1,
          65535,
        ),
      });
    } catch (error) {
      if (error instanceof ClusterConfigError) throw new CliError(error.message, ExitCodes.usage);
      throw error;
    }

    let signals = 0;
    let stopRequested = () => {};
    const stopSignal = new Promise<void>((resolve) => (stopRequested = resolve));
    const onSignal = (signal: NodeJS.Signals) => {
      if (++signals > 1) {
        // The exit hooks SIGTERM the gateways and remove the cluster file.
        logger.warn({ signal }, `${signal} again: exiting without waiting for the gateways`);
        process.exit(ExitCodes.failure);
      }
      logger.info({ signal }, `${signal}: stopping the cluster`);
      stopRequested();
      void cluster.stop();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);

    try {
      await cluster.start();
    } catch (error) {
      if (signals > 0) return ExitCodes.ok; // stopped by a signal while starting
      throw new CliError(`the cluster did not start: ${(error as Error).message}`);
    }
    process.stdout.write(`${describeCluster(cluster)}\n`);
    if (backends.etcd) {
      process.stdout.write(
        `  store         etcd at ${backends.etcd.endpoints.join(',')} (prefix ${backends.etcd.prefix}), ` +
          `${cluster.orchestrators ? `${cluster.orchestrators.status().length} orchestrators` : 'functions in the control process'}\n`,
      );
    } else if (backends.store === 'dynamodb') {
      process.stdout.write('  store         DynamoDB (docs/dynamodb.md)\n');
    }
    await stopSignal;
    await cluster.stop();
    await shutdownTracing();
    return ExitCodes.ok;
  },
};

/**
 * The store and bus of the cluster: flags over the environment. The bus follows the store (a
 * local cluster's control process routes events itself, or the orchestrators do on etcd).
 */
export function clusterBackends(
  flags: { store?: string; etcd?: string; etcdPrefix?: string; createTables?: boolean },
  env: NodeJS.ProcessEnv = process.env,
): BackendConfig {
  const store = flags.store ?? (flags.etcd ? 'etcd' : env.STREAMHEAL_STORE || 'memory');
  if (!(store in CLUSTER_BUS)) {
    throw new UsageError(
      `--store must be memory, etcd or dynamodb, not ${JSON.stringify(store)}` +
        (flags.store === undefined ? ' (from STREAMHEAL_STORE)' : ''),
      'start',
    );
  }
  if (flags.etcd && store !== 'etcd') throw new UsageError('--etcd needs --store etcd', 'start');
  if (flags.createTables && store !== 'dynamodb') {
    throw new UsageError('--create-tables needs --store dynamodb', 'start');
  }
  const merged: NodeJS.ProcessEnv = {
    ...env,
    STREAMHEAL_STORE: store,
    STREAMHEAL_BUS: CLUSTER_BUS[store as StoreKind & keyof typeof CLUSTER_BUS],
    ...(flags.etcd ? { STREAMHEAL_ETCD_ENDPOINTS: flags.etcd } : {}),
    ...(flags.etcdPrefix ? { STREAMHEAL_ETCD_PREFIX: flags.etcdPrefix } : {}),
    ...(flags.createTables ? { STREAMHEAL_DYNAMODB_CREATE_TABLES: 'true' } : {}),
  };
  try {
    return backendConfigFromEnv(merged);
  } catch (error) {
    if (error instanceof BackendConfigError) {
      const hint =
        store === 'etcd' && !merged.STREAMHEAL_ETCD_ENDPOINTS
          ? ' (pass --etcd http://127.0.0.1:2379 or set STREAMHEAL_ETCD_ENDPOINTS)'
          : '';
      throw new UsageError(`${error.message}${hint}`, 'start');
    }
    throw error;
  }
}
