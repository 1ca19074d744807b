/**
 * Keeps a fixed set of child processes running, the way ECS keeps a service at its desired
 * count: spawn each child, wait until it answers its readiness check, and when one exits
 * unexpectedly start it again on the same port after the seed's backoff. The attempt count
 * resets once a child has stayed up for `stableMs`.
 *
 * Children are `process.execPath <script>` with an IPC channel and `parentWatch.js` preloaded,
 * so they stop themselves if the supervising process dies without calling `stop()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { get } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { seedBackoff } from '../../shared/backoff.js';
import type { EventBus } from '../../shared/bus/EventBus.js';
import { makeEvent, Sources } from '../../shared/bus/events.js';
import type { Logger } from '../../shared/telemetry/logger.js';

/** `detail-type` of the bus event published when a child exits unexpectedly. */
export const GATEWAY_PROCESS_EXITED = 'Gateway Process Exited';

export interface ChildSpec {
  /** Name in logs, output prefixes and events, e.g. `gateway-2`. */
  name: string;
  /** Script run with `process.execPath`. */
  script: string;
  args?: string[];
  /** Port the child listens on; the same port on every restart. */
  port: number;
  /** Host the readiness check calls. @default '127.0.0.1' */
  host?: string;
  /** Added to the supervisor's own environment. */
  env?: Record<string, string>;
}

export type ChildState = 'starting' | 'ready' | 'restarting' | 'stopping' | 'stopped';

export interface ChildStatus {
  name: string;
  port: number;
  pid: number | undefined;
  state: ChildState;
  /** Restarts since the supervisor started. */
  restarts: number;
  /** When the current process was spawned (ISO-8601). */
  startedAt: string | undefined;
}

export interface ChildExit {
  name: string;
  port: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  uptimeMs: number;
  /** False when the supervisor stopped the child. */
  unexpected: boolean;
  /** The restart planned for an unexpected exit: 1-based attempt and delay. */
  restart?: { attempt: number; delayMs: number };
}

export interface SupervisorOptions {
  children: ChildSpec[];
  logger: Logger;
  /** Unexpected exits are published here as `Gateway Process Exited` (source `streamheal.control`). */
  bus?: EventBus;
  /** Called on every exit of a child, expected or not. */
  onExit?: (exit: ChildExit) => void;
  /** Called with every line a child writes. @default `[name] line` to this process's stdout / stderr */
  output?: (line: string, stream: 'stdout' | 'stderr', name: string) => void;
  /** @default '/readyz' */
  readyPath?: string;
  /** A child not ready this long after spawning is killed (and restarted). @default 20_000 */
  readyTimeoutMs?: number;
  /** Uptime after which the restart attempt count starts again from zero. @default 10_000 */
  stableMs?: number;
  /** Time between SIGTERM and SIGKILL in `stop()`. @default 5_000 */
  stopTimeoutMs?: number;
  /** Restart delay for a 0-based attempt. @default seedBackoff */
  backoff?: (attempt: number) => number;
  /**
   * Module preloaded into every child to stop it when this process dies; `false` for none.
   * @default parentWatch.js beside this module, when it exists (it does once compiled)
   */
  parentWatch?: string | false;
}

interface Child {
  spec: ChildSpec;
  process?: ChildProcess;
  state: ChildState;
  spawnedAt: number;
  /** Restart attempts since the child was last stable (the last one made, 1-based). */
  attempt: number;
  restarts: number;
  restartTimer?: NodeJS.Timeout;
  /** Last lines of output, for error messages. */
  recent: string[];
  exited?: Promise<void>;
}

const RECENT_LINES = 20;
const POLL_MS = 100;

export class Supervisor {
  private readonly children = new Map<string, Child>();
  private readonly readyWaiters = new Set<() => void>();
  private stopping = false;
  private started = false;
  private readonly killOnExit = () => {
    for (const child of this.children.values()) child.process?.kill('SIGINT');
  };

  constructor(private readonly options: SupervisorOptions) {
    for (const spec of options.children) {
      if (this.children.has(spec.name)) throw new Error(`duplicate child name ${spec.name}`);
      this.children.set(spec.name, {
        spec,
        state: 'stopped',
        spawnedAt: 0,
        attempt: 0,
        restarts: 0,
        recent: [],
      });
    }
  }

  /** Spawns every child and resolves when all are ready; rejects if one is not in time. */
  async start(): Promise<void> {
    if (this.started || this.stopping) throw new Error('a supervisor starts only once');
    this.started = true;
    const busy: string[] = [];
    for (const { spec } of this.children.values()) {
      const host = spec.host ?? '127.0.0.1';
      if (!(await portFree(host, spec.port))) busy.push(`${host}:${spec.port} (${spec.name})`);
    }
    if (busy.length) throw new Error(`ports already in use by another process: ${busy.join(', ')}`);
    if (this.stopping) throw new Error('supervisor stopped while starting');
    process.on('exit', this.killOnExit);
    for (const child of this.children.values()) this.spawn(child);
    const timeoutMs = this.options.readyTimeoutMs ?? 20_000;
    await Promise.all([...this.children.values()].map((child) => this.waitChild(child, timeoutMs)));
  }

  /**
   * SIGINT to every child, SIGKILL to those still running after `stopTimeoutMs`. SIGINT, not
   * SIGTERM: a gateway drains on SIGTERM (moves its sessions to the others), which is pointless
   * when the whole cluster stops; on SIGINT it closes at once.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const waiter of this.readyWaiters) waiter();
    const timeoutMs = this.options.stopTimeoutMs ?? 5_000;
    await Promise.all(
      [...this.children.values()].map(async (child) => {
        clearTimeout(child.restartTimer);
        const proc = child.process;
        if (!proc || !child.exited || proc.exitCode !== null || proc.signalCode !== null) {
          child.state = 'stopped';
          return;
        }
        child.state = 'stopping';
        proc.kill('SIGINT');
        const timer = setTimeout(() => {
          this.options.logger.warn(
            { child: child.spec.name, childPid: proc.pid },
            `${child.spec.name} (pid ${proc.pid}) still running ${timeoutMs} ms after SIGINT; sending SIGKILL`,
          );
          proc.kill('SIGKILL');
        }, timeoutMs);
        await child.exited;
        clearTimeout(timer);
      }),
    );
    process.off('exit', this.killOnExit);
  }

  /** Pid of every running child by name (children waiting for a restart have none). */
  pids(): Record<string, number> {
    const pids: Record<string, number> = {};
    for (const [name, child] of this.children) {
      const pid = runningPid(child);
      if (pid !== undefined) pids[name] = pid;
    }
    return pids;
  }

  status(): ChildStatus[] {
    return [...this.children.values()].map((child) => ({
      name: child.spec.name,
      port: child.spec.port,
      pid: runningPid(child),
      state: child.state,
      restarts: child.restarts,
      startedAt: child.spawnedAt ? new Date(child.spawnedAt).toISOString() : undefined,
    }));
  }

  /** Resolves when `name` is ready (again); rejects after `timeoutMs` or when stopping. */
  waitReady(name: string, timeoutMs: number): Promise<void> {
    const child = this.children.get(name);
    if (!child) return Promise.reject(new Error(`no child named ${name}`));
    return this.waitChild(child, timeoutMs);
  }

  private waitChild(child: Child, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (child.state === 'ready') finish();
        else if (this.stopping)
          finish(new Error(`supervisor stopped before ${child.spec.name} was ready`));
      };
      const timer = setTimeout(() => {
        const output = child.recent.length ? `; last output:\n${child.recent.join('\n')}` : '';
        finish(
          new Error(
            `${child.spec.name} was not ready on port ${child.spec.port} within ${timeoutMs} ms${output}`,
          ),
        );
      }, timeoutMs);
      const finish = (error?: Error) => {
        clearTimeout(timer);
        this.readyWaiters.delete(check);
        if (error) reject(error);
        else resolve();
      };
      this.readyWaiters.add(check);
      check();
    });
  }

  private spawn(child: Child): void {
    const { spec } = child;
    const preload = this.parentWatchModule();
    const proc = spawn(
      process.execPath,
      [...(preload ? ['--import', preload] : []), spec.script, ...(spec.args ?? [])],
      { env: { ...process.env, ...spec.env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
    );
    child.process = proc;
    child.state = 'starting';
    child.spawnedAt = Date.now();
    this.pipe(child, proc, 'stdout');
    this.pipe(child, proc, 'stderr');
    child.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exited(child, proc, code, signal);
        resolve();
      });
    });
    proc.once('error', (error) => {
      // Spawning failed (no 'exit' follows when there is no pid) or signalling failed.
      this.options.logger.error({ err: error, child: spec.name }, `${spec.name}: ${error.message}`);
      if (proc.pid === undefined) proc.emit('exit', null, null);
    });
    this.options.logger.debug(
      { child: spec.name, childPid: proc.pid, port: spec.port },
      `${spec.name} spawned`,
    );
    void this.pollReady(child, proc);
  }

  private async pollReady(child: Child, proc: ChildProcess): Promise<void> {
    const { spec } = child;
    const url = `http://${spec.host ?? '127.0.0.1'}:${spec.port}${this.options.readyPath ?? '/readyz'}`;
    const deadline = Date.now() + (this.options.readyTimeoutMs ?? 20_000);
    while (child.process === proc && child.state === 'starting') {
      if ((await httpStatus(url, 1_000)) === 200) {
        if (child.process !== proc || child.state !== 'starting') return;
        child.state = 'ready';
        const again = child.restarts > 0 ? ` after ${child.restarts} restart(s)` : '';
        this.options.logger.info(
          { child: spec.name, childPid: proc.pid, port: spec.port, restarts: child.restarts },
          `${spec.name} ready on port ${spec.port} (pid ${proc.pid})${again}`,
        );
        for (const waiter of this.readyWaiters) waiter();
        return;
      }
      if (Date.now() > deadline) {
        this.options.logger.error(
          { child: spec.name, childPid: proc.pid, port: spec.port },
          `${spec.name} (pid ${proc.pid}) not ready on port ${spec.port} within ${this.options.readyTimeoutMs ?? 20_000} ms; killing it`,
        );
        proc.kill('SIGKILL');
        return;
      }
      await sleep(POLL_MS);
    }
  }

  private exited(
    child: Child,
    proc: ChildProcess,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    const { spec } = child;
    const uptimeMs = Date.now() - child.spawnedAt;
    const how = signal ? `signal ${signal}` : `code ${code}`;
    const exit: ChildExit = {
      name: spec.name,
      port: spec.port,
      pid: proc.pid ?? 0,
      code,
      signal,
      uptimeMs,
      unexpected: !this.stopping,
    };
    if (this.stopping) {
      child.state = 'stopped';
      this.options.logger.info(
        { child: spec.name, childPid: proc.pid, code, signal },
        `${spec.name} stopped (${how})`,
      );
      this.options.onExit?.(exit);
      return;
    }
    if (uptimeMs >= (this.options.stableMs ?? 10_000)) child.attempt = 0;
    exit.restart = this.scheduleRestart(child, (attempt, delayMs) => ({
      fields: { childPid: proc.pid, code, signal, uptimeMs },
      message: `${spec.name} exited (${how}); restarting on port ${spec.port} in ${delayMs} ms (attempt ${attempt})`,
    }));
    this.options.onExit?.(exit);
    void this.publishExit(exit);
  }

  /** Plans the next start of `child` after the backoff of its next attempt; logs why. */
  private scheduleRestart(
    child: Child,
    describe: (
      attempt: number,
      delayMs: number,
    ) => { fields: Record<string, unknown>; message: string },
  ): { attempt: number; delayMs: number } {
    const attempt = ++child.attempt;
    const delayMs = Math.round((this.options.backoff ?? seedBackoff)(attempt - 1));
    child.state = 'restarting';
    const { fields, message } = describe(attempt, delayMs);
    this.options.logger.warn(
      { child: child.spec.name, port: child.spec.port, delayMs, attempt, ...fields },
      message,
    );
    child.restartTimer = setTimeout(() => void this.restart(child), delayMs);
    return { attempt, delayMs };
  }

  private async restart(child: Child): Promise<void> {
    const { name, port } = child.spec;
    if (this.stopping) return;
    // Another process on the port would answer the readiness check in our child's place.
    const free = await portFree(child.spec.host ?? '127.0.0.1', port);
    if (this.stopping) return;
    if (!free) {
      this.scheduleRestart(child, (attempt, delayMs) => ({
        fields: {},
        message: `${name}: port ${port} is in use by another process; retrying in ${delayMs} ms (attempt ${attempt})`,
      }));
      return;
    }
    child.restarts++;
    this.spawn(child);
  }

  private async publishExit(exit: ChildExit): Promise<void> {
    if (!this.options.bus) return;
    const { name, port, pid, code, signal, uptimeMs, restart } = exit;
    const detail = {
      node: name,
      port,
      pid,
      code,
      signal,
      uptimeMs,
      restartInMs: restart?.delayMs,
      attempt: restart?.attempt,
    };
    try {
      await this.options.bus.put([
        makeEvent(Sources.control, GATEWAY_PROCESS_EXITED, detail, [name]),
      ]);
    } catch (error) {
      this.options.logger.warn(
        { err: error, child: name },
        `${GATEWAY_PROCESS_EXITED} event not sent`,
      );
    }
  }

  private pipe(child: Child, proc: ChildProcess, stream: 'stdout' | 'stderr'): void {
    const source = proc[stream];
    if (!source) return;
    const write =
      this.options.output ??
      ((line: string, to: 'stdout' | 'stderr', name: string) =>
        process[to].write(`[${name}] ${line}\n`));
    createInterface({ input: source, crlfDelay: Infinity }).on('line', (line) => {
      child.recent.push(line);
      if (child.recent.length > RECENT_LINES) child.recent.shift();
      write(line, stream, child.spec.name);
    });
  }

  private parentWatchModule(): string | undefined {
    const configured = this.options.parentWatch;
    if (configured === false) return undefined;
    if (configured !== undefined) return pathToFileURL(configured).href;
    const beside = new URL('./parentWatch.js', import.meta.url);
    return existsSync(fileURLToPath(beside)) ? beside.href : undefined;
  }
}

function runningPid(child: Child): number | undefined {
  return child.state === 'stopped' || child.state === 'restarting' ? undefined : child.process?.pid;
}

/** Whether `port` can be bound on `host` now (nothing else listens there). */
function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createNetServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Status code of a GET, or 0 when the request fails or takes longer than `timeoutMs`. */
function httpStatus(url: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = get(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}
