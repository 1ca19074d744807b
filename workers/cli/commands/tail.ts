/** `streamheal tail CHANNEL`: print a channel's messages as JSON lines, across gateway failures. */
import { createNodeClient } from '../../../shared/client/node.js';
import {
  CliError,
  ExitCodes,
  NO_CLUSTER,
  UsageError,
  clusterFile,
  envList,
  integerOption,
  parse,
  type Command,
} from '../args.js';

export const tail: Command = {
  summary: 'print the messages of a channel as JSON lines, resuming across gateway failures',
  help: `Usage: streamheal tail CHANNEL [options]

Subscribes to CHANNEL and prints every message as one JSON line on stdout:
  {"channel":"demo","position":7,"time":1718000000000,"data":{"hello":"world"}}
Connection events go to stderr. When a gateway fails the client moves to another one and
resumes from the last position printed: nothing is lost or printed twice. Ctrl-C ends it.

Options:
  --after N    print every message after position N (0: all history still held);
               default: only messages published from now on
  --count N    exit after N messages
  --url URL    gateway, e.g. http://127.0.0.1:8081 (repeatable; default: $STREAMHEAL_URL,
               comma-separated, else the gateways in the cluster file of \`streamheal start\`)
  -h, --help   show this help
`,
  async run(argv) {
    const { values, positionals } = parse('tail', argv, {
      after: { type: 'string' },
      count: { type: 'string' },
      url: { type: 'string', multiple: true },
    });
    if (values.help) {
      process.stdout.write(tail.help);
      return ExitCodes.ok;
    }
    if (positionals.length !== 1) {
      throw new UsageError(`expected one CHANNEL, got ${positionals.length} argument(s)`, 'tail');
    }
    const channel = positionals[0]!;
    const after = integerOption(
      'after',
      values.after as string | undefined,
      0,
      Number.MAX_SAFE_INTEGER,
    );
    const count = integerOption(
      'count',
      values.count as string | undefined,
      1,
      Number.MAX_SAFE_INTEGER,
    );
    let urls = (values.url as string[] | undefined) ?? envList(process.env.STREAMHEAL_URL);
    if (urls.length === 0) {
      const file = await clusterFile();
      if (!file) throw new CliError(NO_CLUSTER);
      urls = file.gateways.map((g) => g.url);
    }

    let client: ReturnType<typeof createNodeClient>;
    try {
      client = createNodeClient({ urls });
    } catch (error) {
      throw new UsageError((error as Error).message, 'tail');
    }
    const note = (line: string) => process.stderr.write(`tail: ${line}\n`);
    let done = false;
    let resolveFinished: (code: number) => void = () => undefined;
    const finished = new Promise<number>((resolve) => (resolveFinished = resolve));
    const finish = (code: number) => {
      done = true;
      resolveFinished(code);
    };

    process.stdout.on('error', (error: NodeJS.ErrnoException) => {
      finish(error.code === 'EPIPE' ? ExitCodes.ok : ExitCodes.failure); // reader went away
    });
    let printed = 0;
    client.on('message', (message) => {
      const { channel: name, position, time, data } = message;
      process.stdout.write(`${JSON.stringify({ channel: name, position, time, data })}\n`);
      if (count !== undefined && ++printed >= count) finish(ExitCodes.ok);
    });
    client.on('connected', ({ url, node }) => note(`connected to ${node} (${url})`));
    client.on('disconnected', ({ url, code, reason }) =>
      note(`lost ${url} (close ${code}${reason ? ` ${reason}` : ''})`),
    );
    client.on('reconnecting', ({ url, attempt, delayMs }) =>
      note(`reconnecting to ${url} in ${Math.round(delayMs)} ms (attempt ${attempt})`),
    );
    client.on('resumed', ({ url, channels }) =>
      note(`resumed on ${url} after position ${channels[channel] ?? '?'}`),
    );
    client.on('history-lost', ({ oldest, latest }) =>
      note(`history no longer reaches back: continuing from position ${oldest} (latest ${latest})`),
    );
    client.on('error', ({ code, message }) => {
      note(`error ${code}: ${message}`);
      if (code === 'fatal_close') finish(ExitCodes.failure);
    });
    const onSignal = () => finish(ExitCodes.ok);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);

    client.connect().catch((error: Error) => {
      if (done) return;
      note(`cannot connect: ${error.message}`);
      finish(ExitCodes.failure);
    });
    client
      .subscribe(channel, after === undefined ? {} : { after })
      .then((position) => note(`subscribed to ${channel} after position ${position}`))
      .catch((error: Error & { code?: string }) => {
        if (done) return;
        note(`cannot subscribe to ${channel}: ${error.message}`);
        finish(error.code === 'invalid_channel' ? ExitCodes.usage : ExitCodes.failure);
      });

    const code = await finished;
    await client.close();
    return code;
  },
};
