/** Gateway metrics in Prometheus text, one registry per gateway (tests run several in one process). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createGatewayMetrics(nodeId: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ node: nodeId });
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    /** The seed's error counter: anything that kept a message from a client or refused a request. */
    pushErrors: new Counter({
      name: 'stream_push_errors_total',
      help: 'Push errors by reason (refused requests, slow consumers, store failures)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    connections: new Gauge({
      name: 'streamheal_connections',
      help: 'Open client connections by transport',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    channels: new Gauge({
      name: 'streamheal_channels',
      help: 'Channels with a feed on this gateway',
      registers: [registry],
    }),
    published: new Counter({
      name: 'streamheal_messages_published_total',
      help: 'Messages accepted by POST /v1/publish on this gateway',
      registers: [registry],
    }),
    delivered: new Counter({
      name: 'streamheal_messages_delivered_total',
      help: 'Messages written to client connections',
      registers: [registry],
    }),
    publishDuration: new Histogram({
      name: 'streamheal_publish_duration_seconds',
      help: 'Time from publish request to stored position',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    resumes: new Counter({
      name: 'streamheal_resumes_total',
      help: 'Resume requests by result',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
  };
}

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;
