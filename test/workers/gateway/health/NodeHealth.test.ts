import { describe, expect, it } from 'vitest';
import { InProcessBus } from '../../../../shared/bus/InProcessBus.js';
import type { BusEvent } from '../../../../shared/bus/EventBus.js';
import { createLogger } from '../../../../shared/telemetry/logger.js';
import { HealthReporter } from '../../../../workers/gateway/health/HealthReporter.js';
import { NodeHealth } from '../../../../workers/gateway/health/NodeHealth.js';

describe('NodeHealth', () => {
  it('reports CPU > 95 % only after 30 s, once, and its end once', async () => {
    const bus = new InProcessBus();
    const seen: BusEvent[] = [];
    bus.subscribe({ source: ['streamheal.gateway'] }, (e) => void seen.push(e));
    const reporter = new HealthReporter({
      bus,
      nodeId: 'gateway-1',
      logger: createLogger('t', 'silent'),
      flushMs: 1,
    });
    let now = 0;
    const health = new NodeHealth(reporter, undefined, () => now);
    const sample = (cpu: number) =>
      health.onSample({ cpu, eventLoopDelayP99Ms: 1, eventLoopUtilization: cpu });
    for (; now <= 29_500; now += 500) sample(0.99);
    expect(health.active.size).toBe(0);
    for (; now <= 40_000; now += 500) sample(0.99);
    expect([...health.active]).toEqual(['cpu-overload']);
    sample(0.5);
    sample(0.5);
    await reporter.close();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(seen.map((e) => [e['detail-type'], e.detail.rule, e.detail.reason])).toEqual([
      ['Node Overloaded', 'cpu-overload', 'CPU > 95% for 30s'],
      ['Node Recovered', 'cpu-overload', 'CPU > 95% for 30s'],
    ]);
    await bus.close();
  });
});
