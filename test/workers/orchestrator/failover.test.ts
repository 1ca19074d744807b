/**
 * Orchestrator failover with real processes: three orchestrators (dist/workers/orchestrator/main.js,
 * the real decide / nodeLost / alerts functions) on a 3-member etcd cluster. Events that each call
 * for one decision (`Gateway Process Exited` for a new node every 50 ms) are put on the bus all
 * along, while the leader is SIGKILLed three times (each time restarted as a new standby).
 * Every node gets exactly one `Node Declared Lost` decision, none is lost or doubled, events put
 * while there was no leader are handled by the next one, and at no moment do two live processes
 * lead. Prints the figures: kill to new leader, and the longest wait of an event put meanwhile.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionEvents, NodeLostEvents } from '../../../shared/bus/controlEvents.js';
import { EtcdBus } from '../../../shared/bus/EtcdBus.js';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import { EtcdStore } from '../../../shared/store/EtcdStore.js';
import { EtcdCluster, freePort } from '../../support/etcd.js';
import {
  dist,
  eventually,
  killPids,
  spawnNode,
  waitUntilGone,
  type Spawned,
} from '../../support/processes.js';

const LEASE_MS = 2_000;
const ROUNDS = 3;

interface Running {
  name: string;
  port: number;
  child: Spawned;
}

async function roleOf(o: Running): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${o.port}/v1/status`, {
      signal: AbortSignal.timeout(500),
    });
    return ((await res.json()) as { role?: string }).role;
  } catch {
    return undefined;
  }
}

describe('orchestrator failover (real processes, 3-member etcd)', () => {
  let etcd: EtcdCluster;
  const prefix = `failover-${process.pid}-${Date.now()}/`;
  const children: Running[] = [];
  let bus: EtcdBus;
  let store: EtcdStore;

  const launch = async (name: string): Promise<Running> => {
    const port = await freePort();
    const child = spawnNode(dist('workers/orchestrator/main.js'), [], {
      STREAMHEAL_STORE: 'etcd',
      STREAMHEAL_ETCD_ENDPOINTS: etcd.endpoints.join(','),
      STREAMHEAL_ETCD_PREFIX: prefix,
      STREAMHEAL_NODE_ID: name,
      STREAMHEAL_PORT: String(port),
      STREAMHEAL_ORCHESTRATOR_LEASE_MS: String(LEASE_MS),
      STREAMHEAL_LOG_LEVEL: 'warn',
    });
    const running = { name, port, child };
    children.push(running);
    await eventually(async () => (await roleOf(running)) !== undefined, 15_000, `${name} up`);
    return running;
  };

  beforeAll(async () => {
    etcd = await EtcdCluster.start({ size: 3 });
    bus = await EtcdBus.connect({ endpoints: etcd.endpoints, prefix });
    store = await EtcdStore.connect({ endpoints: etcd.endpoints, prefix });
  }, 60_000);

  afterAll(async () => {
    const pids = children.map((c) => c.child.pid);
    killPids(pids);
    await waitUntilGone(pids, 5_000);
    await bus?.close();
    await store?.close();
    await etcd?.stop();
  });

  it('hands over to a standby after a SIGKILLed leader, losing and doubling no decision', async () => {
    // Arrange: decisions seen on the bus, by node.
    const decisions = new Map<string, { ids: Set<string>; at: number }>();
    let deliveries = 0;
    bus.subscribe(
      { source: [Sources.control], 'detail-type': [DecisionEvents.nodeDeclaredLost] },
      (event: BusEvent) => {
        deliveries++;
        const node = event.detail.node as string;
        const seen = decisions.get(node) ?? { ids: new Set<string>(), at: Date.now() };
        seen.ids.add(event.id);
        decisions.set(node, seen);
      },
    );
    const live = await Promise.all(['o-1', 'o-2', 'o-3'].map(launch));
    const leader = async () =>
      eventually(
        async () => {
          const roles = await Promise.all(live.map(roleOf));
          const leaders = live.filter((_, i) => roles[i] === 'leader');
          return leaders.length === 1 ? leaders[0] : undefined;
        },
        15_000,
        'one leader',
      );
    await leader();

    // Live processes leading at once, sampled all along.
    let mostLeaders = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const roles = await Promise.all(live.map(roleOf));
        mostLeaders = Math.max(mostLeaders, roles.filter((r) => r === 'leader').length);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    })();

    // Events all along: one new node per event, each calling for one decision.
    const putAt = new Map<string, number>();
    let publishing = true;
    let k = 0;
    const publisher = (async () => {
      while (publishing) {
        const node = `gw-${++k}`;
        putAt.set(node, Date.now());
        await bus.put([
          makeEvent(
            Sources.control,
            NodeLostEvents.gatewayProcessExited,
            { node, pid: 10_000 + k, code: null, signal: 'SIGKILL' },
            [node],
          ),
        ]);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    // Act: SIGKILL the leader, wait for the next, restart the killed one as a standby.
    const rounds: { electedMs: number; slowestEventMs: number }[] = [];
    let firstKill: number | undefined;
    for (let round = 1; round <= ROUNDS; round++) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const victim = await leader();
      const killedAt = Date.now();
      firstKill ??= killedAt;
      victim.child.proc.kill('SIGKILL');
      await waitUntilGone([victim.child.pid], 5_000);
      live.splice(live.indexOf(victim), 1);
      const next = await leader();
      const electedMs = Date.now() - killedAt;
      expect(next).not.toBe(victim);
      // Events put between the kill and the election: handled by the new leader.
      const during = [...putAt].filter(([, at]) => at >= killedAt && at <= killedAt + electedMs);
      await eventually(() => during.every(([node]) => decisions.has(node)), 15_000, 'backlog');
      const slowestEventMs = Math.max(...during.map(([node, at]) => decisions.get(node)!.at - at));
      rounds.push({ electedMs, slowestEventMs });
      live.push(await launch(`o-${round + 3}`));
    }
    publishing = false;
    await publisher;
    await eventually(() => decisions.size === k, 20_000, `decisions for all ${k} nodes`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    sampling = false;
    await sampler;

    // Assess: one decision per node, none for a node never reported, no two leaders at once.
    const doubled = [...decisions].filter(([, seen]) => seen.ids.size !== 1).map(([n]) => n);
    expect(doubled).toEqual([]);
    expect([...decisions.keys()].sort()).toEqual([...putAt.keys()].sort());
    const records = await store.list<{ status: string }>('control/nodes/gw-');
    expect(records).toHaveLength(k);
    expect(records.every((r) => r.value.status === 'lost')).toBe(true);
    expect(mostLeaders).toBe(1);
    for (const { electedMs } of rounds) expect(electedMs).toBeLessThan(LEASE_MS + 2_500);
    // Steady state: events put before the first kill.
    const waits = [...putAt]
      .filter(([, at]) => at < firstKill!)
      .map(([node, at]) => decisions.get(node)!.at - at)
      .sort((a, b) => a - b);
    const slowest = Math.max(...[...putAt].map(([node, at]) => decisions.get(node)!.at - at));
    console.log(
      `orchestrator failover (lease ${LEASE_MS} ms, ${k} events, ${deliveries} decision deliveries, ` +
        `event to decision before the first kill p50 ${waits[Math.floor(waits.length / 2)]} ms, ` +
        `max ${waits.at(-1)} ms; slowest of all ${slowest} ms): ` +
        JSON.stringify(rounds),
    );
  }, 120_000);
});
