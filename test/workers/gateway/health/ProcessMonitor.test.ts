import { describe, expect, it } from 'vitest';
import {
  ProcessMonitor,
  type ProcessSample,
} from '../../../../workers/gateway/health/ProcessMonitor.js';

function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

describe('ProcessMonitor', () => {
  it('sees a blocked event loop as CPU, delay and utilisation', async () => {
    const samples: ProcessSample[] = [];
    const monitor = new ProcessMonitor((s) => samples.push(s), 100);
    monitor.start();
    await new Promise((resolve) => setTimeout(resolve, 350));
    const idle = samples.at(-1)!;
    for (let i = 0; i < 6; i++) {
      busy(80);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await new Promise((resolve) => setTimeout(resolve, 120));
    monitor.stop();
    const loaded = samples.slice(-3).reduce((a, b) => (a.cpu > b.cpu ? a : b));
    expect(idle.eventLoopUtilization).toBeLessThan(0.5);
    expect(loaded.cpu).toBeGreaterThan(0.5);
    expect(loaded.eventLoopUtilization).toBeGreaterThan(0.5);
    expect(loaded.eventLoopDelayP99Ms).toBeGreaterThan(40);
  });
});
