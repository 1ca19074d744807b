import { afterEach, describe, expect, it } from 'vitest';
import type { BusEvent, EventBus } from '../../../../shared/bus/EventBus.js';
import { InProcessBus } from '../../../../shared/bus/InProcessBus.js';
import { createLogger } from '../../../../shared/telemetry/logger.js';
import { HealthReporter } from '../../../../workers/gateway/health/HealthReporter.js';

/** An in-process bus that can be switched off, as a bus that is down. */
class FlakyBus implements EventBus {
  down = false;
  readonly inner = new InProcessBus();
  put(events: BusEvent[]): Promise<void> {
    return this.down ? Promise.reject(new Error('bus unreachable')) : this.inner.put(events);
  }
  subscribe(...args: Parameters<EventBus['subscribe']>) {
    return this.inner.subscribe(...args);
  }
  close() {
    return this.inner.close();
  }
}

const logger = createLogger('test', 'silent');
const until = async (check: () => boolean, timeoutMs = 5_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

describe('HealthReporter', () => {
  const bus = new FlakyBus();
  afterEach(() => {
    bus.down = false;
  });

  it('batches events in the gateway envelope, in order', async () => {
    const seen: BusEvent[] = [];
    const off = bus.subscribe({ source: ['streamheal.gateway'] }, (e) => void seen.push(e));
    const reporter = new HealthReporter({ bus, nodeId: 'gateway-7', logger, flushMs: 20 });
    for (let i = 0; i < 25; i++) reporter.report('Write Blocked', { i });
    await until(() => seen.length === 25);
    expect(seen.map((e) => e.detail.i)).toEqual([...Array(25).keys()]);
    expect(seen[0]).toMatchObject({
      'detail-type': 'Write Blocked',
      resources: ['gateway-7'],
      detail: { node: 'gateway-7' },
    });
    off();
    await reporter.close();
  });

  it('keeps events while the bus is down and sends them, in order, when it is back', async () => {
    const seen: number[] = [];
    const off = bus.subscribe(
      { 'detail-type': ['Flash Cuts'] },
      (e) => void seen.push(e.detail.i as number),
    );
    const reporter = new HealthReporter({ bus, nodeId: 'g', logger, flushMs: 10 });
    bus.down = true;
    for (let i = 0; i < 15; i++) reporter.report('Flash Cuts', { i });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seen).toEqual([]);
    expect(reporter.queued).toBe(15);
    bus.down = false;
    await until(() => seen.length === 15, 10_000);
    expect(seen).toEqual([...Array(15).keys()]);
    off();
    await reporter.close();
  });

  it('bounds what it keeps and counts what it dropped', async () => {
    const reporter = new HealthReporter({ bus, nodeId: 'g', logger, flushMs: 10, maxQueued: 5 });
    bus.down = true;
    for (let i = 0; i < 12; i++) reporter.report('Flash Cuts', { i });
    expect(reporter.queued).toBe(5);
    expect(reporter.dropped).toBe(7);
    await reporter.close();
  });
});
