#!/usr/bin/env node
/**
 * The `streamheal` command: `start` (the local cluster), `gateway`, `orchestrator`, `status`,
 * `publish`, `tail`, `policy`.
 * Commands load lazily, so `--help` and `publish` do not pay for the gateway's imports.
 */
import { CliError, ExitCodes, UsageError, type Command } from './args.js';

const commands: Record<string, () => Promise<Command>> = {
  start: async () => (await import('./commands/start.js')).start,
  gateway: async () => (await import('./commands/gateway.js')).gateway,
  orchestrator: async () => (await import('./commands/orchestrator.js')).orchestrator,
  status: async () => (await import('./commands/status.js')).status,
  publish: async () => (await import('./commands/publish.js')).publish,
  tail: async () => (await import('./commands/tail.js')).tail,
  policy: async () => (await import('./commands/policy.js')).policy,
};

async function usage(): Promise<string> {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const lines = await Promise.all(
    Object.entries(commands).map(
      async ([name, load]) => `  ${name.padEnd(width)}  ${(await load()).summary}`,
    ),
  );
  return `Usage: streamheal <command> [options]

Self-healing real-time push: WebSocket and SSE gateways that resume sessions with nothing lost.

Commands:
${lines.join('\n')}

Run \`streamheal <command> --help\` for a command's options.
Quick start: \`streamheal start\`, then in another terminal \`streamheal tail demo\` and
\`streamheal publish demo '{"hello":"world"}'\`.
`;
}

async function main(argv: string[]): Promise<number | undefined> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const text = await usage();
    (name === undefined ? process.stderr : process.stdout).write(text);
    return name === undefined ? ExitCodes.usage : ExitCodes.ok;
  }
  const load = commands[name];
  if (!load) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
  return (await load()).run(rest);
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => {
    if (code !== undefined) process.exit(code);
  },
  (error: unknown) => {
    if (error instanceof CliError) {
      process.stderr.write(`streamheal: ${error.message}\n`);
      if (error instanceof UsageError) {
        const command =
          error.command ?? (argv[0] !== undefined && argv[0] in commands ? argv[0] : undefined);
        const help = command ? `streamheal ${command} --help` : 'streamheal --help';
        process.stderr.write(`see \`${help}\`\n`);
      }
      process.exit(error.exitCode);
    }
    process.stderr.write(
      `streamheal: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(ExitCodes.failure);
  },
);
