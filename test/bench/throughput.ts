/**
 * `throughput`: fan-out of one channel to N WebSocket subscribers, streamheal gateway against
 * a raw `ws` server doing the least possible work, same clients, same publisher, same window;
 * memory per connection for both; publish-to-delivery latency across a 3-gateway local cluster.
 *
 * Processes (all real, all stopped by pid at the end):
 *   server under test (gateway or raw ws) . 4 subscriber processes (<= 5,000 sockets each)
 *   . 1 publisher process (bounded in-flight POST /v1/publish) . this orchestrator.
 * The server under test runs on CPU 0 and every load generator on the other CPUs (unless
 * --no-pin or taskset is missing), so the load generators do not steal the server's core.
 *
 * The machine is shared: each measurement waits for a quiet second first, a window in which
 * other processes used more than --max-other-cpu cores is measured again (up to
 * --max-windows), and --rounds alternate the servers; the table shows every window's
 * contention. msgs/s is the best round per server; bytes per connection the mean over rounds,
 * each from the median RSS of the idle spell (sampled every 100 ms) before and after connecting.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { measureClusterLatency, type LatencyResult } from './clusterLatency.js';
import { cpuSeconds, cpuTimes, describeCpus, waitQuiet } from './cpu.js';
import { summarizeCpuProfile } from './cpuProfile.js';
import type { Counters } from './subscriberProcess.js';
import { connectSubscribers } from './subscribers.js';
import {
  addCleanup,
  benchFile,
  freePort,
  log,
  rssOver,
  sleep,
  start,
  stopAll,
  waitReady,
  type Proc,
} from './procs.js';

export interface ThroughputOptions {
  subscribers: number;
  clientProcesses: number;
  windowMs: number;
  warmupMs: number;
  /** Publish requests kept in flight. */
  inFlight: number;
  idleMs: number;
  pin: boolean;
  /** Run the gateway under --cpu-prof and print its hottest functions. */
  profile: boolean;
  /** Which servers to measure. */
  servers: Array<'gateway' | 'raw'>;
  latency: boolean;
  /** Rounds, each measuring every server once (alternating), to see through other load. */
  rounds: number;
  /** Wait up to this long before each measurement for other processes to leave the CPUs. */
  quietWaitMs: number;
  /** A window in which other processes used more CPU than this (cores) is measured again... */
  maxOtherCpu: number;
  /** ...up to this many windows per server and round; the least disturbed one counts. */
  maxWindows: number;
}

const CHANNEL = 'bench';
const MAX_SOCKETS_PER_PROCESS = 5_000;

interface ClientSnapshot extends Counters {
  at: number;
  clients: number;
  firstError?: string;
}

interface PublisherSnapshot {
  ok: number;
  failed: number;
  at: number;
  firstError?: string;
}

export interface ServerResult {
  name: string;
  subscribers: number;
  connectMs: number;
  idleRss: number;
  loadedRss: number;
  bytesPerConn: number;
  msgsPerS: number;
  bytesPerS: number;
  publishesPerS: number;
  /** Frames the server had to write per second during the window: publishes/s x subscribers. */
  offeredPerS: number;
  /** Server CPU during the window, in cores (1.0 = one core busy). */
  serverCpu: number;
  clientCpu: number;
  published: number;
  expected: number;
  received: number;
  gaps: number;
  duplicates: number;
  errors: number;
  unexpectedCloses: number;
  firstError?: string;
  /** CPU used by processes outside this benchmark during the window, in cores. */
  otherCpu: number;
  machine: string;
  /** Windows measured (more than one when other processes disturbed the first). */
  windows: number;
  round: number;
  profiled: boolean;
  profile?: string;
}

interface ServerUnderTest {
  proc: Proc;
  httpUrl: string;
  wsUrl: string;
  key: string;
}

function sum<T>(items: T[], pick: (item: T, index: number) => number): number {
  return items.reduce((total, item, index) => total + pick(item, index), 0);
}

export async function runThroughput(options: ThroughputOptions): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'streamheal-bench-'));
  // Logs and profiles are kept with --profile; otherwise the directory goes with the processes.
  if (!options.profile) addCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  const cpus = availableParallelism();
  const pin = options.pin && cpus >= 2;
  const serverCpus = pin ? '0' : undefined;
  const loadCpus = pin ? `1-${cpus - 1}` : undefined;
  const processes = Math.max(
    options.clientProcesses,
    Math.ceil(options.subscribers / MAX_SOCKETS_PER_PROCESS),
  );
  log(
    `logs and profiles in ${tmp}; ${processes} client processes; ${options.rounds} round(s); pinned: ` +
      (pin ? `server on CPU ${serverCpus}, load generators on CPU ${loadCpus}` : 'no'),
  );

  try {
    const clients = Array.from({ length: processes }, (_, i) =>
      start({
        name: `subscribers-${i + 1}`,
        script: benchFile('./subscriberProcess.js'),
        ipc: true,
        cpus: loadCpus,
      }),
    );
    const publisher = start({
      name: 'publisher',
      script: benchFile('./publisherProcess.js'),
      ipc: true,
      cpus: loadCpus,
    });

    const results: ServerResult[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      // Alternate the order so neither server always runs first.
      const order = round % 2 === 1 ? options.servers : [...options.servers].reverse();
      for (const kind of order) {
        await waitQuiet(options.quietWaitMs);
        const profiled = kind === 'gateway' && options.profile && round === 1;
        const server =
          kind === 'gateway'
            ? await startGateway(tmp, serverCpus, profiled)
            : await startRaw(tmp, serverCpus);
        const result = await measure(
          kind === 'gateway' ? 'streamheal' : 'raw ws',
          server,
          clients,
          publisher,
          options,
        );
        result.round = round;
        result.profiled = profiled;
        if (profiled) {
          const file = readdirSync(tmp).find((f) => f.endsWith('.cpuprofile'));
          if (file) result.profile = summarizeCpuProfile(join(tmp, file), 30);
        }
        results.push(result);
      }
    }

    let latency: LatencyResult | undefined;
    if (options.latency) {
      try {
        await waitQuiet(options.quietWaitMs);
        latency = await measureClusterLatency({
          tmp,
          clients,
          publisher,
          subscribers: 300,
          rate: 200,
          durationMs: 10_000,
          maxOtherCpu: options.maxOtherCpu,
          maxWindows: options.maxWindows,
          quietWaitMs: options.quietWaitMs,
        });
      } catch (error) {
        log(
          `latency across 3 gateways not measured: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    }
    report(options, results, latency);
  } finally {
    await stopAll();
  }
}

async function startGateway(
  tmp: string,
  cpus: string | undefined,
  profile: boolean,
): Promise<ServerUnderTest> {
  const port = await freePort();
  const key = randomBytes(18).toString('base64url');
  const proc = start({
    name: 'gateway',
    script: benchFile('../../workers/gateway/main.js'),
    cpus,
    nodeFlags: profile ? ['--cpu-prof', `--cpu-prof-dir=${tmp}`] : [],
    logFile: join(tmp, 'gateway.log'),
    env: {
      STREAMHEAL_NODE_ID: 'bench-1',
      STREAMHEAL_PORT: String(port),
      STREAMHEAL_STORE: 'memory',
      STREAMHEAL_PUBLISH_KEY: key,
      STREAMHEAL_CLUSTER_SECRET: randomBytes(16).toString('hex'),
      STREAMHEAL_LOG_LEVEL: 'warn',
    },
  });
  const httpUrl = `http://127.0.0.1:${port}`;
  await waitReady(`${httpUrl}/readyz`, proc);
  return { proc, httpUrl, wsUrl: `ws://127.0.0.1:${port}/v1/ws`, key };
}

async function startRaw(tmp: string, cpus: string | undefined): Promise<ServerUnderTest> {
  const port = await freePort();
  const proc = start({
    name: 'raw-ws',
    script: benchFile('./rawWsServer.js'),
    cpus,
    logFile: join(tmp, 'raw-ws.log'),
    env: { PORT: String(port) },
  });
  const httpUrl = `http://127.0.0.1:${port}`;
  await waitReady(`${httpUrl}/readyz`, proc);
  return { proc, httpUrl, wsUrl: `ws://127.0.0.1:${port}/v1/ws`, key: 'unused-by-raw-ws' };
}

async function measure(
  name: string,
  server: ServerUnderTest,
  clients: Proc[],
  publisher: Proc,
  options: ThroughputOptions,
): Promise<ServerResult> {
  const { proc } = server;
  const { subscribers } = options;
  const idleRss = (await rssOver(proc.pid, options.idleMs)).median;

  log(`${name}: connecting ${subscribers} subscribers`);
  const connectMs = await connectSubscribers(clients, {
    urls: [server.wsUrl],
    total: subscribers,
    channel: CHANNEL,
    concurrency: 100,
    mode: 'scan',
  }).catch((error: Error) => {
    throw new Error(`${name}: ${error.message}`);
  });
  const { median: loadedRss, max: loadedRssMax } = await rssOver(proc.pid, options.idleMs);
  log(
    `${name}: ${subscribers} subscribed in ${connectMs.toFixed(0)} ms; RSS ${mib(idleRss)} -> ${mib(loadedRss)} MiB (max ${mib(loadedRssMax)})`,
  );

  // A window disturbed by other processes (other engineers' tests share the 2 cores) is
  // measured again after a quiet spell; the least disturbed window counts.
  let best: Window | undefined;
  const totals = { ok: 0, failed: 0, firstError: undefined as string | undefined, windows: 0 };
  for (let attempt = 1; attempt <= options.maxWindows; attempt++) {
    if (attempt > 1) await waitQuiet(options.quietWaitMs);
    const w = await measureWindow(server, clients, publisher, options);
    totals.ok += w.ok;
    totals.failed += w.failed;
    totals.firstError ??= w.firstError;
    totals.windows++;
    log(
      `${name}: window ${attempt}: ${fmt(w.msgsPerS)} msgs/s; ${w.machine}; other processes ${w.otherCpu.toFixed(2)} cores`,
    );
    if (!best || w.otherCpu < best.otherCpu) best = w;
    if (w.otherCpu <= options.maxOtherCpu) break;
    if (attempt < options.maxWindows)
      log(`${name}: window disturbed by other processes; measuring again`);
  }
  const w = best!;
  const snap = () => Promise.all(clients.map((c) => c.request<ClientSnapshot>('snapshot')));

  // Every subscriber must end up with every published message, exactly once.
  const expected = totals.ok * subscribers;
  let final = await snap();
  const deadline = Date.now() + 15_000;
  while (sum(final, (s) => s.messages) < expected && Date.now() < deadline) {
    await sleep(200);
    final = await snap();
  }
  const received = sum(final, (s) => s.messages);

  await Promise.all(clients.map((c) => c.request('close')));
  await proc.stop(10_000);
  return {
    name,
    subscribers,
    connectMs,
    idleRss,
    loadedRss,
    bytesPerConn: (loadedRss - idleRss) / subscribers,
    msgsPerS: w.msgsPerS,
    bytesPerS: w.bytesPerS,
    publishesPerS: w.publishesPerS,
    offeredPerS: w.publishesPerS * subscribers,
    serverCpu: w.serverCpu,
    clientCpu: w.clientCpu,
    published: totals.ok,
    expected,
    received,
    gaps: sum(final, (s) => s.gaps),
    duplicates: sum(final, (s) => s.duplicates),
    errors: sum(final, (s) => s.errors) + totals.failed,
    unexpectedCloses: sum(final, (s) => s.unexpectedCloses),
    firstError: final.find((s) => s.firstError)?.firstError ?? totals.firstError,
    otherCpu: w.otherCpu,
    machine: w.machine,
    windows: totals.windows,
    round: 0,
    profiled: false,
  };
}

interface Window {
  msgsPerS: number;
  bytesPerS: number;
  publishesPerS: number;
  serverCpu: number;
  clientCpu: number;
  otherCpu: number;
  machine: string;
  /** Publishes answered 200 (warm-up included) and failed. */
  ok: number;
  failed: number;
  firstError?: string;
}

/** Publishes for warm-up + window with bounded in-flight; rates from the window only. */
async function measureWindow(
  server: ServerUnderTest,
  clients: Proc[],
  publisher: Proc,
  options: ThroughputOptions,
): Promise<Window> {
  const { proc } = server;
  await publisher.request('start', {
    url: server.httpUrl,
    key: server.key,
    channel: CHANNEL,
    concurrency: options.inFlight,
  });
  await sleep(options.warmupMs);
  const snap = () => Promise.all(clients.map((c) => c.request<ClientSnapshot>('snapshot')));
  const cpuOf = () => ({
    server: cpuSeconds(proc.pid),
    clients: sum(clients, (c) => cpuSeconds(c.pid)),
    publisher: cpuSeconds(publisher.pid),
    self: cpuSeconds(process.pid),
    machine: cpuTimes(),
    at: performance.now(),
  });
  const [c0, p0, u0] = await Promise.all([
    snap(),
    publisher.request<PublisherSnapshot>('snapshot'),
    cpuOf(),
  ]);
  await sleep(options.windowMs);
  const [c1, p1, u1] = await Promise.all([
    snap(),
    publisher.request<PublisherSnapshot>('snapshot'),
    cpuOf(),
  ]);
  const totals = await publisher.request<{ ok: number; failed: number; firstError?: string }>(
    'stop',
  );
  // Rates per client process over its own clock, summed.
  const rate = (pick: (s: ClientSnapshot) => number) =>
    sum(clients, (_, i) => (pick(c1[i]!) - pick(c0[i]!)) / ((c1[i]!.at - c0[i]!.at) / 1000));
  const wall = (u1.at - u0.at) / 1000;
  // Without IRQ time accounting the kernel charges softirq work (loopback TCP) to the process it
  // interrupted, so our processes' times already include most of it: compare with total busy.
  const machineBusy = sum(u1.machine, (t, i) => (t.busy - u0.machine[i]!.busy) / 100);
  const ours =
    u1.server -
    u0.server +
    (u1.clients - u0.clients) +
    (u1.publisher - u0.publisher) +
    (u1.self - u0.self);
  return {
    msgsPerS: rate((s) => s.messages),
    bytesPerS: rate((s) => s.bytes),
    publishesPerS: (p1.ok - p0.ok) / ((p1.at - p0.at) / 1000),
    serverCpu: (u1.server - u0.server) / wall,
    clientCpu: (u1.clients - u0.clients) / wall,
    otherCpu: Math.max(0, (machineBusy - ours) / wall),
    machine: describeCpus(u0.machine, u1.machine),
    ok: totals.ok,
    failed: totals.failed,
    firstError: totals.firstError,
  };
}

const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
const round = (value: number, digits = 0) => Number(value.toFixed(digits));
const fmt = (value: number) => Math.round(value).toLocaleString('en-US');

/** Best window per server (least disturbed by other load), memory averaged over rounds. */
function summarize(results: ServerResult[], name: string): ServerResult | undefined {
  const mine = results.filter((r) => r.name === name);
  if (mine.length === 0) return undefined;
  const candidates = mine.some((r) => !r.profiled) ? mine.filter((r) => !r.profiled) : mine;
  const best = candidates.reduce((a, b) => (b.msgsPerS > a.msgsPerS ? b : a));
  const mean = (pick: (r: ServerResult) => number) => sum(mine, pick) / mine.length;
  return {
    ...best,
    idleRss: mean((r) => r.idleRss),
    loadedRss: mean((r) => r.loadedRss),
    bytesPerConn: mean((r) => r.bytesPerConn),
    profile: mine.find((r) => r.profile)?.profile,
  };
}

function report(
  options: ThroughputOptions,
  results: ServerResult[],
  latency: LatencyResult | undefined,
): void {
  console.log('');
  console.log(
    `throughput: ${options.subscribers} WebSocket subscribers on one channel, ${options.inFlight} publishes in flight, ` +
      `window ${options.windowMs / 1000} s after ${options.warmupMs / 1000} s warm-up, ${options.rounds} round(s)`,
  );
  console.log('rounds:');
  for (const r of results) {
    console.log(
      `  ${r.round}  ${r.name.padEnd(10)} ${fmt(r.msgsPerS).padStart(9)} msgs/s  server ${r.serverCpu.toFixed(2)} cores  ` +
        `other load ${r.otherCpu.toFixed(2)} cores  ${fmt(r.bytesPerConn).padStart(6)} B/conn  ${r.machine}` +
        (r.windows > 1 ? `  (least disturbed of ${r.windows} windows)` : '') +
        (r.profiled ? '  (under --cpu-prof)' : ''),
    );
  }

  const gw = summarize(results, 'streamheal');
  const raw = summarize(results, 'raw ws');
  const shown = [gw, raw].filter((r): r is ServerResult => r !== undefined);
  const rows: Array<
    [string, (r: ServerResult) => string, ((g: ServerResult, w: ServerResult) => number)?]
  > = [
    ['delivered msgs/s (best window)', (r) => fmt(r.msgsPerS), (g, w) => g.msgsPerS / w.msgsPerS],
    ['delivered MB/s', (r) => (r.bytesPerS / 1e6).toFixed(1)],
    ['publishes/s', (r) => r.publishesPerS.toFixed(1)],
    ['offered frames/s (pub/s x subs)', (r) => fmt(r.offeredPerS)],
    ['server CPU (cores)', (r) => r.serverCpu.toFixed(2)],
    [
      'msgs per server CPU-second',
      (r) => fmt(r.msgsPerS / r.serverCpu),
      (g, w) => g.msgsPerS / g.serverCpu / (w.msgsPerS / w.serverCpu),
    ],
    ['client CPU (cores)', (r) => r.clientCpu.toFixed(2)],
    ['other processes CPU (cores)', (r) => r.otherCpu.toFixed(2)],
    ['connect + subscribe all (ms)', (r) => fmt(r.connectMs)],
    ['RSS idle (MiB, mean)', (r) => mib(r.idleRss)],
    ['RSS with subscribers (MiB, mean)', (r) => mib(r.loadedRss)],
    [
      'bytes per connection (mean)',
      (r) => fmt(r.bytesPerConn),
      (g, w) => g.bytesPerConn / w.bytesPerConn,
    ],
    ['received / expected', (r) => `${r.received}/${r.expected}`],
    [
      'gaps / dups / errors / closes',
      (r) => `${r.gaps}/${r.duplicates}/${r.errors}/${r.unexpectedCloses}`,
    ],
  ];
  const width = 34;
  console.log(
    `${''.padEnd(width)}${shown.map((r) => r.name.padStart(18)).join('')}${gw && raw ? 'ratio'.padStart(10) : ''}`,
  );
  for (const [label, cell, ratio] of rows) {
    const r = gw && raw && ratio ? ratio(gw, raw).toFixed(3).padStart(10) : '';
    console.log(`${label.padEnd(width)}${shown.map((x) => cell(x).padStart(18)).join('')}${r}`);
  }
  for (const r of results)
    if (r.firstError) console.log(`${r.name} round ${r.round}: first error: ${r.firstError}`);
  if (latency) {
    console.log(
      `latency across 3 gateways (${latency.subscribers} subscribers, ${latency.rate} publishes/s for ${latency.durationMs / 1000} s ` +
        `through one gateway, ${latency.samples} deliveries): p50 ${latency.p50.toFixed(2)} ms, p90 ${latency.p90.toFixed(2)} ms, ` +
        `p99 ${latency.p99.toFixed(2)} ms, max ${latency.max.toFixed(2)} ms; lost ${latency.lost}; ` +
        `other processes ${latency.otherCpu.toFixed(2)} cores` +
        (latency.windows > 1 ? ` (least disturbed of ${latency.windows} windows)` : ''),
    );
  } else if (options.latency) {
    console.log(
      'latency across 3 gateways: not measured (local cluster unavailable; see messages above)',
    );
  }
  if (gw && raw) {
    const okThroughput = gw.msgsPerS >= 0.8 * raw.msgsPerS;
    const okMemory = gw.bytesPerConn <= 1.5 * raw.bytesPerConn;
    console.log(
      `target: throughput >= 0.8x raw ws: ${okThroughput ? 'met' : 'MISSED'} (${(gw.msgsPerS / raw.msgsPerS).toFixed(3)}x); ` +
        `memory <= 1.5x raw ws: ${okMemory ? 'met' : 'MISSED'} (${(gw.bytesPerConn / raw.bytesPerConn).toFixed(3)}x)`,
    );
  }
  if (gw?.profile)
    console.log(
      `\nstreamheal gateway CPU profile (self time, whole process life, round 1):\n${gw.profile}`,
    );
  console.log(
    JSON.stringify({
      scenario: 'throughput',
      subscribers: options.subscribers,
      msgs_per_s: gw ? round(gw.msgsPerS) : null,
      ws_msgs_per_s: raw ? round(raw.msgsPerS) : null,
      ratio: gw && raw ? round(gw.msgsPerS / raw.msgsPerS, 3) : null,
      bytes_per_conn: gw ? round(gw.bytesPerConn) : null,
      ws_bytes_per_conn: raw ? round(raw.bytesPerConn) : null,
      latency_p50_ms: latency ? round(latency.p50, 2) : null,
      latency_p99_ms: latency ? round(latency.p99, 2) : null,
    }),
  );
}
