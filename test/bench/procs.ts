/**
 * Process plumbing for the benchmarks: start compiled scripts as real child processes
 * (optionally pinned to a CPU), talk to them over IPC with request/answer pairs, read their
 * RSS from /proc, and stop every one of them by pid, also on errors and SIGINT.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

/** Progress goes to stderr, so stdout holds only the report. */
export function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

/** Compiled file next to this one (dist/test/bench/...), or relative to it. */
export function benchFile(relative: string): string {
  return fileURLToPath(new URL(relative, import.meta.url));
}

export interface StartOptions {
  /** Logical name for messages and the log file. */
  name: string;
  script: string;
  args?: string[];
  env?: Record<string, string>;
  /** Extra flags for node itself (e.g. --cpu-prof). */
  nodeFlags?: string[];
  /** CPU list for `taskset -c` (e.g. '0'); undefined: not pinned. */
  cpus?: string;
  /** Open an IPC channel (the child is a bench helper answering requests). */
  ipc?: boolean;
  /** Append stdout and stderr to this file instead of inheriting them. */
  logFile?: string;
}

let tasksetAvailable: boolean | undefined;
function hasTaskset(): boolean {
  tasksetAvailable ??= ['/usr/bin/taskset', '/bin/taskset'].some((p) => existsSync(p));
  return tasksetAvailable;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/** One started process. IPC requests are `{ id, cmd, ...args }`, answers `{ id, ok, result | error }`. */
export class Proc {
  readonly exited: Promise<number | null>;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private exitCode: number | null | undefined;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        for (const p of this.pending.values())
          p.reject(new Error(`${name} exited (${code ?? signal}) during a request`));
        this.pending.clear();
        resolve(code);
      });
    });
    child.on('message', (raw) => {
      const msg = raw as { id?: number; ok?: boolean; result?: unknown; error?: string };
      if (msg.id === undefined) return;
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(`${name}: ${msg.error}`));
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  request<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 120_000): Promise<T> {
    if (!this.running) return Promise.reject(new Error(`${this.name} is not running`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: ${cmd} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ id, cmd, ...args });
    });
  }

  /** SIGTERM by pid, SIGKILL after `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.running) return;
    try {
      process.kill(this.pid, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        if (this.running) process.kill(this.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Every process started by this run, so they can all be stopped by pid. */
const started = new Set<Proc>();

export function start(options: StartOptions): Proc {
  const nodeArgs = [...(options.nodeFlags ?? []), options.script, ...(options.args ?? [])];
  const pinned = options.cpus !== undefined && hasTaskset();
  const command = pinned ? 'taskset' : process.execPath;
  const args = pinned ? ['-c', options.cpus!, process.execPath, ...nodeArgs] : nodeArgs;
  const out: StdioOptions = options.logFile
    ? ['ignore', 'pipe', 'pipe']
    : ['ignore', 'inherit', 'inherit'];
  if (options.ipc) out.push('ipc');
  // taskset execs node, so the pid is node's and IPC (NODE_CHANNEL_FD) passes through.
  const child = spawn(command, args, { stdio: out, env: { ...process.env, ...options.env } });
  if (options.logFile) {
    const log = createWriteStream(options.logFile, { flags: 'a' });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
  }
  const proc = new Proc(options.name, child);
  started.add(proc);
  void proc.exited.then(() => started.delete(proc));
  return proc;
}

export async function stopAll(): Promise<void> {
  await Promise.all([...started].map((p) => p.stop()));
  runCleanups();
}

const cleanups: Array<() => void> = [];
/** Runs `fn` (synchronously) after every started process has been stopped, also on signals. */
export function addCleanup(fn: () => void): void {
  cleanups.push(fn);
}

function runCleanups(): void {
  for (const fn of cleanups.splice(0)) {
    try {
      fn();
    } catch {
      /* best effort */
    }
  }
}

let handlersInstalled = false;
/** Stops every started process on SIGINT/SIGTERM and on an uncaught error. */
export function installCleanup(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const bail = (code: number) => {
    void stopAll().finally(() => {
      runCleanups();
      process.exit(code);
    });
  };
  process.once('SIGINT', () => bail(130));
  process.once('SIGTERM', () => bail(143));
  process.on('uncaughtException', (error) => {
    console.error(error);
    bail(1);
  });
  process.on('unhandledRejection', (error) => {
    console.error(error);
    bail(1);
  });
}

/** Resident set size of a process in bytes (VmRSS). */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/**
 * RSS of `pid` sampled every 100 ms for `windowMs`: the median (what the process holds, less the
 * luck of one sample landing just before or after a GC) and the maximum.
 */
export async function rssOver(
  pid: number,
  windowMs: number,
): Promise<{ median: number; max: number }> {
  const samples: number[] = [];
  for (let waited = 0; waited < windowMs; waited += 100) {
    samples.push(rssOf(pid));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  samples.sort((a, b) => a - b);
  return { median: samples[samples.length >> 1]!, max: samples.at(-1)! };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Polls `url` until it answers 200, the process dies, or the timeout passes. */
export async function waitReady(url: string, proc: Proc, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!proc.running) throw new Error(`${proc.name} exited before it was ready`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (res.status === 200) return;
      last = `status ${res.status}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await sleep(100);
  }
  throw new Error(`${proc.name} not ready at ${url} after ${timeoutMs} ms (${last})`);
}

/** Handler side of the IPC protocol, for helper processes. */
export function serveRequests(
  handlers: Record<string, (msg: Record<string, unknown>) => unknown>,
): void {
  process.on('message', (raw) => {
    const msg = raw as { id: number; cmd: string } & Record<string, unknown>;
    const handler = handlers[msg.cmd];
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`unknown command ${msg.cmd}`);
        return handler(msg);
      })
      .then(
        (result) => process.send?.({ id: msg.id, ok: true, result }),
        (error: unknown) =>
          process.send?.({
            id: msg.id,
            ok: false,
            error: error instanceof Error ? error.message : String(error),
          }),
      );
  });
  // The orchestrator went away (or stopped us): nothing left to do.
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

export { sleep };
