/** `streamheal orchestrator`: one orchestrator in this process, configured by the environment. */
import { errorCode } from '../../../shared/errors.js';
import { CliError, ExitCodes, UsageError, parse, type Command } from '../args.js';

export const orchestrator: Command = {
  summary: 'run one orchestrator (self-hosted control plane on etcd) in this process',
  help: `Usage: streamheal orchestrator

Runs one orchestrator in this process until SIGINT / SIGTERM: the control-plane functions
(decide, nodeLost, alerts) on the etcd bus, by whichever orchestrator is elected leader; the
others stand by and take over when it goes (docs/self-hosted.md). SIGINT / SIGTERM resign at
once. Configured by the environment:
  STREAMHEAL_ETCD_ENDPOINTS      etcd client URLs, comma-separated (required)
  STREAMHEAL_ETCD_PREFIX         key prefix (default streamheal/); STREAMHEAL_ETCD_TIMEOUT_MS,
                                 STREAMHEAL_ETCD_USERNAME / _PASSWORD, STREAMHEAL_ETCD_CA_FILE / _CERT_FILE / _KEY_FILE
  STREAMHEAL_STORE, STREAMHEAL_BUS  etcd (the default; nothing else is accepted)
  STREAMHEAL_NODE_ID             name (default orchestrator-<host>-<pid>)
  STREAMHEAL_HOST, STREAMHEAL_PORT  status server: GET /healthz, /readyz, /v1/status (default 127.0.0.1:7071; 0 = any)
  STREAMHEAL_ORCHESTRATOR_LEASE_MS  election lease: a dead leader is replaced after about this long (default 2000)
  STREAMHEAL_ORCHESTRATOR_CHECKPOINT_MS  how often the leader records how far it got (default 200)
  STREAMHEAL_ORCHESTRATOR_IN_PROGRESS_MS  an event whose run never finished is run again after this (default 5000)
  STREAMHEAL_POLICY_NAME         the FailoverPolicy that applies (default default)
  STREAMHEAL_EVENT_BUS_NAME      forward decision events to this EventBridge bus as well (AWS_* variables apply)
  STREAMHEAL_ALERT_TARGETS, STREAMHEAL_ALERT_TARGETS_FILE, STREAMHEAL_ALERT_REDELIVER_MS  alert delivery
  STREAMHEAL_LOG_LEVEL
`,
  async run(argv) {
    const { values, positionals } = parse('orchestrator', argv, {});
    if (values.help) {
      process.stdout.write(orchestrator.help);
      return ExitCodes.ok;
    }
    if (positionals.length)
      throw new UsageError(`unexpected argument ${positionals[0]}`, 'orchestrator');
    try {
      await import('../../orchestrator/main.js');
    } catch (error) {
      if (errorCode(error) === 'invalid_config') {
        throw new CliError(`invalid orchestrator configuration: ${(error as Error).message}`);
      }
      const issues = (error as { issues?: { path: PropertyKey[]; message: string }[] }).issues;
      if (!issues) throw error;
      const list = issues.map((issue) => `${issue.path.map(String).join('.')}: ${issue.message}`);
      throw new CliError(`invalid orchestrator configuration: ${list.join('; ')}`);
    }
    return new Promise<number>(() => undefined);
  },
};
