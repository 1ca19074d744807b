/**
 * Publish-to-delivery latency across the local cluster (`streamheal start`: a control process
 * and 3 gateways on the control link): subscribers spread over the 3 gateways, a moderate
 * fixed publish rate through gateway-1, latency = receive time - `data.t` stamped by the
 * publisher just before sending (same machine clock, fractional ms).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyCores, cpuSeconds, cpuTimes, describeCpus, waitQuiet } from './cpu.js';
import { benchFile, freePort, log, sleep, start, type Proc } from './procs.js';
import { connectSubscribers } from './subscribers.js';
import { freePortRange } from '../support/ports.js';

export interface LatencyOptions {
  tmp: string;
  clients: Proc[];
  publisher: Proc;
  subscribers: number;
  /** Publishes per second. */
  rate: number;
  durationMs: number;
  /** See ThroughputOptions: disturbed windows are measured again. */
  maxOtherCpu: number;
  maxWindows: number;
  quietWaitMs: number;
}

export interface LatencyResult {
  subscribers: number;
  rate: number;
  durationMs: number;
  samples: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  lost: number;
  /** CPU used by processes outside this benchmark (and its cluster) during the window, in cores. */
  otherCpu: number;
  machine: string;
  /** Windows measured; the least disturbed one is reported. */
  windows: number;
}

const CHANNEL = 'latency';

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Pids of the supervised gateways, from the control process's status. */
async function gatewayPidsOf(control: string): Promise<number[]> {
  const res = await fetch(`${control}/v1/status`, { signal: AbortSignal.timeout(5_000) });
  const status = (await res.json()) as { processes?: { pid?: number }[] };
  return (status.processes ?? [])
    .map((p) => p.pid)
    .filter((p): p is number => typeof p === 'number');
}

function cpuSecondsOrZero(pid: number): number {
  try {
    return cpuSeconds(pid);
  } catch {
    return 0;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function measureClusterLatency(options: LatencyOptions): Promise<LatencyResult> {
  const cli = benchFile('../../workers/cli/main.js');
  if (!existsSync(cli)) throw new Error(`${cli} not found (the local cluster CLI is not built)`);
  const clusterFile = join(options.tmp, 'cluster.json');
  const portBase = await freePortRange(3);
  let controlPort = await freePort();
  while (controlPort >= portBase && controlPort < portBase + 3) controlPort = await freePort();
  const publishKey = `bench-${Math.random().toString(36).slice(2)}-key`;
  log(
    `latency: starting the local cluster (gateways on ${portBase}-${portBase + 2}, control on ${controlPort})`,
  );
  const proc = start({
    name: 'cluster',
    script: cli,
    args: [
      'start',
      '--gateways',
      '3',
      '--port-base',
      String(portBase),
      '--control-port',
      String(controlPort),
    ],
    logFile: join(options.tmp, 'cluster.log'),
    env: {
      STREAMHEAL_CLUSTER_FILE: clusterFile,
      STREAMHEAL_PUBLISH_KEY: publishKey,
      STREAMHEAL_CLUSTER_SECRET: Math.random().toString(36).slice(2).padEnd(32, 'x'),
      STREAMHEAL_LOG_LEVEL: 'warn',
    },
  });
  let gatewayPids: number[] = [];
  try {
    const deadline = Date.now() + 60_000;
    while (!existsSync(clusterFile)) {
      if (!proc.running)
        throw new Error(
          `the cluster exited while starting (see ${join(options.tmp, 'cluster.log')})`,
        );
      if (Date.now() > deadline) throw new Error('the cluster was not ready after 60 s');
      await sleep(200);
    }
    const file = JSON.parse(readFileSync(clusterFile, 'utf8')) as {
      control: string;
      gateways: { name: string; url: string }[];
      publishKey: string;
    };
    gatewayPids = await gatewayPidsOf(file.control);
    const wsUrls = file.gateways.map((g) => `${g.url.replace(/^http/, 'ws')}/v1/ws`);
    log(
      `latency: cluster up (${file.gateways.length} gateways, pids ${gatewayPids.join(', ') || 'unknown'}); connecting ${options.subscribers} subscribers`,
    );

    const { clients, publisher, subscribers } = options;
    await connectSubscribers(clients, {
      urls: wsUrls,
      total: subscribers,
      channel: CHANNEL,
      concurrency: 20,
      mode: 'parse',
    });
    await sleep(500);

    // Everything of ours: load generators, this process, the cluster's control and gateways.
    const ourPids = [
      process.pid,
      proc.pid,
      publisher.pid,
      ...clients.map((c) => c.pid),
      ...gatewayPids,
    ];
    const ours = () => ourPids.reduce((n, pid) => n + cpuSecondsOrZero(pid), 0);
    const received = async () =>
      (await Promise.all(clients.map((c) => c.request<{ messages: number }>('snapshot')))).reduce(
        (n, s) => n + s.messages,
        0,
      );
    let published = 0;

    /** One window: 1 s warm-up, then `durationMs` recorded; waits for delivery to finish. */
    const window = async (): Promise<LatencyResult> => {
      await publisher.request('start', {
        url: file.gateways[0]!.url,
        key: file.publishKey,
        channel: CHANNEL,
        rate: options.rate,
      });
      await sleep(1_000);
      await Promise.all(clients.map((c) => c.request('startLatency')));
      const [m0, o0, t0] = [cpuTimes(), ours(), performance.now()];
      await sleep(options.durationMs);
      const [m1, o1, t1] = [cpuTimes(), ours(), performance.now()];
      const totals = await publisher.request<{ ok: number; failed: number; firstError?: string }>(
        'stop',
      );
      if (totals.failed > 0)
        log(`latency: ${totals.failed} publishes failed (${totals.firstError})`);
      published += totals.ok;
      const expected = published * subscribers;
      const drainBy = Date.now() + 5_000;
      while ((await received()) < expected && Date.now() < drainBy) await sleep(100);
      const lost = expected - (await received());
      const parts = await Promise.all(clients.map((c) => c.request<number[]>('stopLatency')));
      const all = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const part of parts) {
        all.set(part, at);
        at += part.length;
      }
      all.sort();
      return {
        subscribers,
        rate: options.rate,
        durationMs: options.durationMs,
        samples: all.length,
        p50: percentile(all, 50),
        p90: percentile(all, 90),
        p99: percentile(all, 99),
        max: all.length ? all[all.length - 1]! : NaN,
        lost,
        otherCpu: Math.max(0, busyCores(m0, m1) - (o1 - o0) / ((t1 - t0) / 1000)),
        machine: describeCpus(m0, m1),
        windows: 0,
      };
    };

    // As for throughput: a window disturbed by other processes is measured again after a quiet
    // spell, and the least disturbed one counts.
    let best: LatencyResult | undefined;
    let windows = 0;
    for (let attempt = 1; attempt <= options.maxWindows; attempt++) {
      if (attempt > 1) await waitQuiet(options.quietWaitMs);
      const result = await window();
      windows++;
      log(
        `latency: window ${attempt}: p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms; ` +
          `${result.machine}; other processes ${result.otherCpu.toFixed(2)} cores`,
      );
      if (!best || result.otherCpu < best.otherCpu) best = result;
      if (result.otherCpu <= options.maxOtherCpu) break;
    }
    await Promise.all(clients.map((c) => c.request('close')));
    return { ...best!, windows };
  } finally {
    if (gatewayPids.length === 0 && proc.running) {
      // Learn the gateway pids even if the run failed early, so none can outlive the bench.
      try {
        const file = JSON.parse(readFileSync(clusterFile, 'utf8')) as { control: string };
        gatewayPids = await gatewayPidsOf(file.control);
      } catch {
        /* no cluster file or no status: the supervisor still stops its children with it */
      }
    }
    await proc.stop(15_000);
    for (const pid of gatewayPids) {
      if (!alive(pid)) continue;
      log(`latency: gateway pid ${pid} still running after the cluster stopped; killing it`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}
