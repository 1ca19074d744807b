/**
 * Real processes for integration tests: spawn Node scripts from dist/, wait for lines in their
 * output, and check pids. Every helper works by pid, so a test stops exactly what it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/** The repository root (the first ancestor with a package.json, from source or from dist/). */
export const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('repository root not found');
    dir = parent;
  }
  return dir;
})();

/** Absolute path of a compiled file, e.g. `dist('workers/cli/main.js')`; run `npm run build` first. */
export function dist(path: string): string {
  const file = join(ROOT, 'dist', path);
  if (!existsSync(file)) throw new Error(`${file} not found: run \`npm run build\` first`);
  return file;
}

export interface Spawned {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Everything written so far on stdout and stderr. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match in stdout + stderr (searched again on every chunk). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `node script ...args` with `env` added to this process's environment. */
export function spawnNode(
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Spawned {
  const proc = spawn(process.execPath, [script, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (proc.pid === undefined) throw new Error(`could not spawn ${script}`);
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    for (const listener of listeners) listener();
  });
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    for (const listener of listeners) listener();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const listener of listeners) listener();
    }),
  );
  const waitFor = (pattern: RegExp, timeoutMs = 20_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const match = (out + err).match(pattern);
        if (match) done(undefined, match);
        else if (proc.exitCode !== null || proc.signalCode !== null) {
          done(
            new Error(
              `process exited (${proc.exitCode ?? proc.signalCode}) before printing ${pattern}:\n${out}${err}`,
            ),
          );
        }
      };
      const timer = setTimeout(
        () => done(new Error(`no ${pattern} within ${timeoutMs} ms; output:\n${out}${err}`)),
        timeoutMs,
      );
      const done = (error?: Error, match?: RegExpMatchArray) => {
        clearTimeout(timer);
        listeners.delete(check);
        if (error) reject(error);
        else resolve(match!);
      };
      listeners.add(check);
      check();
    });
  return { proc, pid: proc.pid, stdout: () => out, stderr: () => err, waitFor, exited };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node script ...args` to completion (SIGKILL after `timeoutMs`). */
export async function runNode(
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
  timeoutMs = 15_000,
): Promise<RunResult> {
  const child = spawnNode(script, args, env);
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), timeoutMs);
  const { code } = await child.exited;
  clearTimeout(timer);
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

/** Whether `pid` is a live process (zombies, which nobody may reap here, count as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return existsSync(`/proc/${pid}`) || process.platform !== 'linux';
  }
}

/** Waits until none of `pids` is alive; resolves with those still alive after `timeoutMs`. */
export async function waitUntilGone(pids: number[], timeoutMs = 10_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const alive = pids.filter(isAlive);
    if (alive.length === 0 || Date.now() > deadline) return alive;
    await sleep(50);
  }
}

/** Polls `probe` until it returns a value other than undefined / false. */
export async function eventually<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${what} not reached within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`,
      );
    }
    await sleep(50);
  }
}

/** SIGKILL to every pid still alive (cleanup in afterAll; never by name). */
export function killPids(pids: Iterable<number | undefined>): void {
  for (const pid of pids) {
    if (pid === undefined) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Pids of the live direct children of `pid` (Linux /proc). */
export function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid && state !== 'Z') children.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return children;
}
