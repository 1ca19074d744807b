/** `streamheal status`: the cluster's gateways and channels, from the control process. */
import type { ClusterStatus } from '../../control/ControlServer.js';
import type { ChildStatus } from '../../control/Supervisor.js';
import type { NodeRecord } from '../../gateway/Gateway.js';
import {
  CliError,
  ExitCodes,
  UsageError,
  describeFetchError,
  findControl,
  parse,
  table,
  type Command,
} from '../args.js';

export const status: Command = {
  summary: 'show the gateways (connections, subscriptions) and channels of a cluster',
  help: `Usage: streamheal status [options]

Shows every gateway of the cluster (state, url, pid, WebSocket and SSE connections,
subscriptions, channels) and every channel (latest position, messages held).

Options:
  --url URL   control process, e.g. http://127.0.0.1:7070
              (default: $STREAMHEAL_CONTROL_URL, else the cluster file of \`streamheal start\`)
  --json      print the status as JSON
  -h, --help  show this help
`,
  async run(argv) {
    const { values, positionals } = parse('status', argv, {
      url: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (values.help) {
      process.stdout.write(status.help);
      return ExitCodes.ok;
    }
    if (positionals.length) throw new UsageError(`unexpected argument ${positionals[0]}`, 'status');
    const { url: control, file } = await findControl(values.url as string | undefined);

    let body: ClusterStatus;
    try {
      const res = await fetch(`${control}/v1/status`, { signal: AbortSignal.timeout(5_000) });
      if (!res.ok)
        throw new CliError(`${control}/v1/status answered ${res.status} ${await res.text()}`);
      body = (await res.json()) as ClusterStatus;
    } catch (error) {
      if (error instanceof CliError) throw error;
      const hint = file
        ? ` (the cluster file names it; is the cluster still running? \`npm start\` starts one)`
        : '';
      throw new CliError(
        `cannot reach the control process at ${control}: ${describeFetchError(error)}${hint}`,
      );
    }
    const roles = await orchestratorRoles(control, body.processes);
    process.stdout.write(
      values.json ? `${JSON.stringify(body, null, 2)}\n` : `${formatStatus(body, roles)}\n`,
    );
    return ExitCodes.ok;
  },
};

/**
 * The role (leader / standby) of each supervised orchestrator, asked of its status server (on
 * the control process's host, at the port the supervisor reports). Unanswered: not shown.
 */
async function orchestratorRoles(
  control: string,
  processes: ChildStatus[],
): Promise<Map<string, string>> {
  const roles = new Map<string, string>();
  const host = new URL(control).hostname;
  await Promise.all(
    processes
      .filter((p) => p.name.startsWith('orchestrator-') && p.state === 'ready')
      .map(async (p) => {
        try {
          const res = await fetch(`http://${host}:${p.port}/v1/status`, {
            signal: AbortSignal.timeout(2_000),
          });
          const { role } = (await res.json()) as { role?: unknown };
          if (typeof role === 'string') roles.set(p.name, role);
        } catch {
          // not answering: the supervisor's state is shown instead
        }
      }),
  );
  return roles;
}

/** `roles`: orchestrators' roles by name, shown as their state. */
export function formatStatus(status: ClusterStatus, roles = new Map<string, string>()): string {
  const nodes = new Map<string, NodeRecord>(status.nodes.map((node) => [node.id, node]));
  const processes = new Map<string, ChildStatus>(status.processes.map((p) => [p.name, p]));
  const names = [...new Set([...processes.keys(), ...nodes.keys()])];
  const rows = [
    ['NODE', 'STATE', 'URL', 'PID', 'WS', 'SSE', 'SUBSCRIPTIONS', 'CHANNELS', 'RESTARTS'],
  ];
  for (const name of names) {
    const node = nodes.get(name);
    const proc = processes.get(name);
    const state = !proc
      ? 'registered'
      : roles.has(name)
        ? roles.get(name)!
        : proc.state === 'ready' && !node && !name.startsWith('orchestrator-')
          ? 'unregistered'
          : proc.state;
    const cell = (value: number | string | undefined) =>
      value === undefined ? '-' : String(value);
    rows.push([
      name,
      state,
      cell(node?.url),
      cell(node?.pid ?? proc?.pid),
      cell(node?.connections.ws),
      cell(node?.connections.sse),
      cell(node?.subscriptions),
      cell(node?.channels),
      cell(proc?.restarts),
    ]);
  }
  const lines = [`control ${status.control.url} (pid ${status.control.pid})`, '', table(rows), ''];
  if (status.channels.length === 0) lines.push('no channels yet');
  else {
    lines.push(
      table([
        ['CHANNEL', 'LATEST', 'HELD'],
        ...status.channels.map((c) => [c.channel, String(c.latest), String(c.held)]),
      ]),
    );
  }
  return lines.join('\n');
}
