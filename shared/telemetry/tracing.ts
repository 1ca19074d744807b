/**
 * OpenTelemetry in every process. Spans always propagate (trace ids cross gateways through
 * stored messages), but are recorded and exported only when OTLP is configured by the standard
 * variables (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_TRACES_EXPORTER) or a test passes processors.
 */
import { NodeSDK } from '@opentelemetry/sdk-node';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  NoopSpanProcessor,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { context, propagation, trace, type Context, type Tracer } from '@opentelemetry/api';

let sdk: NodeSDK | undefined;

export function exportConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  const exporter = env.OTEL_TRACES_EXPORTER;
  return (
    (exporter !== undefined && exporter !== 'none') ||
    env.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined ||
    env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined
  );
}

export function initTracing(serviceName: string, spanProcessors?: SpanProcessor[]): void {
  if (sdk) return;
  const recording = spanProcessors !== undefined || exportConfigured();
  sdk = new NodeSDK({
    serviceName,
    sampler: recording ? new AlwaysOnSampler() : new AlwaysOffSampler(),
    // Without a processor NodeSDK registers no provider and ids would not propagate.
    ...(spanProcessors
      ? { spanProcessors }
      : recording
        ? {}
        : { spanProcessors: [new NoopSpanProcessor()] }),
    // Metrics go through prom-client and logs through pino; keep the SDK from exporting them.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();
}

export async function shutdownTracing(): Promise<void> {
  await sdk?.shutdown();
  sdk = undefined;
}

export function tracer(): Tracer {
  return trace.getTracer('streamheal');
}

/** W3C trace context of `ctx` as a plain carrier, for storing beside a message. */
export function injectContext(ctx: Context): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

export function extractContext(carrier: Record<string, string> | undefined): Context {
  return carrier ? propagation.extract(context.active(), carrier) : context.active();
}
