/** Cascade guards: the exact rule, examples, and fast-check properties over random clusters. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { guardCounts, type ClusterView } from '../../../shared/control/cluster.js';
import { ejectionVerdict, maxEjected } from '../../../shared/control/guards.js';
import type { RegisteredNode } from '../../../shared/control/types.js';

const DEFAULTS = { maxIsolatedShare: 0.1, panicThreshold: 0.5 };

function view(nodes: number, ejected: number[] = [], lost: number[] = []): ClusterView {
  const registered = new Map<string, RegisteredNode>();
  for (let i = 0; i < nodes; i++) registered.set(`n${i}`, { id: `n${i}`, pid: 100 + i });
  return {
    registered,
    cluster: {
      ejected: Object.fromEntries(ejected.map((i) => [`n${i}`, { status: 'isolated', since: 0 }])),
      lost: Object.fromEntries(
        lost.map((i) => [`n${i}`, { at: 0, incarnation: `pid:${100 + i}` }]),
      ),
    },
  };
}

describe('cascade guard', () => {
  it('allows at least one node, then 10 % of them', () => {
    expect(maxEjected(1, 0.1)).toBe(1);
    expect(maxEjected(3, 0.1)).toBe(1);
    expect(maxEjected(19, 0.1)).toBe(1);
    expect(maxEjected(20, 0.1)).toBe(2);
    expect(maxEjected(100, 0.29)).toBe(29); // 0.29 × 100 is 28.999… in floating point
  });

  it('on the local cluster of 3 isolates one gateway, and not a second', () => {
    expect(ejectionVerdict(guardCounts(view(3), 'n0'), DEFAULTS)).toMatchObject({
      allowed: true,
      total: 3,
      maxEjected: 1,
    });
    expect(ejectionVerdict(guardCounts(view(3, [0]), 'n1'), DEFAULTS)).toMatchObject({
      allowed: false,
      refusedBy: 'max_isolated_share',
    });
  });

  it('never isolates the only node, and stops below the panic threshold', () => {
    expect(ejectionVerdict(guardCounts(view(1), 'n0'), DEFAULTS)).toMatchObject({
      allowed: false,
      refusedBy: 'panic_threshold',
    });
    // 2 nodes: one left healthy is exactly 50 %: allowed.
    expect(ejectionVerdict(guardCounts(view(2), 'n0'), DEFAULTS).allowed).toBe(true);
    // 10 nodes, 5 lost: 4 of 10 healthy after the ejection, below 50 %.
    const verdict = ejectionVerdict(guardCounts(view(10, [], [1, 2, 3, 4, 5]), 'n0'), DEFAULTS);
    expect(verdict).toMatchObject({ allowed: false, refusedBy: 'panic_threshold', healthy: 5 });
  });

  it("does not count the candidate's own reservation, nor ejections of unregistered nodes", () => {
    const v = view(3, [0]);
    expect(guardCounts(v, 'n0')).toEqual({ total: 3, ejected: 0, healthy: 3 });
    const gone = view(3);
    gone.cluster.ejected.ghost = { status: 'isolated', since: 0 };
    expect(guardCounts(gone, 'n1')).toEqual({ total: 3, ejected: 0, healthy: 3 });
  });

  it('counts a lost node as healthy again once a newer incarnation registered', () => {
    const v = view(4, [], [1]);
    expect(guardCounts(v, 'n0').healthy).toBe(3);
    (v.registered as Map<string, RegisteredNode>).set('n1', { id: 'n1', pid: 999 });
    expect(guardCounts(v, 'n0').healthy).toBe(4);
  });

  const clusters = fc
    .record({
      nodes: fc.integer({ min: 1, max: 40 }),
      maxIsolatedShare: fc.double({ min: 0.01, max: 1, noNaN: true }),
      panicThreshold: fc.double({ min: 0, max: 1, noNaN: true }),
    })
    .chain((c) =>
      fc.record({
        c: fc.constant(c),
        states: fc.array(fc.constantFrom('healthy', 'ejected', 'lost'), {
          minLength: c.nodes,
          maxLength: c.nodes,
        }),
        candidate: fc.integer({ min: 0, max: c.nodes - 1 }),
      }),
    );

  it('property: an allowed ejection never exceeds the share nor goes below panic; a refused one would', () => {
    fc.assert(
      fc.property(clusters, ({ c, states, candidate }) => {
        fc.pre(states[candidate] === 'healthy');
        const ejected = states.flatMap((s, i) => (s === 'ejected' ? [i] : []));
        const lost = states.flatMap((s, i) => (s === 'lost' ? [i] : []));
        const guards = { maxIsolatedShare: c.maxIsolatedShare, panicThreshold: c.panicThreshold };
        const verdict = ejectionVerdict(
          guardCounts(view(c.nodes, ejected, lost), `n${candidate}`),
          guards,
        );
        const ejectedAfter = ejected.length + 1;
        const healthyAfter = c.nodes - ejected.length - lost.length - 1;
        const withinShare =
          ejectedAfter <= Math.max(1, Math.floor(c.maxIsolatedShare * c.nodes + 1e-9));
        // The tolerance for rounding is on the count of nodes, as in the guard itself (a ratio
        // tolerance let a threshold of 1e-9 pass with no healthy node left).
        const abovePanic = healthyAfter >= 0 && healthyAfter >= c.panicThreshold * c.nodes - 1e-9;
        expect(verdict.allowed).toBe(withinShare && abovePanic);
      }),
      { numRuns: 2000 },
    );
  });

  it('property: ejecting whatever the guard allows, in any order, keeps both bounds at every step', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.double({ min: 0.01, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.array(
          fc.record({ op: fc.constantFrom('eject', 'eject', 'reinstate', 'lose'), node: fc.nat() }),
          { maxLength: 80 },
        ),
        (nodes, share, panic, ops) => {
          const state: ('healthy' | 'ejected' | 'lost')[] = Array(nodes).fill('healthy');
          const guards = { maxIsolatedShare: share, panicThreshold: panic };
          for (const { op, node: raw } of ops) {
            const node = raw % nodes;
            if (op === 'lose') state[node] = 'lost';
            else if (op === 'reinstate' && state[node] === 'ejected') state[node] = 'healthy';
            else if (op === 'eject' && state[node] === 'healthy') {
              const ejected = state.flatMap((s, i) => (s === 'ejected' ? [i] : []));
              const lost = state.flatMap((s, i) => (s === 'lost' ? [i] : []));
              const verdict = ejectionVerdict(
                guardCounts(view(nodes, ejected, lost), `n${node}`),
                guards,
              );
              if (!verdict.allowed) continue;
              state[node] = 'ejected';
              const e = state.filter((s) => s === 'ejected').length;
              const h = state.filter((s) => s === 'healthy').length;
              expect(e).toBeLessThanOrEqual(Math.max(1, Math.floor(share * nodes + 1e-9)));
              expect(h / nodes).toBeGreaterThanOrEqual(panic - 1e-9);
            }
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
