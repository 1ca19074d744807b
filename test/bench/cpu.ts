/** CPU accounting from /proc: per-process and per-CPU times, and waiting for a quiet machine. */
import { readFileSync } from 'node:fs';
import { log, sleep } from './procs.js';

export type CpuTimes = Array<{ busy: number; softirq: number; steal: number; total: number }>;

/** utime + stime of a process in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Per-CPU jiffies from /proc/stat: busy (everything but idle and iowait), softirq, steal, total. */
export function cpuTimes(): CpuTimes {
  return readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .filter((line) => /^cpu\d+ /.test(line))
    .map((line) => {
      const [user, nice, system, idle, iowait, irq, softirq, steal] = line
        .split(/\s+/)
        .slice(1, 9)
        .map(Number) as number[];
      const total = user! + nice! + system! + idle! + iowait! + irq! + softirq! + steal!;
      return { busy: total - idle! - iowait!, softirq: softirq!, steal: steal!, total };
    });
}

/** "cpu0 97% (softirq 12%, steal 0%), cpu1 ..." between two cpuTimes() readings. */
export function describeCpus(a: CpuTimes, b: CpuTimes): string {
  return b
    .map((t, i) => {
      const d = (k: 'busy' | 'softirq' | 'steal') => t[k] - a[i]![k];
      const total = t.total - a[i]!.total || 1;
      const pct = (v: number) => `${Math.round((100 * v) / total)}%`;
      return `cpu${i} ${pct(d('busy'))} (softirq ${pct(d('softirq'))}, steal ${pct(d('steal'))})`;
    })
    .join(', ');
}

/** Cores used between two cpuTimes() readings, over all CPUs. */
export function busyCores(a: CpuTimes, b: CpuTimes): number {
  return b.reduce((n, t, i) => n + (t.busy - a[i]!.busy) / (t.total - a[i]!.total || 1), 0);
}

/**
 * Other engineers' tests share these 2 cores. Before a measurement (our own processes idle),
 * wait until the machine has been mostly idle for a second, or give up after `maxMs`.
 */
export async function waitQuiet(maxMs: number): Promise<void> {
  const deadline = Date.now() + maxMs;
  for (;;) {
    const a = cpuTimes();
    await sleep(1_000);
    const b = cpuTimes();
    const busy = busyCores(a, b);
    if (busy < 0.25) return;
    if (Date.now() >= deadline) {
      return log(
        `machine still busy (${busy.toFixed(2)} cores used by other processes); measuring anyway`,
      );
    }
  }
}
