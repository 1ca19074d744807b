/**
 * Orchestrators in this process against a real etcd member: one of several leads; a resigning
 * leader hands over at once; a new leader goes on from the checkpoint (events put while no one
 * led are handled, events already handled are not handed out again); a failing function is tried
 * again without holding up later events or letting the checkpoint pass it; deleted gateway
 * registrations become `Node Lease Expired`, also those deleted while no one led; a leader whose
 * key is deleted by hand steps down. The handlers record what they are given: what is under test
 * is the orchestrator's delivery, not the functions (failover.test.ts runs the real ones).
 */
import { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DECISION_INPUTS, type TargetFunction } from '../../../shared/bus/catalogue.js';
import { NodeLostEvents } from '../../../shared/bus/controlEvents.js';
import { EtcdBus } from '../../../shared/bus/EtcdBus.js';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import type { RouteHandler } from '../../../shared/bus/router.js';
import { EtcdStore } from '../../../shared/store/EtcdStore.js';
import { Orchestrator } from '../../../workers/orchestrator/Orchestrator.js';
import { EtcdCluster } from '../../support/etcd.js';
import { eventually } from '../../support/processes.js';

const silent = pino({ level: 'silent' });
let prefixes = 0;
const freshPrefix = () => `o${process.pid}-${Date.now()}-${++prefixes}/`;

/** A health event for decide, numbered. */
const health = (n: number): BusEvent =>
  makeEvent(Sources.gateway, DECISION_INPUTS[0]!, { node: 'gateway-1', n }, ['gateway-1']);

interface Call {
  target: TargetFunction;
  id: string;
  n: unknown;
  by: string;
}

describe('Orchestrator on etcd', () => {
  let etcd: EtcdCluster;
  let raw: Etcd3;
  const open: Array<{ close(): Promise<void> | void }> = [];

  beforeAll(async () => {
    etcd = await EtcdCluster.start();
    raw = new Etcd3({ hosts: etcd.endpoints });
  });
  afterEach(async () => {
    for (const item of open.splice(0).reverse()) await item.close();
  });
  afterAll(async () => {
    raw?.close();
    await etcd?.stop();
  });

  async function setup(prefix = freshPrefix()) {
    const bus = await EtcdBus.connect({ endpoints: etcd.endpoints, prefix, timeoutMs: 1_000 });
    open.push(bus);
    const calls: Call[] = [];
    /** Handlers that record; `failing(n)` makes decide throw for event number n until cleared. */
    const failing = new Set<unknown>();
    const start = (name: string, options: { leaseMs?: number } = {}) => {
      const recorder =
        (target: TargetFunction): RouteHandler =>
        (event) => {
          if (target === 'decide' && failing.has(event.detail.n)) {
            throw new Error(`decide fails on ${String(event.detail.n)}`);
          }
          calls.push({ target, id: event.id, n: event.detail.n ?? event.detail.node, by: name });
        };
      const orchestrator = new Orchestrator({
        name,
        etcd: { endpoints: etcd.endpoints, timeoutMs: 1_000 },
        prefix,
        bus,
        handlers: {
          decide: recorder('decide'),
          nodeLost: recorder('nodeLost'),
          alerts: recorder('alerts'),
        },
        leaseMs: options.leaseMs ?? 1_000,
        checkpointEveryMs: 50,
        logger: silent,
      });
      open.push(orchestrator);
      orchestrator.start();
      return orchestrator;
    };
    const leaderOf = async (orchestrators: Orchestrator[]) =>
      eventually(() => {
        const leaders = orchestrators.filter((o) => o.status().role === 'leader');
        const standbys = orchestrators.filter((o) => o.status().role === 'standby');
        return leaders.length === 1 && leaders.length + standbys.length === orchestrators.length
          ? leaders[0]
          : undefined;
      }, 10_000);
    return { prefix, bus, calls, failing, start, leaderOf };
  }

  it('elects exactly one leader; a resigning leader hands over at once', async () => {
    // Arrange
    const { start, leaderOf } = await setup();
    const all = [start('a'), start('b'), start('c')];
    const first = await leaderOf(all);

    // Act
    const resigned = Date.now();
    await first.close();
    const rest = all.filter((o) => o !== first);
    const second = await leaderOf(rest);
    const handover = Date.now() - resigned;

    // Assess
    expect(second).not.toBe(first);
    await eventually(
      () => rest.find((o) => o !== second)!.status().leader?.name === second.status().name,
      5_000,
      'the standby sees the new leader',
    );
    expect(handover).toBeLessThan(1_000);
  });

  it('hands every event to its function once; the next leader goes on from the checkpoint', async () => {
    // Arrange
    const { bus, calls, start, leaderOf } = await setup();
    const first = start('first');
    await leaderOf([first]);
    await bus.put([1, 2, 3].map(health));
    await eventually(() => calls.length === 3, 5_000);
    await eventually(() => (first.status().feed?.checkpoint?.bus ?? 0) > 0, 5_000);

    // Act: nobody leads while 4..6 are put; then a new orchestrator starts.
    await first.close();
    await bus.put([4, 5, 6].map(health));
    await bus.put([
      makeEvent(Sources.control, NodeLostEvents.gatewayProcessExited, { node: 'gateway-2' }),
    ]);
    const second = start('second');
    await eventually(() => calls.length === 7, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 300));

    // Assess: each event once, by the leader of the moment, to the function of its entry;
    // events about one node in order (the nodeLost, about another node, may come between).
    expect(calls.filter((c) => c.target === 'decide').map((c) => [c.n, c.by])).toEqual([
      [1, 'first'],
      [2, 'first'],
      [3, 'first'],
      [4, 'second'],
      [5, 'second'],
      [6, 'second'],
    ]);
    expect(calls.filter((c) => c.target === 'nodeLost').map((c) => [c.n, c.by])).toEqual([
      ['gateway-2', 'second'],
    ]);
    expect(new Set(calls.map((c) => c.id)).size).toBe(7);
    expect(second.status().feed?.handled).toBe(4);
  });

  it('tries a failing function again without holding up later events or moving the checkpoint past it', async () => {
    // Arrange
    const { bus, calls, failing, start, leaderOf } = await setup();
    const leader = start('only');
    await leaderOf([leader]);
    failing.add(2);

    // Act
    await bus.put([1, 2, 3].map(health));
    await eventually(() => calls.length === 2, 5_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const during = leader.status().feed!;
    // A while later the checkpoint has still not passed event 2.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(leader.status().feed!.checkpoint!.bus).toBe(during.checkpoint!.bus);
    failing.clear();
    await eventually(() => calls.length === 3, 10_000);

    // Assess: 3 went ahead of the failing 2, which the checkpoint did not pass until it was done.
    expect(calls.map((c) => c.n)).toEqual([1, 3, 2]);
    expect(during.retrying).toBe(1);
    expect(during.checkpoint!.bus).toBeLessThanOrEqual(during.busThrough);
    await eventually(
      () => (leader.status().feed?.checkpoint?.bus ?? 0) > during.busThrough,
      5_000,
      'checkpoint past the retried event',
    );
    expect(leader.status().feed?.retrying).toBe(0);
  });

  it('turns deleted registrations into Node Lease Expired, also those deleted while no one led', async () => {
    // Arrange
    const { prefix, bus, calls, start, leaderOf } = await setup();
    const store = await EtcdStore.connect({ endpoints: etcd.endpoints, prefix, timeoutMs: 1_000 });
    open.push(store);
    const register = async (id: string, pid: number) => {
      const lease = await store.grantLease(1_000);
      await store.put(
        `nodes/${id}`,
        { id, pid, url: `http://${id}`, startedAt: 'then' },
        { lease },
      );
      return lease;
    };
    const first = start('first');
    await leaderOf([first]);
    const leaseA = await register('gw-a', 101);
    const leaseB = await register('gw-b', 102);
    await eventually(async () => (first.status().feed?.checkpoint?.nodes ?? 0) > 0, 5_000);
    await new Promise((resolve) => setTimeout(resolve, 200));

    // Act: gw-a goes while first leads; gw-b goes (its lease ends) while nobody leads.
    await store.revokeLease(leaseA);
    await eventually(() => calls.some((c) => c.n === 'gw-a'), 5_000);
    await first.close();
    await store.revokeLease(leaseB);
    start('second');
    await eventually(() => calls.some((c) => c.n === 'gw-b'), 10_000);

    // Assess
    const lost = calls.filter((c) => c.target === 'nodeLost');
    expect(lost.map((c) => [c.n, c.by])).toEqual([
      ['gw-a', 'first'],
      ['gw-b', 'second'],
    ]);
    const events: BusEvent[] = [];
    const stored = await raw
      .getAll()
      .prefix(`${prefix}bus/`)
      .strings()
      .then((all) => Object.values(all).map((json) => JSON.parse(json) as BusEvent));
    events.push(
      ...stored.filter((event) => event['detail-type'] === NodeLostEvents.nodeLeaseExpired),
    );
    expect(events.map((e) => [e.detail.node, e.detail.pid, e.source])).toEqual([
      ['gw-a', 101, Sources.control],
      ['gw-b', 102, Sources.control],
    ]);
    await bus.close();
  });

  it('steps down when its leader key is deleted, and another takes over', async () => {
    // Arrange
    const { prefix, bus, calls, start, leaderOf } = await setup();
    const all = [start('x'), start('y')];
    const first = await leaderOf(all);

    // Act
    await raw.delete().key(`${prefix}orchestrator/leader`);
    await eventually(() => first.status().role !== 'leader' || first.status().terms > 1, 5_000);
    const next = await leaderOf(all);
    await bus.put([health(9)]);
    await eventually(() => calls.length === 1, 5_000);

    // Assess: someone leads (possibly the same process, in a new term), and only one handles.
    expect(next.status().term!.number).toBeGreaterThan(0);
    expect(calls.map((c) => c.n)).toEqual([9]);
  });
});
