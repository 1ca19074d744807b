/** `streamheal start`: the local cluster in the foreground until SIGINT / SIGTERM. */
import { createLogger } from '../../../shared/telemetry/logger.js';
import { initTracing, shutdownTracing } from '../../../shared/telemetry/tracing.js';
import type { LevelWithSilent } from 'pino';
import {
  CLUSTER_DEFAULTS,
  ClusterConfigError,
  LocalCluster,
  describeCluster,
} from '../../control/cluster.js';
import { CliError, ExitCodes, integerOption, parse, type Command } from '../args.js';

export const start: Command = {
  summary: 'run the local cluster: a control process and 3 gateways',
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
  -h, --help           show this help

Environment:
  STREAMHEAL_PUBLISH_KEY     bearer key of POST /v1/publish (generated when unset)
  STREAMHEAL_CLUSTER_SECRET  control link secret and resume-token key (generated when unset)
  STREAMHEAL_CLUSTER_FILE    cluster file (default $TMPDIR/streamheal/cluster.json)
  STREAMHEAL_LOG_LEVEL       trace | debug | info | warn | error | silent (default info)
  Other STREAMHEAL_* gateway settings are passed on to the gateways (see \`streamheal gateway --help\`).
`,
  async run(argv) {
    const { values, positionals } = parse('start', argv, {
      gateways: { type: 'string' },
      'port-base': { type: 'string' },
      'control-port': { type: 'string' },
      host: { type: 'string' },
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

    let cluster: LocalCluster;
    try {
      cluster = new LocalCluster({
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
    await stopSignal;
    await cluster.stop();
    await shutdownTracing();
    return ExitCodes.ok;
  },
};
