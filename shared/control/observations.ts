/**
 * Health events (docs/health-events.md) as observations for the node rules: which facts an
 * event tells, and when they were true. Pure; the fact names are the policy's vocabulary
 * (docs/control-plane.md lists them).
 *
 * Gateways report transitions, not samples. A `Node Overloaded` event for the gateway's own rule
 * `cpu-overload` says the CPU has been above 95 % for the last 30 s; so besides the value at the
 * event's time it yields the same value backdated to when the condition began (`detail.since` or
 * `detail.heldForMs` when the gateway sends them, else the duration of the gateway's rule by
 * name). The control plane's `thresholdFor` rule then sees the whole stretch, as if it had had
 * the samples.
 */
import type { BusEvent } from '../bus/EventBus.js';
import { HealthEvents } from '../health/events.js';
import type { FactValue } from '../rules/index.js';
import type { RegisteredNode, TimedObservation } from './types.js';

/**
 * The gateway's node rules (workers/gateway/health/NodeHealth.ts, GATEWAY_NODE_RULES): the metric
 * each one watches and how long it must hold before the gateway reports it. A test keeps the two
 * in step.
 */
export const GATEWAY_CONDITIONS: Readonly<Record<string, { fact: string; forMs: number }>> = {
  'cpu-overload': { fact: 'cpuUtilisation', forMs: 30_000 },
  'event-loop-lag': { fact: 'eventLoopDelayMs', forMs: 5_000 },
};

/**
 * Share of a node's WebSocket connections that must degrade (or recover) in one report for the
 * report to count as one node-level ping timeout (or answered ping): a minority is the clients'
 * trouble, a majority the node's.
 */
export const NODE_PING_MAJORITY = 0.5;

/** One delivery-canary miss is one ping timeout of the node; more than this are not counted. */
const MAX_MISSES_PER_EVENT = 9;

/** The event's time in ms, or NaN when it does not parse. */
export function eventTimeMs(event: BusEvent): number {
  return Date.parse(event.time);
}

/**
 * The observations a health event yields, in time order. `registered` is the node's registration
 * (for shares of its connections); without it, shares are unknown.
 */
export function healthObservations(
  event: BusEvent,
  registered?: RegisteredNode,
): TimedObservation[] {
  const t = eventTimeMs(event);
  if (!Number.isFinite(t)) return [];
  const detail = event.detail as Record<string, unknown>;
  const at = (facts: Record<string, FactValue>, suffix = ''): TimedObservation => ({
    id: event.id + suffix,
    t,
    facts,
  });
  switch (event['detail-type']) {
    case HealthEvents.nodeOverloaded:
    case HealthEvents.nodeRecovered: {
      const overloaded = event['detail-type'] === HealthEvents.nodeOverloaded;
      const facts = numbers(detail, ['cpuUtilisation', 'eventLoopDelayMs']);
      facts.overloaded = overloaded;
      const now = at(facts);
      if (!overloaded) return [now];
      const began = conditionStart(detail, t);
      const condition = GATEWAY_CONDITIONS[String(detail.rule)];
      const value = condition ? facts[condition.fact] : undefined;
      if (began === undefined || began >= t || condition === undefined || value === undefined) {
        return [now];
      }
      // The metric held its side of the threshold since the condition began.
      return [{ id: `${event.id}#began`, t: began, facts: { [condition.fact]: value } }, now];
    }
    case HealthEvents.connectionsDegraded:
    case HealthEvents.connectionsRecovered: {
      const degraded = event['detail-type'] === HealthEvents.connectionsDegraded;
      const count = typeof detail.count === 'number' && detail.count >= 0 ? detail.count : 0;
      const facts: Record<string, FactValue> = {
        [degraded ? 'degradedConnections' : 'recoveredConnections']: count,
      };
      const ws = registered?.connections?.ws;
      if (typeof ws === 'number' && ws > 0) {
        const share = Math.min(1, count / ws);
        facts[degraded ? 'degradedShare' : 'recoveredShare'] = share;
        if (share >= NODE_PING_MAJORITY) facts.pingTimedOut = degraded;
      }
      return [at(facts)];
    }
    case HealthEvents.canaryFailing: {
      const misses = typeof detail.misses === 'number' ? Math.floor(detail.misses) : 1;
      const count = Math.max(1, Math.min(MAX_MISSES_PER_EVENT, misses));
      // Each miss is one unanswered ping of the node through its own delivery path.
      return Array.from({ length: count }, (_, i) =>
        at({ pingTimedOut: true, canaryFailing: true }, `#${i + 1}`),
      );
    }
    case HealthEvents.canaryRecovered:
      return [
        at({
          pingTimedOut: false,
          canaryFailing: false,
          ...numbers(detail, ['latencyMs'], 'canaryLatencyMs'),
        }),
      ];
    case HealthEvents.flashCuts: {
      const facts: Record<string, FactValue> = {};
      if (typeof detail.count === 'number') facts.flashCuts = detail.count;
      if (typeof detail.perMinute === 'number') facts.flashCutsPerMinute = detail.perMinute;
      return [at(facts)];
    }
    case HealthEvents.writeBlocked: {
      const facts: Record<string, FactValue> = {};
      const causes = { slow_client: 'SlowClient', network: 'Network', process: 'Process' };
      for (const [cause, name] of Object.entries(causes)) {
        if (typeof detail[cause] === 'number') facts[`writeBlocked${name}`] = detail[cause];
      }
      return [at(facts)];
    }
    default: {
      // Anything else (a future load report, say): its numbers and booleans, by name.
      const facts: Record<string, FactValue> = {};
      for (const [key, value] of Object.entries(detail)) {
        if (key === 'node') continue;
        if (typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) {
          facts[key] = value;
        }
      }
      return [at(facts)];
    }
  }
}

/** When the reported condition began: `detail.since`, `detail.heldForMs`, or the rule's duration. */
function conditionStart(detail: Record<string, unknown>, t: number): number | undefined {
  if (typeof detail.since === 'string') {
    const since = Date.parse(detail.since);
    if (Number.isFinite(since)) return since;
  }
  if (typeof detail.heldForMs === 'number' && Number.isFinite(detail.heldForMs)) {
    return t - Math.max(0, detail.heldForMs);
  }
  const condition = GATEWAY_CONDITIONS[String(detail.rule)];
  return condition ? t - condition.forMs : undefined;
}

function numbers(
  detail: Record<string, unknown>,
  fields: string[],
  rename?: string,
): Record<string, FactValue> {
  const facts: Record<string, FactValue> = {};
  for (const field of fields) {
    const value = detail[field];
    if (typeof value === 'number' && Number.isFinite(value)) facts[rename ?? field] = value;
  }
  return facts;
}
