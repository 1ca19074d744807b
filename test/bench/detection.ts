/**
 * Detection latency per fault (issue 3), with real processes on 127.0.0.1: a gateway in this
 * process (`startGateway` with the default heartbeat, MemoryStore, InProcessBus) and every
 * client a `node -e` child process with `ws` that answers the gateway's pings.
 *
 * - frozen: the client is SIGSTOPped at a random point within the ping interval (its kernel
 *   still ACKs); latency = SIGSTOP to the gateway's `onSessionDegraded` (L2) for its peer.
 * - cut: an nftables input-drop rule on the client's port (a silent cut); latency = the rule
 *   insertion to the gateway noticing: L2 `onSessionDegraded` or the socket erroring
 *   (ETIMEDOUT through TCP_USER_TIMEOUT), whichever comes first (recorded).
 * - crash: the client is SIGKILLed; latency = the kill to the gateway closing the session.
 *
 * The probe cost (sweep over 1k / 10k sockets, event-loop delay added) comes from
 * `runDetectionSweep`. The heartbeat defaults are measured as they are, not tuned.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import type { Server, Socket } from 'node:net';
import { InProcessBus } from '../../shared/bus/InProcessBus.js';
import { DEFAULT_HEARTBEAT, heartbeatDetectionBoundMs } from '../../shared/protocol/heartbeat.js';
import { MemoryStore } from '../../shared/store/MemoryStore.js';
import { createLogger } from '../../shared/telemetry/logger.js';
import { keyRingFromSecret } from '../../shared/tokens.js';
import { startGateway, type Gateway } from '../../workers/gateway/Gateway.js';
import { DEFAULT_GATEWAY_HEARTBEAT } from '../../workers/gateway/HeartbeatSweep.js';
import type { WsSession } from '../../workers/gateway/WsSession.js';
import type { SseStream } from '../../workers/gateway/SseStream.js';
import { addCleanup, benchFile, log, sleep } from './procs.js';

export interface DetectionOptions {
  /** Trials per fault (default 20). */
  trials?: number;
  /** Frozen / cut trials run at once, each with its own client (default 4). */
  parallel?: number;
  /** Skip the probe-cost sweep (its JSON fields are then null). */
  sweep?: boolean;
}

type Fault = 'frozen' | 'cut' | 'crash';

interface Trial {
  ms: number;
  /** What noticed first: 'L2', 'ETIMEDOUT', 'close' ... */
  by: string;
}

const children = new Set<ChildProcess>();
const nftTables = new Set<string>();

function killChild(child: ChildProcess): void {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(pid, 'SIGCONT');
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

function nft(args: string[]): void {
  execFileSync('nft', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function deleteTable(table: string): void {
  try {
    nft(['delete', 'table', 'inet', table]);
  } catch {
    /* not there */
  }
  nftTables.delete(table);
}

addCleanup(() => {
  for (const child of children) killChild(child);
  for (const table of [...nftTables]) deleteTable(table);
});

function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const round = (n: number) => Math.round(n * 10) / 10;

async function until<T>(
  check: () => T | undefined | null | false,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(2);
  }
}

/** What the gateway noticed, per peer (`127.0.0.1:port`), with performance.now() times. */
class Watch {
  readonly degraded = new Map<string, number>();
  readonly closed = new Map<string, { t: number; abnormal: boolean }>();
  readonly socketErrors = new Map<string, { t: number; code: string }>();
}

interface Client {
  child: ChildProcess;
  pid: number;
  peer: string;
  session: string;
  port: number;
}

function spawnClient(gateway: Gateway): Promise<Client> {
  const child = spawn(
    process.execPath,
    [benchFile('../support/pingingClient.js'), `${gateway.url.replace('http', 'ws')}/v1/ws`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.add(child);
  child.once('exit', () => children.delete(child));
  let out = '';
  return new Promise<Client>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const match = /port (\d+) session (\S+)/.exec(out);
      if (match) {
        const port = Number(match[1]);
        resolve({ child, pid: child.pid!, peer: `127.0.0.1:${port}`, session: match[2]!, port });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`client exited (${code}) before: ${out}`)));
    setTimeout(() => reject(new Error(`client not welcomed in 10 s: ${out}`)), 10_000).unref();
  });
}

/** Waits until the gateway has `samples` answered pings from this client. */
async function answered(gateway: Gateway, client: Client, samples = 3): Promise<void> {
  await until(
    () =>
      (gateway.heartbeatSweep!.sessionHeartbeats().find((s) => s.session === client.session)
        ?.samples ?? 0) >= samples,
    10_000,
    `${samples} answered pings from ${client.peer}`,
  );
}

async function stopClient(client: Client): Promise<void> {
  const exited = new Promise((resolve) => {
    if (client.child.exitCode !== null || client.child.signalCode !== null) resolve(undefined);
    else client.child.once('exit', resolve);
  });
  killChild(client.child);
  await exited;
}

async function frozenTrial(gateway: Gateway, watch: Watch): Promise<Trial> {
  const client = await spawnClient(gateway);
  try {
    await answered(gateway, client);
    await sleep(Math.random() * gateway.heartbeat!.intervalMs);
    const t0 = performance.now();
    process.kill(client.pid, 'SIGSTOP');
    const t = await until(() => watch.degraded.get(client.peer), 10_000, 'L2 for a frozen client');
    return { ms: t - t0, by: 'L2' };
  } finally {
    await stopClient(client);
  }
}

let tableSeq = 0;
async function cutTrial(gateway: Gateway, watch: Watch): Promise<Trial> {
  const client = await spawnClient(gateway);
  const table = `shbench_${process.pid}_${tableSeq++}`;
  try {
    await answered(gateway, client);
    deleteTable(table);
    nftTables.add(table);
    nft(['add', 'table', 'inet', table]);
    nft(['add', 'chain', 'inet', table, 'in', '{ type filter hook input priority 0; }']);
    await sleep(Math.random() * gateway.heartbeat!.intervalMs);
    // From just before the rule goes in: the rule may take effect anywhere within the exec.
    const t0 = performance.now();
    nft(['add', 'rule', 'inet', table, 'in', 'tcp', 'dport', String(client.port), 'drop']);
    const first = await until(
      () => {
        const l2 = watch.degraded.get(client.peer);
        const err = watch.socketErrors.get(client.peer);
        if (l2 === undefined && err === undefined) return undefined;
        if (err === undefined || (l2 !== undefined && l2 <= err.t)) return { t: l2!, by: 'L2' };
        return { t: err.t, by: err.code };
      },
      15_000,
      'the gateway to notice a cut path',
    );
    return { ms: first.t - t0, by: first.by };
  } finally {
    deleteTable(table);
    await stopClient(client);
  }
}

async function crashTrial(gateway: Gateway, watch: Watch): Promise<Trial> {
  const client = await spawnClient(gateway);
  await answered(gateway, client, 1);
  const t0 = performance.now();
  process.kill(client.pid, 'SIGKILL');
  const closed = await until(() => watch.closed.get(client.peer), 10_000, 'the session closed');
  await stopClient(client);
  return { ms: closed.t - t0, by: closed.abnormal ? 'close 1006' : 'close' };
}

async function pool<T>(count: number, parallel: number, run: () => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) {
        next++;
        results.push(await run());
      }
    }),
  );
  return results;
}

interface FaultFigures {
  fault: Fault;
  trials: number;
  p50: number;
  p99: number;
  max: number;
  min: number;
  by: Record<string, number>;
}

function figures(fault: Fault, trials: Trial[]): FaultFigures {
  const ms = trials.map((t) => t.ms);
  const by: Record<string, number> = {};
  for (const t of trials) by[t.by] = (by[t.by] ?? 0) + 1;
  return {
    fault,
    trials: trials.length,
    p50: round(quantile(ms, 0.5)),
    p99: round(quantile(ms, 0.99)),
    max: round(Math.max(...ms)),
    min: round(Math.min(...ms)),
    by,
  };
}

export async function runDetection(options: DetectionOptions = {}): Promise<void> {
  const trials = options.trials ?? 20;
  const parallel = options.parallel ?? 4;
  const watch = new Watch();
  const store = new MemoryStore();
  const bus = new InProcessBus();
  const gateway = await startGateway({
    nodeId: 'bench-detection',
    store,
    bus,
    keyRing: keyRingFromSecret('a-secret-for-the-detection-bench'),
    publishKey: 'bench-publish-key',
    logger: createLogger('bench', 'silent'),
    heartbeat: true,
    onSessionDegraded: (info) => {
      if (info.peer !== undefined) watch.degraded.set(info.peer, performance.now());
    },
  });
  // The session closing, as the gateway sees it.
  const clientClosed = gateway.clientClosed.bind(gateway);
  gateway.clientClosed = (client: WsSession | SseStream, abnormal = false) => {
    const peer = (client as { peer?: string }).peer;
    if (peer !== undefined && !watch.closed.has(peer))
      watch.closed.set(peer, { t: performance.now(), abnormal });
    clientClosed(client, abnormal);
  };
  // Socket errors (ETIMEDOUT from TCP_USER_TIMEOUT) on the accepted sockets; a bench may look
  // at the gateway's private HTTP server.
  (gateway as unknown as { server: Server }).server.on('connection', (socket: Socket) => {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (!watch.socketErrors.has(peer))
        watch.socketErrors.set(peer, { t: performance.now(), code: error.code ?? error.message });
    });
  });

  const hb = gateway.heartbeat!;
  const bound = heartbeatDetectionBoundMs(hb, hb.sweepMs);
  log(
    `gateway ${gateway.url}: heartbeat interval ${hb.intervalMs} ms, probe ${hb.probeMs} ms, ` +
      `timeout ${hb.timeoutMs} ms, ` +
      `${hb.misses} misses, sweep ${hb.sweepMs} ms (L2 bound ${bound} ms); defaults: ` +
      `${JSON.stringify(DEFAULT_HEARTBEAT)} / sweep ${DEFAULT_GATEWAY_HEARTBEAT.sweepMs} ms`,
  );

  const results: FaultFigures[] = [];
  try {
    log(`crash: ${trials} trials`);
    results.push(figures('crash', await pool(trials, 1, () => crashTrial(gateway, watch))));
    log(`frozen: ${trials} trials, ${parallel} at a time`);
    results.push(
      figures('frozen', await pool(trials, parallel, () => frozenTrial(gateway, watch))),
    );
    log(`cut: ${trials} trials, ${parallel} at a time`);
    results.push(figures('cut', await pool(trials, parallel, () => cutTrial(gateway, watch))));
  } finally {
    for (const child of children) killChild(child);
    for (const table of [...nftTables]) deleteTable(table);
    await gateway.close();
    await bus.close();
    await store.close();
  }

  let sweep:
    | { sweep1kMs: number; sweep10kMs: number; sweep10kPerSocketMs: number; loopAdded: number }
    | undefined;
  if (options.sweep !== false) {
    log('probe cost: detection-sweep');
    const { runDetectionSweep } = await import('./detection-sweep.js');
    // Its own JSON line goes to stderr, so stdout ends with this scenario's line only.
    const consoleLog = console.log;
    console.log = (...args: unknown[]) => process.stderr.write(`[bench] ${args.join(' ')}\n`);
    try {
      const s = await runDetectionSweep();
      sweep = {
        sweep1kMs: s.sweep1kMs,
        sweep10kMs: s.sweep10kMs,
        sweep10kPerSocketMs: s.sweep10kPerSocketMs,
        loopAdded: s.loopDelayAddedP99Ms,
      };
    } finally {
      console.log = consoleLog;
    }
  }

  const target: Record<Fault, { ms: number; text: string }> = {
    frozen: { ms: 1_500, text: '<= 1500' },
    cut: { ms: 1_500, text: '<= 1500' },
    crash: { ms: 50, text: '< 50' },
  };
  const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
  const pad = (s: string | number, n: number) => String(s).padStart(n);
  console.log(
    `detection latency, ms (heartbeat ${hb.intervalMs}/${hb.timeoutMs}/${hb.misses}, ` +
      `sweep ${hb.sweepMs} ms, L2 bound ${bound} ms; ${trials} trials each)`,
  );
  console.log(
    `${'fault'.padEnd(8)}${pad('p50', 8)}${pad('p99', 8)}${pad('max', 8)}${pad('min', 8)}  ` +
      `${'target p99'.padEnd(12)}${'verdict'.padEnd(9)}noticed by`,
  );
  for (const f of results) {
    const t = target[f.fault];
    const ok = f.fault === 'crash' ? f.p99 < t.ms : f.p99 <= t.ms;
    console.log(
      `${f.fault.padEnd(8)}${pad(f.p50, 8)}${pad(f.p99, 8)}${pad(f.max, 8)}${pad(f.min, 8)}  ` +
        `${t.text.padEnd(12)}${verdict(ok).padEnd(9)}${Object.entries(f.by)
          .map(([k, v]) => `${k} x${v}`)
          .join(', ')}`,
    );
  }
  if (sweep) {
    console.log(
      `probe cost: sweep 1k ${sweep.sweep1kMs} ms, 10k ${sweep.sweep10kMs} ms (target < 20: ` +
        `${verdict(sweep.sweep10kMs < 20)}), per-socket getsockopt 10k ${sweep.sweep10kPerSocketMs} ms, ` +
        `event-loop delay added p99 ${sweep.loopAdded} ms (target < 1: ${verdict(sweep.loopAdded < 1)})`,
    );
  } else console.log('probe cost: skipped (--no-sweep)');
  const of = (fault: Fault) => results.find((r) => r.fault === fault)!.p99;
  console.log(
    JSON.stringify({
      scenario: 'detection',
      frozen_p99_ms: of('frozen'),
      cut_p99_ms: of('cut'),
      crash_p99_ms: of('crash'),
      sweep1k_ms: sweep?.sweep1kMs ?? null,
      sweep10k_ms: sweep?.sweep10kMs ?? null,
      sweep10k_per_socket_ms: sweep?.sweep10kPerSocketMs ?? null,
      loop_delay_added_p99_ms: sweep?.loopAdded ?? null,
    }),
  );
}
