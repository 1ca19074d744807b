/**
 * Probe cost (issue 3, seed 2.1): one kernel sweep over 1,000 and 10,000 sockets of one port
 * (a sock_diag dump on a worker thread) against a per-socket getsockopt(TCP_INFO) loop over the
 * same fds on the main thread, and the event-loop delay a KernelSweeper adds when it sweeps all
 * 10,000 registered sockets every 500 ms.
 *
 * This process is the server (it holds the accepted sockets, so the per-socket loop can read
 * their fds); client processes open the connections, which keeps every process under the
 * machine's 20,000 fds. `node dist/test/bench/detection-sweep.js [--sockets 10000]` runs it
 * alone; `runDetectionSweep` is what the bench entry calls.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import {
  KernelSweeper,
  fdOf,
  kernelProbes,
  type SweepStats,
} from '../../workers/gateway/probes/kernelProbe.js';
import { benchFile, installCleanup, log, sleep, start, stopAll, type Proc } from './procs.js';

export interface DetectionSweepOptions {
  /** Sizes to measure, ascending (default [1000, 10000]). */
  sizes?: number[];
  /** Client processes that open the connections (default 2). */
  processes?: number;
  /** Sweeps timed per size (default 30). */
  repeats?: number;
  /** Rounds of one idle and one sweeping event-loop window (default 5). */
  loopRounds?: number;
  /** Seconds per event-loop window (default 4). */
  loopWindowSeconds?: number;
  /** monitorEventLoopDelay resolution in ms (default 1). */
  loopResolutionMs?: number;
  /** Sweep interval while measuring the event-loop delay (default 500 ms). */
  intervalMs?: number;
}

export interface SweepCost {
  sockets: number;
  /** Rows the dump returned (should equal `sockets`). */
  rows: number;
  /** Dump time on the worker thread, ms. */
  dumpP50Ms: number;
  dumpP99Ms: number;
  /** Request to resolved promise, as the caller sees it, ms. */
  wallP50Ms: number;
  wallP99Ms: number;
  /** The per-socket getsockopt(TCP_INFO) loop over the same fds, on the main thread, ms. */
  perSocketP50Ms: number;
  perSocketP99Ms: number;
}

export interface DetectionSweepFigures {
  scenario: 'detection-sweep';
  sizes: SweepCost[];
  /** monitorEventLoopDelay resolution, ms (the delays below include it). */
  loopResolutionMs: number;
  /** Event-loop delay p99 with nothing to do, ms (median over the rounds). */
  loopIdleP99Ms: number;
  /** Event-loop delay p99 while a KernelSweeper sweeps every socket every `intervalMs`. */
  loopSweepingP99Ms: number;
  loopIdleMaxMs: number;
  loopSweepingMaxMs: number;
  /** loopSweepingP99Ms - loopIdleP99Ms (target < 1 ms). */
  loopDelayAddedP99Ms: number;
  /** Main-thread time of the sweeper's matching per sweep (all its slices), ms. */
  sweeperMainP50Ms: number;
  sweeperMainP99Ms: number;
  /** The longest single slice of a sweep (the most it held the event loop at once), ms. */
  sweeperSliceP50Ms: number;
  sweeperSliceP99Ms: number;
  /** The very first sweep's main-thread time (code not yet optimised by V8), ms. */
  sweeperFirstMainMs: number;
  sweeps: number;
  registered: number;
  sweep1kMs: number;
  sweep10kMs: number;
  sweep10kPerSocketMs: number;
}

function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const round = (n: number) => Math.round(n * 1000) / 1000;

async function acceptUntil(accepted: Socket[], count: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (accepted.length < count) {
    if (Date.now() > deadline)
      throw new Error(`only ${accepted.length} of ${count} connections accepted`);
    await sleep(20);
  }
}

async function loopDelay(ms: number, resolution: number): Promise<{ p99: number; max: number }> {
  const h = monitorEventLoopDelay({ resolution });
  h.enable();
  await sleep(ms);
  h.disable();
  return { p99: h.percentile(99) / 1e6, max: h.max / 1e6 };
}

export async function runDetectionSweep(
  options: DetectionSweepOptions = {},
): Promise<DetectionSweepFigures> {
  if (!kernelProbes.available) throw new Error(`kernel probes unavailable: ${kernelProbes.reason}`);
  const sizes = options.sizes ?? [1_000, 10_000];
  const processes = options.processes ?? 2;
  const repeats = options.repeats ?? 30;
  const rounds = options.loopRounds ?? 5;
  const windowMs = (options.loopWindowSeconds ?? 4) * 1000;
  const resolutionMs = options.loopResolutionMs ?? 1;
  const intervalMs = options.intervalMs ?? 500;

  const accepted: Socket[] = [];
  const server: Server = createServer((socket) => {
    socket.on('error', () => {});
    accepted.push(socket);
  });
  await new Promise<void>((resolve) =>
    server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, resolve),
  );
  const port = (server.address() as { port: number }).port;
  const clients: Proc[] = [];
  for (let i = 0; i < processes; i++)
    clients.push(
      start({
        name: `sweep-client-${i}`,
        script: benchFile('./detection-sweep-client.js'),
        ipc: true,
      }),
    );

  try {
    const results: SweepCost[] = [];
    let opened = 0;
    for (const size of sizes) {
      const more = size - opened;
      const shares = clients.map(
        (_, i) => Math.floor(more / processes) + (i < more % processes ? 1 : 0),
      );
      log(`opening ${more} connections to port ${port} from ${processes} processes`);
      await Promise.all(
        clients.map((c, i) => (shares[i]! > 0 ? c.request('open', { port, count: shares[i] }) : 0)),
      );
      await acceptUntil(accepted, size);
      opened = size;
      await sleep(200);

      const dump: number[] = [];
      const wall: number[] = [];
      let rows = 0;
      for (let i = 0; i < repeats + 2; i++) {
        const t0 = performance.now();
        const raw = (await kernelProbes.sweepRaw(port))!;
        const t1 = performance.now();
        if (i < 2) continue; // warm-up
        rows = raw.count;
        dump.push(raw.dumpUs / 1000);
        wall.push(t1 - t0);
      }
      const fds = accepted.map(fdOf);
      const perSocket: number[] = [];
      for (let i = 0; i < Math.min(repeats, 10) + 1; i++) {
        const t0 = performance.now();
        let ok = 0;
        for (const fd of fds) if (kernelProbes.tcpInfo(fd)) ok++;
        const t1 = performance.now();
        if (ok !== fds.length) throw new Error(`getsockopt failed on ${fds.length - ok} fds`);
        if (i > 0) perSocket.push(t1 - t0);
        await sleep(10);
      }
      const cost: SweepCost = {
        sockets: size,
        rows,
        dumpP50Ms: round(quantile(dump, 0.5)),
        dumpP99Ms: round(quantile(dump, 0.99)),
        wallP50Ms: round(quantile(wall, 0.5)),
        wallP99Ms: round(quantile(wall, 0.99)),
        perSocketP50Ms: round(quantile(perSocket, 0.5)),
        perSocketP99Ms: round(quantile(perSocket, 0.99)),
      };
      log(`${size} sockets: ${JSON.stringify(cost)}`);
      if (rows !== size) throw new Error(`the sweep saw ${rows} sockets, expected ${size}`);
      results.push(cost);
    }

    // Idle and sweeping windows alternate, so both see the same background load on this
    // shared 2-core machine; each figure is the median over the rounds.
    const stats: SweepStats[] = [];
    const sweeper = new KernelSweeper({
      port,
      intervalMs,
      onSweep: (s) => stats.push(s),
      onError: (e) => log(`sweeper: ${e.message}`),
    });
    accepted.forEach((socket, i) => sweeper.register(`c${i}`, socket));
    const idleP99: number[] = [];
    const sweepingP99: number[] = [];
    const idleMax: number[] = [];
    const sweepingMax: number[] = [];
    log(
      `event-loop delay: ${rounds} rounds of ${windowMs / 1000} s idle / ${windowMs / 1000} s ` +
        `sweeping ${accepted.length} registered sockets every ${intervalMs} ms (resolution ${resolutionMs} ms)`,
    );
    for (let round = 0; round < rounds; round++) {
      const idle = await loopDelay(windowMs, resolutionMs);
      idleP99.push(idle.p99);
      idleMax.push(idle.max);
      sweeper.start();
      const sweeping = await loopDelay(windowMs, resolutionMs);
      sweeper.stop();
      sweepingP99.push(sweeping.p99);
      sweepingMax.push(sweeping.max);
      await sleep(intervalMs); // a sweep in flight ends outside the idle window
    }
    sweeper.close();
    if (stats.some((s) => s.matched !== accepted.length))
      throw new Error('the sweeper did not match every registered socket');

    const steady = stats.slice(1);
    const main = steady.map((s) => s.mainMs);
    const slices = steady.map((s) => s.maxSliceMs);
    const last = results[results.length - 1]!;
    const first = results[0]!;
    const figures: DetectionSweepFigures = {
      scenario: 'detection-sweep',
      sizes: results,
      loopResolutionMs: resolutionMs,
      loopIdleP99Ms: round(quantile(idleP99, 0.5)),
      loopSweepingP99Ms: round(quantile(sweepingP99, 0.5)),
      loopIdleMaxMs: round(quantile(idleMax, 0.5)),
      loopSweepingMaxMs: round(quantile(sweepingMax, 0.5)),
      loopDelayAddedP99Ms: round(Math.max(0, quantile(sweepingP99, 0.5) - quantile(idleP99, 0.5))),
      sweeperMainP50Ms: round(quantile(main, 0.5)),
      sweeperMainP99Ms: round(quantile(main, 0.99)),
      sweeperSliceP50Ms: round(quantile(slices, 0.5)),
      sweeperSliceP99Ms: round(quantile(slices, 0.99)),
      sweeperFirstMainMs: round(stats[0]?.mainMs ?? NaN),
      sweeps: stats.length,
      registered: accepted.length,
      sweep1kMs: first.dumpP50Ms,
      sweep10kMs: last.dumpP50Ms,
      sweep10kPerSocketMs: last.perSocketP50Ms,
    };
    console.log(JSON.stringify(figures));
    return figures;
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    for (const s of accepted) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  installCleanup();
  const at = process.argv.indexOf('--sockets');
  const max = at > 0 ? Number(process.argv[at + 1]) : 10_000;
  runDetectionSweep({ sizes: max > 1_000 ? [1_000, max] : [max] }).then(
    () => process.exit(0),
    async (error: unknown) => {
      console.error(error instanceof Error ? error.stack : error);
      await stopAll();
      process.exit(1);
    },
  );
}
