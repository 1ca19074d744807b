/**
 * `streamheal policy apply|get|validate`: FailoverPolicy records as files. `validate` works
 * offline; `apply` and `get` reach the cluster's state store over the control link (the
 * RemoteStore the gateways use), authenticated with the cluster secret.
 */
import { readFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { errorCode } from '../../../shared/errors.js';
import { LinkClient } from '../../../shared/link/LinkClient.js';
import { RemoteStore } from '../../../shared/link/RemoteStore.js';
import {
  RecordRepository,
  convertFailoverPolicy,
  formatIssue,
  formatProblem,
  parsePolicyFile,
  RecordValidationError,
  type FailoverPolicy,
  type SchemaVersion,
  type Stored,
} from '../../../shared/records/index.js';
import { LINK_PATH } from '../../control/ControlServer.js';
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

/** Policy files are small; a bigger one is a mistake (or worse). */
const MAX_FILE_BYTES = 1024 * 1024;
const CONNECT_TIMEOUT_MS = 5_000;

export const policy: Command = {
  summary: 'apply, show and validate failover policies (YAML or JSON files)',
  help: `Usage: streamheal policy <apply FILE | get [NAME] | validate FILE> [options]

  apply FILE      validate FILE and store every policy in it in the cluster; prints
                  "failoverpolicy/NAME created|configured|unchanged (version N)"
  get [NAME]      list the cluster's policies, or print one as YAML
  validate FILE   check FILE offline; prints every problem as FILE:LINE:COL: PATH: MESSAGE

FILE is YAML or JSON, one or more documents (separated by ---), each a FailoverPolicy of
apiVersion streamheal.io/v1 or streamheal.io/v2; "-" reads standard input. A document with
metadata.resourceVersion is applied only if the stored policy still has that version.
See docs/policies.md for the schema and examples/policies/default.yaml for the default.

Exit codes: 0 done, 1 refused or cluster unreachable, 2 invalid file or command line.

Options:
  --url URL               control process, e.g. http://127.0.0.1:7070
                          (default: $STREAMHEAL_CONTROL_URL, else the cluster file of \`streamheal start\`)
  -o, --output FORMAT     get: yaml or json (default: a table for all, yaml for one)
  --api-version VERSION   get: show records as v1 or v2 (default v2)
  -h, --help              show this help

The control link is authenticated with $STREAMHEAL_CLUSTER_SECRET, else the secret in the
cluster file.
`,
  async run(argv) {
    const { values, positionals } = parse('policy', argv, {
      url: { type: 'string' },
      output: { type: 'string', short: 'o' },
      'api-version': { type: 'string' },
    });
    if (values.help) {
      process.stdout.write(policy.help);
      return ExitCodes.ok;
    }
    const [verb, ...args] = positionals;
    const output = values.output as string | undefined;
    if (output !== undefined && output !== 'yaml' && output !== 'json') {
      throw new UsageError(
        `--output must be yaml or json, not ${JSON.stringify(output)}`,
        'policy',
      );
    }
    const apiVersion = (values['api-version'] as string | undefined) ?? 'v2';
    if (apiVersion !== 'v1' && apiVersion !== 'v2') {
      throw new UsageError(
        `--api-version must be v1 or v2, not ${JSON.stringify(apiVersion)}`,
        'policy',
      );
    }
    switch (verb) {
      case 'validate':
        return validate(oneArgument(args, 'FILE'));
      case 'apply': {
        const file = oneArgument(args, 'FILE');
        const policies = await load(file);
        if (!policies) return ExitCodes.usage;
        return withRepository(values.url as string | undefined, (repo) => apply(repo, policies));
      }
      case 'get': {
        if (args.length > 1) throw new UsageError(`unexpected argument ${args[1]}`, 'policy');
        return withRepository(values.url as string | undefined, (repo) =>
          get(repo, args[0], output, apiVersion),
        );
      }
      case undefined:
        throw new UsageError('expected apply, get or validate', 'policy');
      default:
        throw new UsageError(
          `unknown policy command ${JSON.stringify(verb)}: expected apply, get or validate`,
          'policy',
        );
    }
  },
};

function oneArgument(args: string[], what: string): string {
  if (args.length !== 1) {
    throw new UsageError(`expected one ${what}, got ${args.length} argument(s)`, 'policy');
  }
  return args[0]!;
}

async function validate(file: string): Promise<number> {
  const policies = await load(file);
  if (!policies) return ExitCodes.usage;
  for (const p of policies) {
    process.stdout.write(`${displayName(file)}: failoverpolicy/${p.metadata.name} is valid\n`);
  }
  return ExitCodes.ok;
}

/** The file's policies (as v2), or undefined after printing every problem to stderr. */
async function load(file: string): Promise<FailoverPolicy[] | undefined> {
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read ${file}: ${(error as Error).message}`, ExitCodes.usage);
  }
  if (Buffer.byteLength(text) > MAX_FILE_BYTES) {
    throw new CliError(`${file} is larger than ${MAX_FILE_BYTES} bytes`, ExitCodes.usage);
  }
  const result = parsePolicyFile(text);
  if (result.ok) return result.policies;
  const name = displayName(file);
  process.stderr.write(
    `streamheal: ${name} is not a valid policy file:\n${result.problems
      .map((problem) => `  ${formatProblem(name, problem)}\n`)
      .join('')}`,
  );
  return undefined;
}

function displayName(file: string): string {
  return file === '-' ? '<stdin>' : file;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (size > MAX_FILE_BYTES) break;
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function apply(repo: RecordRepository, policies: FailoverPolicy[]): Promise<number> {
  let code: number = ExitCodes.ok;
  for (const record of policies) {
    const name = `failoverpolicy/${record.metadata.name}`;
    try {
      const result = await repo.putPolicy(record);
      const verb = result.outcome === 'updated' ? 'configured' : result.outcome;
      process.stdout.write(`${name} ${verb} (version ${result.version})\n`);
    } catch (error) {
      code = ExitCodes.failure;
      process.stderr.write(`streamheal: ${name} refused: ${refusal(error, record)}\n`);
    }
  }
  return code;
}

/** Why the store refused a policy, in one line; errors without a code are not refusals. */
function refusal(error: unknown, record: FailoverPolicy): string {
  if (error instanceof RecordValidationError) return error.issues.map(formatIssue).join('; ');
  const code = errorCode(error);
  if (code === 'condition_failed') {
    const pinned = record.metadata.resourceVersion;
    return pinned === undefined
      ? 'it kept changing while being applied; try again'
      : `it is no longer at version ${pinned} (metadata.resourceVersion); get it again and reapply`;
  }
  if (code === undefined) throw error;
  return `${code}: ${(error as Error).message}`;
}

async function get(
  repo: RecordRepository,
  name: string | undefined,
  output: string | undefined,
  version: SchemaVersion,
): Promise<number> {
  const show = (stored: Stored<FailoverPolicy>) => convertFailoverPolicy(stored.record, version);
  if (name !== undefined) {
    const stored = await repo.getPolicy(name);
    if (!stored) throw new CliError(`no policy named ${JSON.stringify(name)}`);
    const record = show(stored);
    process.stdout.write(
      output === 'json' ? `${JSON.stringify(record, null, 2)}\n` : stringify(record),
    );
    return ExitCodes.ok;
  }
  const all = await repo.listPolicies();
  if (output === 'json') {
    process.stdout.write(`${JSON.stringify(all.map(show), null, 2)}\n`);
  } else if (output === 'yaml') {
    process.stdout.write(all.map((stored) => stringify(show(stored))).join('---\n'));
  } else if (all.length === 0) {
    process.stdout.write('no policies stored\n');
  } else {
    const rows = [
      [
        'NAME',
        'VERSION',
        'MAX-ATTEMPTS',
        'AUTO-REJOIN',
        'TIMEOUT-S',
        'LAG-MS',
        'NODE-RULES',
        'STORED-AS',
      ],
      ...all.map(({ record, version, storedAs }) => [
        record.metadata.name,
        String(version),
        String(record.spec.maxFailoverAttempts),
        String(record.spec.autoRejoin),
        String(record.spec.timeoutSeconds),
        String(record.spec.replicationLagThresholdMs),
        record.spec.nodeRules.rules.map((rule) => rule.name).join(',') || '-',
        storedAs,
      ]),
    ];
    process.stdout.write(`${table(rows)}\n`);
  }
  return ExitCodes.ok;
}

/** Opens the control link, runs `work` with a repository over it, and closes the link. */
async function withRepository(
  url: string | undefined,
  work: (repo: RecordRepository) => Promise<number>,
): Promise<number> {
  const { url: control, file } = await findControl(url, {
    fileEvenWithUrl: !process.env.STREAMHEAL_CLUSTER_SECRET,
  });
  const secret = process.env.STREAMHEAL_CLUSTER_SECRET || file?.clusterSecret;
  if (!secret) {
    throw new CliError(
      'no cluster secret: set STREAMHEAL_CLUSTER_SECRET (the cluster file of `streamheal start` has none)',
    );
  }
  // Tell "nothing there" from "not let in" before opening the link.
  try {
    const res = await fetch(`${control}/healthz`, {
      signal: AbortSignal.timeout(CONNECT_TIMEOUT_MS),
    });
    if (!res.ok) throw new Error(`/healthz answered ${res.status}`);
  } catch (error) {
    throw new CliError(
      `cannot reach the control process at ${control}: ${describeFetchError(error)}`,
    );
  }
  // The first failed attempt is the answer: /healthz answered, so the link was refused.
  let refused: (() => void) | undefined;
  const client = new LinkClient({
    url: `${control.replace(/^http/, 'ws')}${LINK_PATH}`,
    secret,
    requestTimeoutMs: CONNECT_TIMEOUT_MS,
    pool: { onEvent: (event) => event.type === 'attemptFailed' && refused?.() },
  });
  try {
    // Keeps the process alive while the pool's (unreferenced) timers retry.
    const deadline = setTimeout(() => undefined, CONNECT_TIMEOUT_MS);
    await new Promise<void>((resolve, reject) => {
      refused = () =>
        reject(
          new CliError(
            `the control process at ${control} refused the control link (is the cluster secret right?)`,
          ),
        );
      client.waitOpen(CONNECT_TIMEOUT_MS).then(resolve, reject);
    }).finally(() => clearTimeout(deadline));
    const store = new RemoteStore(client);
    return await work(new RecordRepository(store));
  } finally {
    await client.close();
  }
}
