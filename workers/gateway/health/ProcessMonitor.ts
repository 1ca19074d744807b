/**
 * Samples this process's load every interval: CPU (fraction of one core, across all threads),
 * event-loop delay (p99 over the interval) and event-loop utilisation. These tell "our own
 * process is the bottleneck" apart from slow clients and the network (seed 3.2).
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks';

export interface ProcessSample {
  /** CPU time used over the interval / wall time (1 = one core busy). */
  cpu: number;
  eventLoopDelayP99Ms: number;
  /** Share of the interval the event loop was busy, 0–1. */
  eventLoopUtilization: number;
}

export class ProcessMonitor {
  private readonly delay = monitorEventLoopDelay({ resolution: 10 });
  private timer?: NodeJS.Timeout;
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();
  private lastElu: EventLoopUtilization = performance.eventLoopUtilization();
  /** The most recent sample. */
  latest: ProcessSample = { cpu: 0, eventLoopDelayP99Ms: 0, eventLoopUtilization: 0 };

  constructor(
    private readonly onSample: (sample: ProcessSample) => void,
    private readonly intervalMs = 500,
  ) {}

  start(): void {
    this.delay.enable();
    this.timer = setInterval(() => this.sample(), this.intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.delay.disable();
  }

  private sample(): void {
    const now = performance.now();
    const cpu = process.cpuUsage(this.lastCpu);
    const elu = performance.eventLoopUtilization(this.lastElu);
    this.latest = {
      cpu: (cpu.user + cpu.system) / 1000 / (now - this.lastAt),
      eventLoopDelayP99Ms: this.delay.percentile(99) / 1e6,
      eventLoopUtilization: elu.utilization,
    };
    this.lastCpu = process.cpuUsage();
    this.lastElu = performance.eventLoopUtilization();
    this.lastAt = now;
    this.delay.reset();
    this.onSample(this.latest);
  }
}
