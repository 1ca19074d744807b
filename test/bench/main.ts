/**
 * Benchmark entry: `node dist/test/bench/main.js <scenario> [--flag value ...]`
 * (`npm run bench -- throughput --subscribers 1000`). Scenarios start real processes and stop
 * every one of them by pid when they end, fail or are interrupted.
 */
import { installCleanup } from './procs.js';
import { runThroughput } from './throughput.js';

type Flags = Map<string, string | true>;

function parseFlags(argv: string[]): Flags {
  const flags: Flags = new Map();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const [name, inline] = arg.slice(2).split('=', 2) as [string, string | undefined];
    const next = argv[i + 1];
    if (inline !== undefined) flags.set(name, inline);
    else if (next !== undefined && !next.startsWith('--')) flags.set(name, (i++, next));
    else flags.set(name, true);
  }
  return flags;
}

function num(flags: Flags, name: string, def: number): number {
  const value = flags.get(name);
  if (value === undefined) return def;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} needs a positive number`);
  return n;
}

const scenarios: Record<string, { usage: string; run: (flags: Flags) => Promise<void> }> = {
  backends: {
    usage: 'backends [--only embedded,dynalite,etcd] [--window 5] [--rate 100] ... (backends.ts)',
    run: async (flags) => (await import('./backends.js')).runBackendsFromFlags(flags),
  },
  detection: {
    usage: 'detection [--trials 20] [--parallel 4] [--no-sweep]',
    run: async (flags) =>
      (await import('./detection.js')).runDetection({
        trials: num(flags, 'trials', 20),
        parallel: num(flags, 'parallel', 4),
        sweep: !flags.has('no-sweep'),
      }),
  },
  'detection-sweep': {
    usage: 'detection-sweep',
    run: async () => void (await (await import('./detection-sweep.js')).runDetectionSweep()),
  },
  throughput: {
    usage:
      'throughput [--subscribers 10000] [--processes 4] [--window 10] [--warmup 2] [--in-flight 4] [--idle 2]\n' +
      '           [--rounds 2] [--quiet-wait 30] [--max-other-cpu 0.15] [--max-windows 3] [--only gateway|raw] [--no-pin] [--no-latency] [--profile]',
    run: (flags) =>
      runThroughput({
        subscribers: num(flags, 'subscribers', 10_000),
        clientProcesses: num(flags, 'processes', 4),
        windowMs: num(flags, 'window', 10) * 1000,
        warmupMs: num(flags, 'warmup', 2) * 1000,
        inFlight: num(flags, 'in-flight', 4),
        idleMs: num(flags, 'idle', 2) * 1000,
        pin: !flags.has('no-pin'),
        profile: flags.has('profile'),
        servers:
          flags.get('only') === 'gateway'
            ? ['gateway']
            : flags.get('only') === 'raw'
              ? ['raw']
              : ['gateway', 'raw'],
        latency: !flags.has('no-latency') && flags.get('only') !== 'raw',
        rounds: num(flags, 'rounds', 2),
        quietWaitMs: num(flags, 'quiet-wait', 30) * 1000,
        maxOtherCpu: num(flags, 'max-other-cpu', 0.15),
        maxWindows: num(flags, 'max-windows', 3),
      }),
  },
};

const [name, ...rest] = process.argv.slice(2);
const scenario = name ? scenarios[name] : undefined;
if (!scenario) {
  console.error(
    `usage: main.js <scenario> [flags]\n${Object.values(scenarios)
      .map((s) => `  ${s.usage}`)
      .join('\n')}`,
  );
  process.exit(2);
}
installCleanup();
try {
  await scenario.run(parseFlags(rest));
  process.exit(0);
} catch (error) {
  console.error(error instanceof Error ? error.stack : error);
  const { stopAll } = await import('./procs.js');
  await stopAll();
  process.exit(1);
}
