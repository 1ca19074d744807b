/**
 * What every CLI command shares: argument parsing with clear usage errors, exit codes, and
 * finding the cluster (flags, then environment, then the cluster file of `streamheal start`).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { clusterFilePath, readClusterFile, type ClusterFile } from '../control/clusterFile.js';

export const ExitCodes = {
  ok: 0,
  /** The command ran and failed: cluster unreachable, request refused, ... */
  failure: 1,
  /** The command line is wrong. */
  usage: 2,
} as const;

/** An error to report in one line, without a stack, and exit with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = ExitCodes.failure,
  ) {
    super(message);
  }
}

export class UsageError extends CliError {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message, ExitCodes.usage);
  }
}

export interface Command {
  /** One line for `streamheal --help`. */
  summary: string;
  help: string;
  /** Resolves with the exit code; a long-running command resolves when it is done. */
  run(argv: string[]): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** `parseArgs` in strict mode with `-h/--help`; parse errors become UsageErrors. */
export function parse<O extends Options>(command: string, argv: string[], options: O) {
  try {
    return parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError((error as Error).message, command);
  }
}

export function integerOption(
  name: string,
  value: string | undefined,
  min: number,
  max: number,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) {
    throw new UsageError(
      `--${name} must be an integer from ${min} to ${max}, not ${JSON.stringify(value)}`,
    );
  }
  return n;
}

export const NO_CLUSTER =
  'no local cluster found: run `npm start` (or `streamheal start`) first or pass --url';

/**
 * The cluster file, or undefined when there is none; an unreadable file, or one left behind by
 * a control process that is gone, is an error worth reporting.
 */
export async function clusterFile(
  env: NodeJS.ProcessEnv = process.env,
): Promise<ClusterFile | undefined> {
  const path = clusterFilePath(env);
  let file: ClusterFile | undefined;
  try {
    file = await readClusterFile(path);
  } catch (error) {
    throw new CliError(`cannot read the cluster file ${path}: ${(error as Error).message}`);
  }
  if (file && !processExists(file.pid)) {
    throw new CliError(
      `${NO_CLUSTER} (${path} was left by control process ${file.pid}, which is gone)`,
    );
  }
  return file;
}

/** The control process a command talks to. */
export interface ControlTarget {
  /** Base URL, `http://host:port`. */
  url: string;
  /** The cluster file, when it was read (no URL given, or asked for with `fileEvenWithUrl`). */
  file: ClusterFile | undefined;
}

/**
 * Finds the control process: `url` (from --url), else $STREAMHEAL_CONTROL_URL, else the
 * cluster file of `streamheal start`; CliError NO_CLUSTER when there is none of them.
 * `fileEvenWithUrl`: read the cluster file anyway, for what else it holds (the cluster secret).
 */
export async function findControl(
  url: string | undefined,
  { fileEvenWithUrl = false }: { fileEvenWithUrl?: boolean } = {},
): Promise<ControlTarget> {
  const given = url ?? process.env.STREAMHEAL_CONTROL_URL;
  const file = given && !fileEvenWithUrl ? undefined : await clusterFile();
  if (!given && !file) throw new CliError(NO_CLUSTER);
  return { url: baseUrl(given ?? file!.control, 'control URL'), file };
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Base HTTP URL (`http://host:port`) of a gateway or control URL given in any usual form. */
export function baseUrl(value: string, what = 'URL'): string {
  let url: URL;
  try {
    url = new URL(value.includes('://') ? value : `http://${value}`);
  } catch {
    throw new UsageError(`invalid ${what} ${JSON.stringify(value)}`);
  }
  const protocol = { 'ws:': 'http:', 'wss:': 'https:', 'http:': 'http:', 'https:': 'https:' }[
    url.protocol
  ];
  if (!protocol)
    throw new UsageError(`invalid ${what} ${JSON.stringify(value)}: use http(s):// or ws(s)://`);
  return `${protocol}//${url.host}`;
}

/** Comma-separated list from the environment. */
export function envList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

/** A one-line reason for a failed request: `connection refused`, `timed out`, ... */
export function describeFetchError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if ((error as Error).name === 'TimeoutError') return 'timed out';
  if (cause?.code === 'ECONNREFUSED') return 'connection refused';
  if (cause?.code === 'ECONNRESET') return 'connection reset';
  return cause?.message ?? (error as Error).message;
}

/** Fixed-width columns, two spaces apart. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
