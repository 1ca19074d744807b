import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { initTracing, shutdownTracing } from '../../../shared/telemetry/tracing.js';
import { Cluster, publish } from './harness.js';

describe('tracing', () => {
  const exporter = new InMemorySpanExporter();
  beforeAll(() => initTracing('test', [new SimpleSpanProcessor(exporter)]));
  afterAll(() => shutdownTracing());

  it('joins the deliver span on another gateway to the publish trace, and to the caller', async () => {
    const cluster = new Cluster();
    try {
      const [a, b] = [await cluster.gateway(), await cluster.gateway()];
      const subscriber = await cluster.client(b);
      subscriber.send({ type: 'subscribe', channel: 'traced' });
      await subscriber.next((f) => f.type === 'subscribed');
      const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
      await publish(a, { channel: 'traced', data: 1 }, undefined, {
        traceparent: `00-${callerTrace}-00f067aa0ba902b7-01`,
      });
      await subscriber.waitForMessages('traced', 1);
      await new Promise((r) => setTimeout(r, 50));
      const spans = exporter.getFinishedSpans();
      const publishSpan = spans.find((s) => s.name === 'publish')!;
      const deliverSpan = spans.find((s) => s.name === 'deliver')!;
      expect(publishSpan.spanContext().traceId).toBe(callerTrace);
      expect(deliverSpan.spanContext().traceId).toBe(callerTrace);
      expect(deliverSpan.parentSpanContext?.spanId).toBe(publishSpan.spanContext().spanId);
      expect(deliverSpan.attributes['streamheal.delivered']).toBe(1);
    } finally {
      await cluster.close();
    }
  });
});
