/** Events, registrations and a log capture for the control-plane tests. */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import { HealthEvents } from '../../../shared/health/events.js';
import type { StateStore } from '../../../shared/store/StateStore.js';

export const T0 = Date.parse('2025-06-01T12:00:00.000Z');

/** A gateway health event as HealthReporter makes it, at `t` (ms). */
export function health(
  node: string,
  detailType: string,
  detail: Record<string, unknown>,
  t: number,
): BusEvent {
  const event = makeEvent(Sources.gateway, detailType, { node, ...detail }, [node]);
  return { ...event, time: new Date(t).toISOString() };
}

/** The gateway's own report: its `cpu-overload` rule has held for 30 s. */
export function overloaded(node: string, t: number, cpu = 0.99): BusEvent {
  return health(
    node,
    HealthEvents.nodeOverloaded,
    { rule: 'cpu-overload', reason: 'CPU > 95% for 30s', cpuUtilisation: cpu, eventLoopDelayMs: 4 },
    t,
  );
}

export function recovered(node: string, t: number, cpu = 0.3): BusEvent {
  return health(
    node,
    HealthEvents.nodeRecovered,
    { rule: 'cpu-overload', reason: 'CPU > 95% for 30s', cpuUtilisation: cpu, eventLoopDelayMs: 2 },
    t,
  );
}

/** A plain CPU sample (no rule named): observed at its own time only. */
export function cpuSample(node: string, t: number, cpu: number): BusEvent {
  return health(node, 'Load Report', { cpuUtilisation: cpu }, t);
}

export function canaryFailing(node: string, t: number, misses = 3): BusEvent {
  return health(node, HealthEvents.canaryFailing, { misses }, t);
}

export function canaryRecovered(node: string, t: number): BusEvent {
  return health(node, HealthEvents.canaryRecovered, { latencyMs: 3 }, t);
}

/** Writes `nodes/<id>` the way a gateway registers (without a lease unless given). */
export async function register(
  store: StateStore,
  id: string,
  ws = 0,
  extra: Record<string, unknown> = {},
  lease?: string,
): Promise<void> {
  await store.put(
    `nodes/${id}`,
    {
      id,
      url: `http://127.0.0.1:0/${id}`,
      pid: 1000 + Number(id.replace(/\D/g, '') || 0),
      startedAt: new Date(T0 - 3_600_000).toISOString(),
      connections: { ws, sse: 0 },
      subscriptions: ws,
      channels: 1,
      ...extra,
    },
    lease === undefined ? {} : { lease },
  );
}

export interface LogCapture {
  logger: Logger;
  lines(): { level: number; msg: string; [key: string]: unknown }[];
  messages(): string[];
}

/** A real pino logger writing JSON lines into memory. */
export function captureLogs(): LogCapture {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const logger = pino({ level: 'debug' }, stream);
  const parsed = () => lines.map((line) => JSON.parse(line) as { level: number; msg: string });
  return { logger, lines: parsed, messages: () => parsed().map((line) => line.msg) };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
