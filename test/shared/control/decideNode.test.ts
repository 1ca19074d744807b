/**
 * The pure decision core: the seed's rules on event time, duplicates, stale and reordered
 * events, and the exact guarantee under any delivery order (fast-check).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { HealthEvents } from '../../../shared/health/events.js';
import { type ClusterView } from '../../../shared/control/cluster.js';
import { decideNode } from '../../../shared/control/decideNode.js';
import { decideLost } from '../../../shared/control/nodeLost.js';
import {
  isEjected,
  type Decision,
  type NodeControlRecord,
  type RegisteredNode,
} from '../../../shared/control/types.js';
import { defaultPolicy, type FailoverPolicy } from '../../../shared/records/index.js';
import {
  T0,
  canaryFailing,
  canaryRecovered,
  cpuSample,
  health,
  overloaded,
  recovered,
} from './helpers.js';

const NODE = 'gateway-1';

function clusterOf(records: Map<string, NodeControlRecord>, nodes = 3): ClusterView {
  const registered = new Map<string, RegisteredNode>();
  for (let i = 1; i <= nodes; i++) {
    registered.set(`gateway-${i}`, { id: `gateway-${i}`, pid: i, connections: { ws: 10, sse: 0 } });
  }
  const ejected: ClusterView['cluster']['ejected'] = {};
  for (const [node, record] of records) {
    if (isEjected(record.status))
      ejected[node] = { status: record.status, since: record.statusSince };
  }
  return { registered, cluster: { ejected, lost: {} } };
}

/** Feeds events in order, as the service would (the cluster record follows the node records). */
function run(events: BusEvent[], policy: FailoverPolicy = defaultPolicy(), nodes = 3) {
  const records = new Map<string, NodeControlRecord>();
  const decisions: Decision[] = [];
  for (const event of events) {
    const node = (event.detail as { node: string }).node;
    const out = decideNode({
      node,
      record: records.get(node),
      event,
      policy,
      view: clusterOf(records, nodes),
    });
    records.set(node, { ...out.record, outbox: [] });
    decisions.push(...out.decisions);
  }
  return { records, decisions, status: (node = NODE) => records.get(node)?.status ?? 'active' };
}

describe('decideNode: the seed rules on event time', () => {
  it('isolates when the gateway reports its CPU rule (held 30 s), with the seed reason', () => {
    const { decisions, status } = run([overloaded(NODE, T0)]);
    expect(decisions).toMatchObject([
      {
        kind: 'eject',
        node: NODE,
        status: 'isolated',
        rule: 'cpu-overload',
        reason: 'CPU > 95% for 30s',
      },
    ]);
    expect(status()).toBe('isolated');
  });

  it('isolates on plain samples only once 30 s of event time are over 95 %', () => {
    const samples = [0, 10_000, 20_000, 29_999].map((dt) => cpuSample(NODE, T0 + dt, 0.97));
    expect(run(samples).decisions).toEqual([]);
    const { decisions } = run([...samples, cpuSample(NODE, T0 + 30_000, 0.97)]);
    expect(decisions.map((d) => d.kind)).toEqual(['eject']);
    // A dip resets the clock.
    const dip = [
      ...samples.slice(0, 2),
      cpuSample(NODE, T0 + 15_000, 0.5),
      cpuSample(NODE, T0 + 30_000, 0.99),
    ];
    expect(run(dip).decisions).toEqual([]);
  });

  it('3 consecutive ping timeouts mark it unhealthy; an answered ping breaks the run', () => {
    expect(run([canaryFailing(NODE, T0, 3)]).status()).toBe('unhealthy');
    const broken = [
      canaryFailing(NODE, T0, 2),
      canaryRecovered(NODE, T0 + 100),
      canaryFailing(NODE, T0 + 200, 2),
    ];
    expect(run(broken).decisions).toEqual([]);
    // A CPU report between the timeouts does not break the run.
    const mixed = [
      canaryFailing(NODE, T0, 2),
      cpuSample(NODE, T0 + 100, 0.2),
      canaryFailing(NODE, T0 + 200, 1),
    ];
    expect(run(mixed).status()).toBe('unhealthy');
  });

  it('counts a majority of degraded connections as one node ping timeout', () => {
    const degraded = (t: number, count: number) =>
      health(NODE, HealthEvents.connectionsDegraded, { count }, t);
    expect(run([degraded(T0, 9), degraded(T0 + 300, 9), degraded(T0 + 600, 9)]).status()).toBe(
      'unhealthy',
    );
    expect(run([degraded(T0, 2), degraded(T0 + 300, 2), degraded(T0 + 600, 2)]).status()).toBe(
      'active',
    );
  });

  it('reinstates with autoRejoin, and keeps the node out without it', () => {
    const events = [overloaded(NODE, T0), recovered(NODE, T0 + 5_000)];
    expect(run(events).decisions.map((d) => d.kind)).toEqual(['eject', 'reinstate']);
    const sticky = defaultPolicy();
    sticky.spec.autoRejoin = false;
    expect(run(events, sticky).status()).toBe('isolated');
  });

  it('ignores a duplicate and an event older than the reorder window', () => {
    const first = overloaded(NODE, T0);
    const { records } = run([first]);
    const again = decideNode({
      node: NODE,
      record: records.get(NODE),
      event: first,
      policy: defaultPolicy(),
      view: clusterOf(records),
    });
    expect(again.outcome).toBe('duplicate');
    const late = decideNode({
      node: NODE,
      record: run([cpuSample(NODE, T0 + 120_000, 0.1)]).records.get(NODE),
      event: recovered(NODE, T0),
      policy: defaultPolicy(),
      view: clusterOf(new Map()),
    });
    expect(late.outcome).toBe('stale');
  });

  it('after a loss, ignores older events and starts afresh on a newer incarnation', () => {
    const exited: BusEvent = {
      id: 'exit-1',
      source: 'streamheal.control',
      'detail-type': 'Gateway Process Exited',
      time: new Date(T0 + 1_000).toISOString(),
      detail: { node: NODE, pid: 1 },
    };
    const { records } = run([canaryFailing(NODE, T0, 2)]);
    const lost = decideLost(
      records.get(NODE),
      { node: NODE, cause: 'process_exited', causeText: 'x', at: T0 + 1_000, incarnation: 'pid:1' },
      exited,
      clusterOf(records),
    ).record;
    const before = decideNode({
      node: NODE,
      record: lost,
      event: canaryFailing(NODE, T0 + 500, 1),
      policy: defaultPolicy(),
      view: clusterOf(new Map()),
    });
    expect(before.outcome).toBe('stale');
    const after = decideNode({
      node: NODE,
      record: lost,
      event: canaryFailing(NODE, T0 + 2_000, 1),
      policy: defaultPolicy(),
      view: clusterOf(new Map()),
    });
    expect(after.outcome).toBe('applied');
    expect(after.record.status).toBe('active');
    // The two misses before the loss are forgotten: one more is not three in a row.
    expect(after.decisions).toEqual([]);
  });

  it('keeps the memory of a rule whose condition a policy edit left alone', () => {
    const policy = defaultPolicy();
    const { records } = run([canaryFailing(NODE, T0, 2)], policy);
    const edited = structuredClone(policy);
    edited.spec.nodeRules.rules[1]!.then.reason = 'reworded';
    const out = decideNode({
      node: NODE,
      record: records.get(NODE),
      event: canaryFailing(NODE, T0 + 100, 1),
      policy: edited,
      view: clusterOf(records),
    });
    expect(out.record.status).toBe('unhealthy');
  });
});

// ------------------------------------------------------------------ delivery order properties

const kinds = [
  'overloaded',
  'recovered',
  'sample',
  'canaryFailing',
  'canaryRecovered',
  'writeBlocked',
] as const;

/** Events of one node with distinct times spread over 25 s (inside the 60 s reorder window). */
const eventSets = fc
  .uniqueArray(fc.integer({ min: 0, max: 25_000 }), { minLength: 1, maxLength: 14 })
  .chain((offsets) =>
    fc.tuple(
      fc.constant(offsets),
      fc.array(fc.constantFrom(...kinds), { minLength: offsets.length, maxLength: offsets.length }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), {
        minLength: offsets.length,
        maxLength: offsets.length,
      }),
      fc.array(fc.integer({ min: 1, max: 3 }), {
        minLength: offsets.length,
        maxLength: offsets.length,
      }),
    ),
  )
  .map(([offsets, chosen, cpus, misses]) =>
    offsets.map((dt, i) => {
      const t = T0 + 30_000 + dt;
      switch (chosen[i]!) {
        case 'overloaded':
          return overloaded(NODE, t);
        case 'recovered':
          return recovered(NODE, t);
        case 'sample':
          return cpuSample(NODE, t, cpus[i]!);
        case 'canaryFailing':
          return canaryFailing(NODE, t, misses[i]!);
        case 'canaryRecovered':
          return canaryRecovered(NODE, t);
        case 'writeBlocked':
          return health(
            NODE,
            HealthEvents.writeBlocked,
            { slow_client: 1, network: 0, process: 0 },
            t,
          );
      }
    }),
  );

const byTime = (events: BusEvent[]) =>
  [...events].sort((a, b) => Date.parse(a.time) - Date.parse(b.time));

/** A delivery: every event at least once, duplicates anywhere, in any order. */
function deliveries(events: BusEvent[]) {
  return fc
    .tuple(
      fc.shuffledSubarray(events, { minLength: events.length, maxLength: events.length }),
      fc.array(fc.tuple(fc.nat(events.length - 1), fc.nat()), { maxLength: events.length }),
    )
    .map(([order, dupes]) => {
      const delivered = [...order];
      for (const [which, where] of dupes) {
        delivered.splice(where % (delivered.length + 1), 0, events[which]!);
      }
      return delivered;
    });
}

describe('decideNode under at-least-once, out-of-order delivery', () => {
  it('property: duplicates change nothing — the same decisions as each event delivered once', () => {
    fc.assert(
      fc.property(
        eventSets.chain((events) => fc.tuple(fc.constant(events), deliveries(events))),
        ([, delivered]) => {
          const seen = new Set<string>();
          const unique = delivered.filter((e) => !seen.has(e.id) && seen.add(e.id));
          const a = run(delivered).decisions.map((d) => [d.kind, d.id]);
          const b = run(unique).decisions.map((d) => [d.kind, d.id]);
          expect(a).toEqual(b);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: any order with duplicates ends in the state of the ordered unique sequence', () => {
    fc.assert(
      fc.property(
        eventSets.chain((events) => fc.tuple(fc.constant(events), deliveries(events))),
        ([events, delivered]) => {
          const ordered = run(byTime(events));
          const shuffled = run(delivered);
          const a = ordered.records.get(NODE)!;
          const b = shuffled.records.get(NODE)!;
          expect(b.status).toBe(a.status);
          expect(b.rules.buffer).toEqual(a.rules.buffer);
          // Each isolation is undone by a reinstatement before the next: the net is the final state.
          const net = (ds: Decision[]) =>
            ds.filter((d) => d.kind === 'eject').length -
            ds.filter((d) => d.kind === 'reinstate').length;
          expect(net(shuffled.decisions)).toBe(net(ordered.decisions));
          expect(net(ordered.decisions)).toBe(isEjected(a.status) ? 1 : 0);
        },
      ),
      { numRuns: 300 },
    );
  });
});
