import { describe, expect, it } from 'vitest';
import { HealthEvents } from '../../../shared/health/events.js';
import { GATEWAY_CONDITIONS, healthObservations } from '../../../shared/control/observations.js';
import type { ThresholdForCondition } from '../../../shared/rules/index.js';
import { GATEWAY_NODE_RULES } from '../../../workers/gateway/health/NodeHealth.js';
import { T0, canaryFailing, health, overloaded, recovered } from './helpers.js';

describe('health events as observations', () => {
  it("knows the gateway's own node rules: the metric and how long it held when reported", () => {
    const fromGateway = Object.fromEntries(
      GATEWAY_NODE_RULES.rules.map((rule) => {
        const when = rule.when as ThresholdForCondition;
        return [rule.name, { fact: when.fact, forMs: when.forMs }];
      }),
    );
    expect(GATEWAY_CONDITIONS).toEqual(fromGateway);
  });

  it('backdates a Node Overloaded report to when its condition began', () => {
    const event = overloaded('g', T0, 0.98);
    expect(healthObservations(event)).toEqual([
      { id: `${event.id}#began`, t: T0 - 30_000, facts: { cpuUtilisation: 0.98 } },
      {
        id: event.id,
        t: T0,
        facts: { cpuUtilisation: 0.98, eventLoopDelayMs: 4, overloaded: true },
      },
    ]);
    const since = health(
      'g',
      HealthEvents.nodeOverloaded,
      { rule: 'cpu-overload', cpuUtilisation: 0.97, since: new Date(T0 - 45_000).toISOString() },
      T0,
    );
    expect(healthObservations(since)[0]!.t).toBe(T0 - 45_000);
    const unknownRule = health(
      'g',
      HealthEvents.nodeOverloaded,
      { rule: 'cpu', cpuUtilisation: 0.97 },
      T0,
    );
    expect(healthObservations(unknownRule)).toHaveLength(1);
    expect(healthObservations(recovered('g', T0))).toEqual([
      expect.objectContaining({
        t: T0,
        facts: { cpuUtilisation: 0.3, eventLoopDelayMs: 2, overloaded: false },
      }),
    ]);
  });

  it('turns canary misses into ping timeouts, one per miss', () => {
    const observations = healthObservations(canaryFailing('g', T0, 3));
    expect(observations.map((o) => o.facts.pingTimedOut)).toEqual([true, true, true]);
    expect(new Set(observations.map((o) => o.id)).size).toBe(3);
  });

  it('reads degraded connections as a node ping timeout only for a majority', () => {
    const event = health('g', HealthEvents.connectionsDegraded, { count: 6 }, T0);
    expect(healthObservations(event, { id: 'g', connections: { ws: 10 } })[0]!.facts).toEqual({
      degradedConnections: 6,
      degradedShare: 0.6,
      pingTimedOut: true,
    });
    expect(healthObservations(event, { id: 'g', connections: { ws: 100 } })[0]!.facts).toEqual({
      degradedConnections: 6,
      degradedShare: 0.06,
    });
    expect(healthObservations(event)[0]!.facts).toEqual({ degradedConnections: 6 });
  });

  it('passes numbers and booleans of other events through by name', () => {
    const event = health(
      'g',
      'Load Report',
      { cpuUtilisation: 0.5, draining: false, url: 'x' },
      T0,
    );
    expect(healthObservations(event)[0]!.facts).toEqual({ cpuUtilisation: 0.5, draining: false });
  });
});
