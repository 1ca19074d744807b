import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatNodeList, planTargets, type ClusterView } from '../../../shared/control/cluster.js';
import type { RegisteredNode } from '../../../shared/control/types.js';

function view(nodes: RegisteredNode[], ejected: string[] = [], lost: string[] = []): ClusterView {
  return {
    registered: new Map(nodes.map((n) => [n.id, n])),
    cluster: {
      ejected: Object.fromEntries(ejected.map((id) => [id, { status: 'isolated', since: 0 }])),
      lost: Object.fromEntries(lost.map((id) => [id, { at: Date.now() + 1e9 }])),
    },
  };
}

const node = (id: string, ws: number, healthScore?: number): RegisteredNode => ({
  id,
  connections: { ws, sse: 0 },
  ...(healthScore === undefined ? {} : { healthScore }),
});

describe('targets', () => {
  it("writes node lists the way the seed's log line does", () => {
    expect(formatNodeList(['gateway-02', 'gateway-03'])).toBe('gateway-02,03');
    expect(formatNodeList(['gateway-2', 'gateway-3', 'gateway-10'])).toBe('gateway-2,3,10');
    expect(formatNodeList(['gateway-2', 'edge-3'])).toBe('gateway-2,edge-3');
    expect(formatNodeList(['a', 'b'])).toBe('a,b');
    expect(formatNodeList([])).toBe('(none)');
  });

  it('fills the least loaded first and evens out the load', () => {
    const v = view([node('g1', 1247), node('g2', 100), node('g3', 300)]);
    expect(planTargets(v, 'g1', 1247)).toEqual([
      { node: 'g2', count: 724 },
      { node: 'g3', count: 523 },
    ]);
    expect(planTargets(v, 'g1', 100)).toEqual([{ node: 'g2', count: 100 }]);
  });

  it('leaves out isolated, lost and sick nodes, and weighs load by health', () => {
    const v = view(
      [node('g1', 0), node('g2', 0), node('g3', 0, 0.5), node('g4', 0), node('g5', 0, 0.2)],
      ['g2'],
      ['g4'],
    );
    // g5 is below 0.5 health: used only when nothing better is left.
    expect(planTargets(v, 'g1', 30)).toEqual([{ node: 'g3', count: 30 }]);
    expect(planTargets(view([node('g1', 0), node('g5', 0, 0.2)]), 'g1', 3)).toEqual([
      { node: 'g5', count: 3 },
    ]);
    const weighted = planTargets(
      view([node('g1', 0), node('a', 0, 1), node('b', 0, 0.5)]),
      'g1',
      30,
    );
    expect(weighted).toEqual([
      { node: 'a', count: 20 },
      { node: 'b', count: 10 },
    ]);
    expect(planTargets(view([node('g1', 5)]), 'g1', 5)).toEqual([]);
  });

  it('property: assigns every session exactly once, never to the source or an excluded node', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            ws: fc.nat(5000),
            health: fc.option(fc.double({ min: 0.01, max: 1, noNaN: true })),
          }),
          {
            minLength: 2,
            maxLength: 12,
          },
        ),
        fc.nat(5000),
        fc.nat(),
        (specs, count, excluded) => {
          const nodes = specs.map((s, i) => node(`n${i}`, s.ws, s.health ?? undefined));
          const out = `n${1 + (excluded % (nodes.length - 1))}`;
          const targets = planTargets(view(nodes, [out]), 'n0', count);
          expect(targets.reduce((sum, t) => sum + t.count, 0)).toBe(nodes.length > 2 ? count : 0);
          for (const t of targets) {
            expect(t.node).not.toBe('n0');
            expect(t.node).not.toBe(out);
            expect(t.count).toBeGreaterThan(0);
          }
        },
      ),
    );
  });
});
