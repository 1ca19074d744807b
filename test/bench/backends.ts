/**
 * The store backends compared on the local cluster (`streamheal start`: a control process and 3
 * gateways, real processes), issue 5's benchmark:
 *
 *   embedded  the control process's MemoryStore, reached by the gateways over the control link
 *   dynalite  DynamoStore on dynalite (the DynamoDB API, in memory, its own process)
 *   etcd      EtcdStore and EtcdBus on a 3-member etcd cluster (short Raft timings: heartbeat
 *             50 ms, election 500 ms), with 2 orchestrators
 *
 * For each: publish throughput (one publisher, `inFlight` requests in flight to gateway-1, one
 * channel, a subscriber on each gateway), publish-to-delivery latency p50/p99 (subscribers
 * spread over the 3 gateways, a fixed publish rate through gateway-1), and resume latency: on a
 * warm WebSocket to gateway-2, `subscribe … after` a position `gap` messages back, until the
 * last of them arrives (a history read and its replay). On etcd also the orchestrator failover:
 * SIGKILL the leading orchestrator, time until a standby leads, and until an event put at the
 * kill has its decision.
 *
 * Progress goes to stderr; stdout ends with one JSON line of every figure. The machine is
 * shared: each window also reports the CPU other processes used meanwhile (`otherCpu`, cores).
 */
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { NodeLostEvents } from '../../shared/bus/controlEvents.js';
import { EtcdBus } from '../../shared/bus/EtcdBus.js';
import { makeEvent, Sources } from '../../shared/bus/events.js';
import { HeartbeatType, heartbeatType, pongFor } from '../../shared/protocol/heartbeat.js';
import { EtcdStore } from '../../shared/store/EtcdStore.js';
import { EtcdCluster } from '../support/etcd.js';
import { childPids } from '../support/processes.js';
import { busyCores, cpuSeconds, cpuTimes, describeCpus, waitQuiet } from './cpu.js';
import { addCleanup, benchFile, freePort, log, sleep, start, type Proc } from './procs.js';
import { connectSubscribers } from './subscribers.js';
import { freePortRange } from '../support/ports.js';

export const BACKENDS = ['embedded', 'dynalite', 'etcd'] as const;
export type Backend = (typeof BACKENDS)[number];

export interface BackendsOptions {
  backends: Backend[];
  /** Measured time of each throughput and latency window (ms). */
  windowMs: number;
  /** Publish requests in flight during the throughput window. */
  inFlight: number;
  /** Subscribers during the latency window. */
  subscribers: number;
  /** Publishes per second during the latency window. */
  rate: number;
  /** Messages replayed per resume. */
  resumeGap: number;
  resumeRounds: number;
  failoverRounds: number;
  /** Wait up to this long for a quiet machine before each backend (ms). */
  quietWaitMs: number;
}

interface Window {
  /** Cores used by processes outside this benchmark during the window. */
  otherCpu: number;
  machine: string;
}

export interface BackendResult {
  throughput: { perSecond: number; failed: number; delivered: number; gaps: number } & Window;
  latency: {
    samples: number;
    p50: number;
    p90: number;
    p99: number;
    max: number;
    lost: number;
  } & Window;
  resume: { gap: number; rounds: number; p50: number; p99: number; max: number; single: number };
}

export interface FailoverResult {
  leaseMs: number;
  rounds: { electedMs: number; decisionMs: number }[];
}

const CHANNELS = {
  throughput: 'bench-throughput',
  latency: 'bench-latency',
  resume: 'bench-resume',
};

export async function runBackends(options: BackendsOptions): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'streamheal-bench-backends-'));
  addCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  const results: Partial<Record<Backend, BackendResult>> = {};
  let failover: FailoverResult | undefined;
  const publisher = start({
    name: 'publisher',
    script: benchFile('publisherProcess.js'),
    ipc: true,
    logFile: join(tmp, 'publisher.log'),
  });
  const client = start({
    name: 'subscribers',
    script: benchFile('subscriberProcess.js'),
    ipc: true,
    logFile: join(tmp, 'subscribers.log'),
  });
  try {
    for (const backend of options.backends) {
      await waitQuiet(options.quietWaitMs);
      log(`${backend}: starting`);
      const measured = await measureBackend(backend, tmp, options, publisher, client);
      results[backend] = measured.result;
      failover ??= measured.failover;
      const r = measured.result;
      log(
        `${backend}: ${Math.round(r.throughput.perSecond)} publishes/s; latency p50 ${r.latency.p50.toFixed(1)} ms, ` +
          `p99 ${r.latency.p99.toFixed(1)} ms; resume of ${r.resume.gap} p50 ${r.resume.p50.toFixed(1)} ms, ` +
          `p99 ${r.resume.p99.toFixed(1)} ms`,
      );
    }
  } finally {
    await Promise.all([publisher.stop(), client.stop()]);
  }
  process.stdout.write(
    `${JSON.stringify(
      rounded({
        scenario: 'backends',
        command: `npm run bench -- backends ${process.argv.slice(3).join(' ')}`.trim(),
        at: new Date().toISOString(),
        settings: { ...options, backends: undefined },
        results,
        ...(failover ? { orchestratorFailover: failover } : {}),
      }),
    )}\n`,
  );
}

interface Prepared {
  args: string[];
  env: Record<string, string>;
  pids: () => number[];
  etcd?: EtcdCluster;
  stop: () => Promise<void>;
}

async function prepare(backend: Backend, tmp: string, orchestratorPort: number): Promise<Prepared> {
  if (backend === 'embedded') return { args: [], env: {}, pids: () => [], stop: async () => {} };
  if (backend === 'dynalite') {
    const port = await freePort();
    const dynalite = start({
      name: 'dynalite',
      script: benchFile('backendsDynalite.js'),
      args: [String(port)],
      logFile: join(tmp, 'dynalite.log'),
    });
    await waitForPort(port, dynalite);
    return {
      args: ['--store', 'dynamodb', '--create-tables'],
      env: {
        AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${port}`,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'bench',
        AWS_SECRET_ACCESS_KEY: 'bench',
        STREAMHEAL_DYNAMODB_TABLE_PREFIX: 'bench-',
      },
      pids: () => [dynalite.pid],
      stop: () => dynalite.stop(),
    };
  }
  const etcd = await EtcdCluster.start({ size: 3 });
  const memberPids = () => etcd.members.map((m) => m.pid).filter((p) => p !== undefined);
  addCleanup(() => {
    for (const pid of memberPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
  return {
    args: [
      '--etcd',
      etcd.endpoints.join(','),
      '--etcd-prefix',
      'bench/',
      '--orchestrators',
      '2',
      '--orchestrator-port',
      String(orchestratorPort),
    ],
    env: {},
    pids: memberPids,
    etcd,
    stop: () => etcd.stop(),
  };
}

async function measureBackend(
  backend: Backend,
  tmp: string,
  options: BackendsOptions,
  publisher: Proc,
  client: Proc,
): Promise<{ result: BackendResult; failover?: FailoverResult }> {
  const portBase = await freePortRange(6);
  const orchestratorPort = portBase + 3;
  const controlPort = portBase + 5;
  const prepared = await prepare(backend, tmp, orchestratorPort);
  const clusterFile = join(tmp, `${backend}-cluster.json`);
  const publishKey = `bench-${Math.random().toString(36).slice(2)}-key`;
  const cluster = start({
    name: `cluster-${backend}`,
    script: benchFile('../../workers/cli/main.js'),
    args: [
      'start',
      '--gateways',
      '3',
      '--port-base',
      String(portBase),
      '--control-port',
      String(controlPort),
      ...prepared.args,
    ],
    logFile: join(tmp, `${backend}-cluster.log`),
    env: {
      ...prepared.env,
      STREAMHEAL_CLUSTER_FILE: clusterFile,
      STREAMHEAL_PUBLISH_KEY: publishKey,
      STREAMHEAL_CLUSTER_SECRET: `bench-secret-${Math.random().toString(36).slice(2)}`.padEnd(
        32,
        'x',
      ),
      STREAMHEAL_LOG_LEVEL: 'warn',
    },
  });
  try {
    const deadline = Date.now() + 60_000;
    while (!existsSync(clusterFile)) {
      if (!cluster.running)
        throw new Error(`${backend}: the cluster exited while starting (${tmp})`);
      if (Date.now() > deadline)
        throw new Error(`${backend}: the cluster was not ready after 60 s`);
      await sleep(200);
    }
    const file = JSON.parse(readFileSync(clusterFile, 'utf8')) as {
      gateways: { url: string }[];
    };
    const urls = file.gateways.map((g) => g.url);
    const wsUrls = urls.map((url) => `${url.replace(/^http/, 'ws')}/v1/ws`);
    const ours = () => [
      process.pid,
      cluster.pid,
      ...childPids(cluster.pid),
      publisher.pid,
      client.pid,
      ...prepared.pids(),
    ];
    const window = windowMeter(ours);

    // Throughput: as fast as gateway-1 answers, a subscriber on every gateway.
    await connectSubscribers([client], {
      urls: wsUrls,
      total: 3,
      channel: CHANNELS.throughput,
      concurrency: 3,
      mode: 'scan',
    });
    await publisher.request('start', {
      url: urls[0],
      key: publishKey,
      channel: CHANNELS.throughput,
      concurrency: options.inFlight,
    });
    await sleep(1_000);
    type Snap = { ok: number; failed: number; at: number };
    const a = await publisher.request<Snap>('snapshot');
    const meter = window.start();
    await sleep(options.windowMs);
    const b = await publisher.request<Snap>('snapshot');
    const tpWindow = meter.stop();
    const totals = await publisher.request<{ ok: number; failed: number; firstError?: string }>(
      'stop',
    );
    if (totals.failed > 0)
      log(`${backend}: ${totals.failed} publishes failed (${totals.firstError})`);
    type Counts = { messages: number; gaps: number; duplicates: number };
    const delivered = async () => client.request<Counts>('snapshot');
    const drainBy = Date.now() + 15_000;
    while ((await delivered()).messages < totals.ok * 3 && Date.now() < drainBy) await sleep(100);
    const counts = await delivered();
    await client.request('close');
    const throughput = {
      perSecond: ((b.ok - a.ok) * 1000) / (b.at - a.at),
      failed: totals.failed,
      delivered: counts.messages / Math.max(1, totals.ok * 3),
      gaps: counts.gaps + counts.duplicates,
      ...tpWindow,
    };

    // Latency: a fixed rate through gateway-1, subscribers spread over the 3 gateways.
    await connectSubscribers([client], {
      urls: wsUrls,
      total: options.subscribers,
      channel: CHANNELS.latency,
      concurrency: 20,
      mode: 'parse',
    });
    await publisher.request('start', {
      url: urls[0],
      key: publishKey,
      channel: CHANNELS.latency,
      rate: options.rate,
    });
    await sleep(1_000);
    await client.request('startLatency');
    const latencyMeter = window.start();
    await sleep(options.windowMs);
    const latWindow = latencyMeter.stop();
    const published = await publisher.request<{ ok: number }>('stop');
    const expected = published.ok * options.subscribers;
    const latencyDrain = Date.now() + 10_000;
    while ((await delivered()).messages < expected && Date.now() < latencyDrain) await sleep(100);
    const lost = expected - (await delivered()).messages;
    const samples = Float64Array.from(await client.request<number[]>('stopLatency')).sort();
    await client.request('close');
    const latency = {
      samples: samples.length,
      p50: percentile(samples, 50),
      p90: percentile(samples, 90),
      p99: percentile(samples, 99),
      max: samples.length ? samples[samples.length - 1]! : NaN,
      lost,
      ...latWindow,
    };

    // Resume: history read and replay on a warm connection to another gateway.
    const total = Math.max(2 * options.resumeGap, 200);
    for (let n = 1; n <= total; n++) await publishOne(urls[0]!, publishKey, CHANNELS.resume, n);
    const resumeSamples = await measureResume(
      wsUrls[1]!,
      CHANNELS.resume,
      total,
      options.resumeGap,
      options.resumeRounds,
    );
    const single = await measureResume(wsUrls[1]!, CHANNELS.resume, total, 1, options.resumeRounds);
    const resume = {
      gap: options.resumeGap,
      rounds: resumeSamples.length,
      p50: percentile(resumeSamples, 50),
      p99: percentile(resumeSamples, 99),
      max: resumeSamples[resumeSamples.length - 1] ?? NaN,
      single: percentile(single, 50),
    };

    const failover = prepared.etcd
      ? await measureFailover(prepared.etcd, orchestratorPort, options.failoverRounds)
      : undefined;
    return { result: { throughput, latency, resume }, ...(failover ? { failover } : {}) };
  } finally {
    const children = cluster.running ? childPids(cluster.pid) : [];
    await cluster.stop(15_000);
    for (const pid of children) {
      try {
        process.kill(pid, 'SIGKILL');
        log(`${backend}: child ${pid} outlived the cluster; killed`);
      } catch {
        /* gone, as it should be */
      }
    }
    await prepared.stop();
  }
}

/** POST one message; throws unless it is stored. */
async function publishOne(url: string, key: string, channel: string, n: number): Promise<void> {
  const res = await fetch(`${url}/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel, data: { n } }),
  });
  if (res.status !== 200) throw new Error(`publish answered ${res.status} ${await res.text()}`);
}

/**
 * `rounds` times on one WebSocket: subscribe after `latest - gap` and wait for position `latest`
 * (the last of the `gap` messages replayed). Milliseconds per round, sorted.
 */
async function measureResume(
  url: string,
  channel: string,
  latest: number,
  gap: number,
  rounds: number,
): Promise<Float64Array> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  let onFrame: (frame: { type: string; position?: number; code?: string }) => void = () => {};
  const welcomed = new Promise<void>((resolve, reject) => {
    ws.once('error', reject);
    onFrame = (frame) => {
      if (frame.type === 'welcome') resolve();
    };
  });
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) {
      if (heartbeatType(data) === HeartbeatType.ping) ws.send(pongFor(data));
      return;
    }
    onFrame(JSON.parse(data.toString('utf8')) as { type: string; position?: number });
  });
  await welcomed;
  const samples: number[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      const started = performance.now();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('resume timed out')), 10_000);
        onFrame = (frame) => {
          if (frame.type === 'error') {
            clearTimeout(timer);
            reject(new Error(`resume refused: ${frame.code}`));
          } else if (frame.type === 'message' && frame.position === latest) {
            clearTimeout(timer);
            resolve();
          }
        };
        ws.send(JSON.stringify({ type: 'subscribe', id: round, channel, after: latest - gap }));
      });
      samples.push(performance.now() - started);
      // Within the session's request budget (50 per second).
      await sleep(25);
    }
  } finally {
    ws.terminate();
  }
  return Float64Array.from(samples).sort();
}

/**
 * SIGKILL the leading orchestrator `rounds` times; each time put an event that calls for a
 * decision at the kill, and time the election and the decision.
 */
async function measureFailover(
  etcd: EtcdCluster,
  portBase: number,
  rounds: number,
): Promise<FailoverResult> {
  const ports = [portBase, portBase + 1];
  const statusOf = async (port: number) => {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v1/status`, {
        signal: AbortSignal.timeout(500),
      });
      return (await res.json()) as { role: string; pid: number };
    } catch {
      return undefined;
    }
  };
  const leader = async (timeoutMs: number, except?: number) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const port of ports) {
        if (port === except) continue;
        const status = await statusOf(port);
        if (status?.role === 'leader') return { port, pid: status.pid };
      }
      if (Date.now() > deadline) throw new Error('no orchestrator leads');
      await sleep(10);
    }
  };
  const bus = await EtcdBus.connect({ endpoints: etcd.endpoints, prefix: 'bench/' });
  const store = await EtcdStore.connect({ endpoints: etcd.endpoints, prefix: 'bench/' });
  const results: FailoverResult['rounds'] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      // Both up (the killed one restarted by the supervisor), one leading.
      for (const port of ports) {
        const deadline = Date.now() + 30_000;
        while ((await statusOf(port)) === undefined) {
          if (Date.now() > deadline) throw new Error(`orchestrator on ${port} not back`);
          await sleep(100);
        }
      }
      await sleep(1_000);
      const victim = await leader(10_000);
      const node = `bench-failover-${Date.now()}-${round}`;
      const killedAt = performance.now();
      process.kill(victim.pid, 'SIGKILL');
      await bus.put([
        makeEvent(
          Sources.control,
          NodeLostEvents.gatewayProcessExited,
          { node, pid: 900_000 + round, code: null, signal: 'SIGKILL' },
          [node],
        ),
      ]);
      let electedMs: number | undefined;
      let decisionMs: number | undefined;
      const deadline = Date.now() + 20_000;
      while (electedMs === undefined || decisionMs === undefined) {
        if (Date.now() > deadline) throw new Error('failover not complete within 20 s');
        if (electedMs === undefined) {
          for (const port of ports) {
            if (port === victim.port) continue;
            if ((await statusOf(port))?.role === 'leader') electedMs = performance.now() - killedAt;
          }
        }
        if (decisionMs === undefined) {
          const record = await store.get<{ status: string }>(`control/nodes/${node}`);
          if (record?.value.status === 'lost') decisionMs = performance.now() - killedAt;
        }
        await sleep(10);
      }
      log(
        `failover ${round}: standby leads after ${Math.round(electedMs)} ms, ` +
          `decision on the event put at the kill after ${Math.round(decisionMs)} ms`,
      );
      results.push({ electedMs: Math.round(electedMs), decisionMs: Math.round(decisionMs) });
    }
  } finally {
    await bus.close();
    await store.close();
  }
  // The orchestrators `streamheal start` runs use the default lease (STREAMHEAL_ORCHESTRATOR_LEASE_MS).
  return { leaseMs: 2_000, rounds: results };
}

/** Machine CPU and our processes' CPU over a window: what others used meanwhile. */
function windowMeter(ours: () => number[]): { start(): { stop(): Window } } {
  const cpuOf = (pids: number[]) =>
    pids.reduce((n, pid) => {
      try {
        return n + cpuSeconds(pid);
      } catch {
        return n;
      }
    }, 0);
  return {
    start() {
      const pids = ours();
      const [m0, o0, t0] = [cpuTimes(), cpuOf(pids), performance.now()];
      return {
        stop() {
          const [m1, o1, t1] = [cpuTimes(), cpuOf(pids), performance.now()];
          return {
            otherCpu: Math.max(0, busyCores(m0, m1) - (o1 - o0) / ((t1 - t0) / 1000)),
            machine: describeCpus(m0, m1),
          };
        },
      };
    },
  };
}

/** Numbers to 2 decimals (milliseconds to 10 µs), for a readable report. */
function rounded(value: unknown): unknown {
  if (typeof value === 'number') return Math.round(value * 100) / 100;
  if (Array.isArray(value)) return value.map(rounded);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rounded(v)]));
  }
  return value;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function waitForPort(port: number, proc: Proc): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (!proc.running) throw new Error(`${proc.name} exited before listening`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`${proc.name} not listening on ${port}`);
    await sleep(50);
  }
}

/** `npm run bench -- backends [--only etcd,dynalite] [--window 5] ...` (main.ts registers it). */
export const BACKENDS_USAGE =
  'backends [--only embedded,dynalite,etcd] [--window 5] [--in-flight 16] [--subscribers 30] [--rate 100]\n' +
  '           [--resume-gap 100] [--resume-rounds 40] [--failover-rounds 3] [--quiet-wait 20]';

export function runBackendsFromFlags(flags: Map<string, string | true>): Promise<void> {
  const num = (name: string, def: number): number => {
    const value = flags.get(name);
    if (value === undefined) return def;
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} needs a positive number`);
    return n;
  };
  const only = flags.get('only');
  const backends = (typeof only === 'string' ? only.split(',') : [...BACKENDS]).map((name) => {
    if (!(BACKENDS as readonly string[]).includes(name)) {
      throw new Error(`--only: unknown backend ${name} (${BACKENDS.join(', ')})`);
    }
    return name as Backend;
  });
  return runBackends({
    backends,
    windowMs: num('window', 5) * 1000,
    inFlight: num('in-flight', 16),
    subscribers: num('subscribers', 30),
    rate: num('rate', 100),
    resumeGap: num('resume-gap', 100),
    resumeRounds: num('resume-rounds', 40),
    failoverRounds: num('failover-rounds', 3),
    quietWaitMs: num('quiet-wait', 20) * 1000,
  });
}
