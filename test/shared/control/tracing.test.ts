/** Trace context flows from the health event through the decision into the move request. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { InProcessBus } from '../../../shared/bus/InProcessBus.js';
import { ControlPlane } from '../../../shared/control/ControlPlane.js';
import type { MoveRequestRecord } from '../../../shared/control/moves.js';
import { MOVE_PREFIX } from '../../../shared/control/types.js';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';
import { initTracing, shutdownTracing } from '../../../shared/telemetry/tracing.js';
import { T0, captureLogs, overloaded, register } from './helpers.js';

describe('decide tracing', () => {
  const exporter = new InMemorySpanExporter();
  beforeAll(() => initTracing('test', [new SimpleSpanProcessor(exporter)]));
  afterAll(() => shutdownTracing());

  it('continues the trace of the health event into the decide span and the Migrate request', async () => {
    const store = new MemoryStore();
    const bus = new InProcessBus();
    try {
      for (const id of ['gateway-1', 'gateway-2', 'gateway-3']) await register(store, id, 30);
      const plane = new ControlPlane({ store, bus, logger: captureLogs().logger });
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const event = overloaded('gateway-1', T0);
      event.detail.traceparent = `00-${traceId}-00f067aa0ba902b7-01`;

      await plane.decide(event);
      await new Promise((resolve) => setTimeout(resolve, 50));

      const span = exporter.getFinishedSpans().find((s) => s.name === 'streamheal.decide')!;
      expect(span.spanContext().traceId).toBe(traceId);
      expect(span.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
      expect(span.attributes['streamheal.decisions']).toBe('eject');
      const [move] = await store.list<MoveRequestRecord>(MOVE_PREFIX);
      // The move carries the decide span as parent: the gateway's Migrate span joins this trace.
      expect(move!.value.trace.traceparent).toBe(`00-${traceId}-${span.spanContext().spanId}-01`);
    } finally {
      await bus.close();
      await store.close();
    }
  });
});
