/** `streamheal publish CHANNEL DATA`: POST /v1/publish to the first gateway that answers. */
import {
  CliError,
  ExitCodes,
  NO_CLUSTER,
  UsageError,
  baseUrl,
  clusterFile,
  describeFetchError,
  envList,
  parse,
  type Command,
} from '../args.js';

export const publish: Command = {
  summary: 'publish a message to a channel and print its position',
  help: `Usage: streamheal publish CHANNEL DATA [options]

Publishes DATA on CHANNEL and prints the position the cluster assigned to it. DATA is sent as
JSON when it parses as JSON ('{"price":1}', '42', 'true', '"text"'), else as a string.
Gateways are tried in turn until one stores the message.

Options:
  --url URL   gateway, e.g. http://127.0.0.1:8081 (repeatable; default: $STREAMHEAL_URL,
              comma-separated, else the gateways in the cluster file of \`streamheal start\`)
  --key KEY   publish key (default: $STREAMHEAL_PUBLISH_KEY, else the cluster file)
  --json      print the gateway's answer as JSON
  -h, --help  show this help
`,
  async run(argv) {
    const { values, positionals } = parse('publish', argv, {
      url: { type: 'string', multiple: true },
      key: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (values.help) {
      process.stdout.write(publish.help);
      return ExitCodes.ok;
    }
    if (positionals.length !== 2) {
      throw new UsageError(
        `expected CHANNEL and DATA, got ${positionals.length} argument(s)`,
        'publish',
      );
    }
    const [channel, text] = positionals as [string, string];
    let urls = (values.url as string[] | undefined) ?? envList(process.env.STREAMHEAL_URL);
    let key =
      (values.key as string | undefined) ?? (process.env.STREAMHEAL_PUBLISH_KEY || undefined);
    if (urls.length === 0 || key === undefined) {
      const file = await clusterFile();
      if (urls.length === 0) {
        if (!file) throw new CliError(NO_CLUSTER);
        urls = file.gateways.map((g) => g.url);
      }
      if (key === undefined) {
        if (!file) throw new CliError('no publish key: pass --key or set STREAMHEAL_PUBLISH_KEY');
        key = file.publishKey;
      }
    }
    const body = JSON.stringify({ channel, data: parseData(text) });

    const failures: string[] = [];
    for (const url of urls.map((u) => baseUrl(u, 'gateway URL'))) {
      let res: Response;
      try {
        res = await fetch(`${url}/v1/publish`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
          body,
          signal: AbortSignal.timeout(5_000),
        });
      } catch (error) {
        failures.push(`${url}: ${describeFetchError(error)}`);
        continue;
      }
      const answer = (await res.json().catch(() => undefined)) as
        { position?: number; error?: { code?: string; message?: string } } | undefined;
      if (res.ok && typeof answer?.position === 'number') {
        process.stdout.write(values.json ? `${JSON.stringify(answer)}\n` : `${answer.position}\n`);
        return ExitCodes.ok;
      }
      const reason = `${res.status} ${answer?.error?.message ?? res.statusText}`;
      if (res.status >= 500) {
        failures.push(`${url}: ${reason}`);
        continue; // another gateway may reach the store
      }
      throw new CliError(`${url} refused the message: ${reason}`);
    }
    throw new CliError(`no gateway stored the message:\n  ${failures.join('\n  ')}`);
  },
};

/** JSON when the text parses as JSON, else the text itself. */
export function parseData(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
