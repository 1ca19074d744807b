/**
 * decide and nodeLost over real stores (MemoryStore, and the embedded store reached over the
 * control link with RemoteStore), with real decision events on an InProcessBus.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DecisionEvents } from '../../../shared/bus/controlEvents.js';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import { InProcessBus } from '../../../shared/bus/InProcessBus.js';
import { ControlPlane } from '../../../shared/control/ControlPlane.js';
import {
  CLUSTER_KEY,
  CONTROL_NODE_PREFIX,
  MOVE_PREFIX,
  type ClusterControlRecord,
  type NodeControlRecord,
} from '../../../shared/control/types.js';
import type { MoveRequestRecord } from '../../../shared/control/moves.js';
import { LinkClient } from '../../../shared/link/LinkClient.js';
import { RemoteStore } from '../../../shared/link/RemoteStore.js';
import { API_V2, RecordRepository } from '../../../shared/records/index.js';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';
import type { StateStore } from '../../../shared/store/StateStore.js';
import { SECRET, startLink, type RunningLink } from '../link/linkHarness.js';
import {
  T0,
  canaryFailing,
  captureLogs,
  cpuSample,
  overloaded,
  recovered,
  register,
  sleep,
} from './helpers.js';

interface Setup {
  store: StateStore;
  bus: InProcessBus;
  published: BusEvent[];
  plane: ControlPlane;
  logs: ReturnType<typeof captureLogs>;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(kind: 'memory' | 'remote' = 'memory'): Promise<Setup> {
  const memory = new MemoryStore();
  cleanups.push(() => memory.close());
  let store: StateStore = memory;
  if (kind === 'remote') {
    const link: RunningLink = await startLink({ store: memory });
    cleanups.push(() => link.stop());
    const client = new LinkClient({ url: link.url, secret: SECRET });
    cleanups.push(() => client.close());
    store = new RemoteStore(client);
  }
  const bus = new InProcessBus();
  cleanups.push(() => bus.close());
  const published: BusEvent[] = [];
  bus.subscribe({ source: [Sources.control] }, (event) => {
    published.push(event);
  });
  const logs = captureLogs();
  const plane = new ControlPlane({ store, bus, logger: logs.logger });
  return { store, bus, published, plane, logs };
}

async function nodeRecord(store: StateStore, node: string): Promise<NodeControlRecord | undefined> {
  return (await store.get<NodeControlRecord>(CONTROL_NODE_PREFIX + node))?.value;
}

const settle = () => sleep(20);

describe.each(['memory', 'remote'] as const)('ControlPlane on the %s store', (kind) => {
  it('isolates a node whose CPU was over 95 % for 30 s and rebalances its connections', async () => {
    const { store, published, plane, logs } = await setup(kind);
    await register(store, 'gateway-01', 1247);
    await register(store, 'gateway-02', 100);
    await register(store, 'gateway-03', 100);

    const result = await plane.decide(overloaded('gateway-01', T0));
    await settle();

    expect(result).toMatchObject({
      outcome: 'applied',
      node: 'gateway-01',
      matched: ['cpu-overload'],
    });
    expect(result.decisions.map((d) => d.kind)).toEqual(['eject']);
    const messages = logs.messages();
    const isolating = messages.indexOf('isolating gateway-01 due to CPU > 95% for 30s');
    const rebalanced = messages.indexOf('rebalanced 1247 connections to gateway-02,03');
    expect(isolating).toBeGreaterThanOrEqual(0);
    expect(rebalanced).toBeGreaterThan(isolating);
    expect(published.map((e) => e['detail-type'])).toEqual([
      DecisionEvents.nodeIsolated,
      DecisionEvents.migrationStarted,
      DecisionEvents.migrationCompleted,
    ]);
    expect(published[0]!.detail).toMatchObject({
      node: 'gateway-01',
      decision: 'isolate',
      rule: 'cpu-overload',
      message: 'isolating gateway-01 due to CPU > 95% for 30s',
      trigger: { detailType: 'Node Overloaded' },
    });
    const moves = await store.list<MoveRequestRecord>(MOVE_PREFIX);
    expect(moves).toHaveLength(1);
    expect(moves[0]!.value).toMatchObject({
      fromNode: 'gateway-01',
      count: 1247,
      status: 'requested',
      rule: 'cpu-overload',
      targets: [
        { node: 'gateway-02', count: 624 },
        { node: 'gateway-03', count: 623 },
      ],
    });
    expect((await nodeRecord(store, 'gateway-01'))?.status).toBe('isolated');
    expect((await nodeRecord(store, 'gateway-01'))?.outbox).toEqual([]);
    const cluster = (await store.get<ClusterControlRecord>(CLUSTER_KEY))!.value;
    expect(Object.keys(cluster.ejected)).toEqual(['gateway-01']);
  });

  it('counts Active StreamSession records of the node when there are any', async () => {
    const { store, plane } = await setup(kind);
    await register(store, 'gateway-1', 50);
    await register(store, 'gateway-2');
    await register(store, 'gateway-3');
    const repo = new RecordRepository(store);
    for (const [name, node, phase] of [
      ['a', 'gateway-1', 'Active'],
      ['b', 'gateway-1', 'Active'],
      ['c', 'gateway-1', 'Pending'],
      ['d', 'gateway-2', 'Active'],
    ] as const) {
      await repo.putSession({
        apiVersion: API_V2,
        kind: 'StreamSession',
        metadata: { name },
        spec: { sessionId: name, clusterId: 'local', nodeId: node },
        status: { phase },
      });
    }
    await plane.decide(overloaded('gateway-1', T0));
    const [move] = await store.list<MoveRequestRecord>(MOVE_PREFIX);
    expect(move!.value.count).toBe(2);
  });

  it('decides once for an event delivered twice, and ignores a stale copy out of order', async () => {
    const { store, published, plane } = await setup(kind);
    for (const id of ['gateway-1', 'gateway-2', 'gateway-3']) await register(store, id, 10);
    const first = overloaded('gateway-1', T0);
    const later = cpuSample('gateway-1', T0 + 5_000, 0.99);

    await plane.decide(later);
    await plane.decide(first);
    const again = await plane.decide(first);
    const againLater = await plane.decide(later);
    await settle();

    expect(again.outcome).toBe('duplicate');
    expect(againLater.outcome).toBe('duplicate');
    expect(published.filter((e) => e['detail-type'] === DecisionEvents.nodeIsolated)).toHaveLength(
      1,
    );
    expect(await store.list(MOVE_PREFIX)).toHaveLength(1);
  });

  it('reinstates the node once its CPU is back to normal (autoRejoin)', async () => {
    const { store, published, plane, logs } = await setup(kind);
    for (const id of ['gateway-1', 'gateway-2', 'gateway-3']) await register(store, id, 10);
    await plane.decide(overloaded('gateway-1', T0));
    const result = await plane.decide(recovered('gateway-1', T0 + 10_000));
    await settle();
    expect(result.decisions.map((d) => d.kind)).toEqual(['reinstate']);
    expect(logs.messages()).toContain('reinstating gateway-1: cpu-overload no longer matches');
    expect(published.at(-1)!['detail-type']).toBe(DecisionEvents.nodeReinstated);
    expect((await nodeRecord(store, 'gateway-1'))?.status).toBe('active');
    const cluster = (await store.get<ClusterControlRecord>(CLUSTER_KEY))!.value;
    expect(cluster.ejected).toEqual({});
  });

  it('marks a node unhealthy after 3 consecutive ping timeouts, remembered across invocations', async () => {
    const { store, plane, logs } = await setup(kind);
    for (const id of ['gateway-1', 'gateway-2', 'gateway-3']) await register(store, id, 10);
    // One miss per event: the run of three is kept in the store between the invocations.
    expect((await plane.decide(canaryFailing('gateway-1', T0, 1))).decisions).toEqual([]);
    expect((await plane.decide(canaryFailing('gateway-1', T0 + 300, 1))).decisions).toEqual([]);
    const third = await plane.decide(canaryFailing('gateway-1', T0 + 600, 1));
    expect(third.decisions.map((d) => d.kind)).toEqual(['eject']);
    expect(logs.messages()).toContain(
      'marking gateway-1 unhealthy due to 3 consecutive ping timeouts',
    );
    expect((await nodeRecord(store, 'gateway-1'))?.status).toBe('unhealthy');
  });

  it('refuses a second isolation beyond the share, reporting it once', async () => {
    const { store, published, plane, logs } = await setup(kind);
    for (const id of ['gateway-1', 'gateway-2', 'gateway-3']) await register(store, id, 10);
    await plane.decide(overloaded('gateway-1', T0));
    const second = await plane.decide(overloaded('gateway-2', T0 + 1_000));
    const third = await plane.decide(cpuSample('gateway-2', T0 + 2_000, 0.99));
    await settle();
    expect(second.decisions.map((d) => d.kind)).toEqual(['suppressed']);
    expect(third.decisions).toEqual([]);
    expect(
      published.filter((e) => e['detail-type'] === DecisionEvents.isolationSuppressed),
    ).toHaveLength(1);
    expect(logs.messages()).toContain(
      'not isolating gateway-2 (CPU > 95% for 30s): cascade guard, 1 of 3 already isolated, at most 1',
    );
    expect((await nodeRecord(store, 'gateway-2'))?.status).toBe('active');
  });
});

describe('ControlPlane under concurrency', () => {
  it('never isolates more than the guard allows when invocations race', async () => {
    const { store, plane } = await setup('memory');
    const nodes = Array.from({ length: 10 }, (_, i) => `gateway-${i + 1}`);
    for (const id of nodes) await register(store, id, 10);
    // Ten decisions at once, one per node, each wanting its node isolated; max share 10 %: one.
    const results = await Promise.all(nodes.map((id) => plane.decide(overloaded(id, T0))));
    const ejected = results.filter((r) => r.decisions.some((d) => d.kind === 'eject'));
    expect(ejected).toHaveLength(1);
    const cluster = (await store.get<ClusterControlRecord>(CLUSTER_KEY))!.value;
    expect(Object.keys(cluster.ejected)).toEqual([ejected[0]!.node]);
    const statuses = await Promise.all(nodes.map((id) => nodeRecord(store, id)));
    expect(statuses.filter((r) => r?.status === 'isolated')).toHaveLength(1);
  });

  it('decides once when the same event is handled by two invocations at once', async () => {
    const { store, plane, published } = await setup('memory');
    for (const id of ['gateway-1', 'gateway-2', 'gateway-3']) await register(store, id, 10);
    const event = overloaded('gateway-1', T0);
    const outcomes = await Promise.allSettled([plane.decide(event), plane.decide(event)]);
    await settle();
    // One runs; the other finds it done or in progress (Lambda would retry that one later).
    const codes = outcomes.map((o) =>
      o.status === 'fulfilled' ? o.value.outcome : (o.reason as { code: string }).code,
    );
    expect(codes.sort()).toEqual(expect.arrayContaining(['applied']));
    expect(codes.filter((c) => c === 'applied')).toHaveLength(1);
    expect(published.filter((e) => e['detail-type'] === DecisionEvents.nodeIsolated)).toHaveLength(
      1,
    );
    expect(await store.list(MOVE_PREFIX)).toHaveLength(1);
  });
});

describe('ControlPlane: nodeLost', () => {
  async function sessions(store: StateStore, node: string, names: string[]) {
    const repo = new RecordRepository(store);
    for (const name of names) {
      await repo.putSession({
        apiVersion: API_V2,
        kind: 'StreamSession',
        metadata: { name },
        spec: { sessionId: name, clusterId: 'local', nodeId: node },
        status: { phase: 'Active' },
      });
    }
    return repo;
  }

  it('marks the sessions of an exited gateway Failed and publishes one decision', async () => {
    const { store, plane, published, logs } = await setup('memory');
    await register(store, 'gateway-2', 2, { pid: 4242 });
    const repo = await sessions(store, 'gateway-2', ['s1', 's2']);
    await sessions(store, 'gateway-1', ['s3']);
    const exited = makeEvent(
      Sources.control,
      'Gateway Process Exited',
      { node: 'gateway-2', pid: 4242, code: null, signal: 'SIGKILL', uptimeMs: 5000 },
      ['gateway-2'],
    );
    const lease = makeEvent(
      Sources.control,
      'Node Lease Expired',
      { node: 'gateway-2', pid: 4242 },
      ['gateway-2'],
    );

    const first = await plane.nodeLost(exited);
    const duplicate = await plane.nodeLost(exited);
    const otherWitness = await plane.nodeLost(lease);
    await settle();

    expect(first.outcome).toBe('applied');
    expect(duplicate.outcome).toBe('duplicate');
    expect(otherWitness.outcome).toBe('duplicate');
    const phases = Object.fromEntries(
      (await repo.listSessions()).map((s) => [s.record.metadata.name, s.record.status.phase]),
    );
    expect(phases).toEqual({ s1: 'Failed', s2: 'Failed', s3: 'Active' });
    const lost = published.filter((e) => e['detail-type'] === DecisionEvents.nodeDeclaredLost);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.detail).toMatchObject({
      node: 'gateway-2',
      cause: 'process_exited',
      sessions: 2,
      incarnation: 'pid:4242',
    });
    expect(logs.messages()).toContain(
      'gateway-2 lost (process exited (signal SIGKILL)); 2 sessions marked for resume elsewhere',
    );
  });

  it('treats a restarted gateway as new: its later loss is a second decision', async () => {
    const { store, plane, published } = await setup('memory');
    await register(store, 'gateway-1', 0, {
      pid: 1,
      startedAt: new Date(T0 - 60_000).toISOString(),
    });
    const exit = (pid: number, t: number) => ({
      ...makeEvent(
        Sources.control,
        'Gateway Process Exited',
        { node: 'gateway-1', pid, signal: 'SIGKILL' },
        ['gateway-1'],
      ),
      time: new Date(t).toISOString(),
    });
    await plane.nodeLost(exit(1, T0));
    await register(store, 'gateway-1', 0, {
      pid: 2,
      startedAt: new Date(T0 + 1_000).toISOString(),
    });
    expect((await plane.nodeLost(exit(2, T0 + 5_000))).outcome).toBe('applied');
    // A late report about the first process changes nothing.
    expect((await plane.nodeLost(exit(1, T0 + 100))).outcome).not.toBe('applied');
    await settle();
    expect(
      published.filter((e) => e['detail-type'] === DecisionEvents.nodeDeclaredLost),
    ).toHaveLength(2);
  });
});

describe('ControlPlane: recovery and moves', () => {
  it('carries out a decision a crashed invocation committed but did not carry out, once', async () => {
    const { store, bus, published, logs } = await setup('memory');
    for (const id of ['gateway-1', 'gateway-2', 'gateway-3']) await register(store, id, 30);
    const event = overloaded('gateway-1', T0);
    // The first invocation committed its decision, then died before carrying it out: its claim
    // is in progress and the outbox holds the decision.
    let now = Date.now();
    const crashed = new ControlPlane({
      store,
      bus,
      logger: logs.logger,
      now: () => now,
      moves: {
        moveSessions: () => {
          throw new Error('process died');
        },
      },
    });
    await crashed.decide(event);
    await settle();
    const committed = (await nodeRecord(store, 'gateway-1'))!;
    await store.put(CONTROL_NODE_PREFIX + 'gateway-1', {
      ...committed,
      outbox: [committedEject(committed)],
    });
    await store.put('decisions/' + event.id, {
      status: 'in_progress',
      function: 'decide',
      claimedAt: now,
      expiresAt: now + 60_000,
    });
    published.length = 0;

    // The redelivery after the claim expired finds the event applied and the outbox full.
    now += 60_001;
    const retry = new ControlPlane({ store, bus, logger: logs.logger, now: () => now });
    const result = await retry.decide(event);
    await retry.decide(event);
    await settle();

    expect(result.outcome).toBe('duplicate');
    expect(published.map((e) => e['detail-type'])).toEqual([
      DecisionEvents.nodeIsolated,
      DecisionEvents.migrationStarted,
      DecisionEvents.migrationCompleted,
    ]);
    expect(await store.list(MOVE_PREFIX)).toHaveLength(1);
    expect((await nodeRecord(store, 'gateway-1'))!.outbox).toEqual([]);
  });

  it('reports a failed move, and a node with no eligible target', async () => {
    const { store, bus, published, logs } = await setup('memory');
    for (const id of ['gateway-1', 'gateway-2', 'gateway-3']) await register(store, id, 30);
    const failing = new ControlPlane({
      store,
      bus,
      logger: logs.logger,
      moves: { moveSessions: () => Promise.reject(new Error('gateway-2 refused Migrate')) },
    });
    await failing.decide(overloaded('gateway-1', T0));
    await settle();
    expect(published.map((e) => e['detail-type'])).toEqual([
      DecisionEvents.nodeIsolated,
      DecisionEvents.migrationStarted,
      DecisionEvents.migrationFailed,
    ]);
    expect(published[2]!.detail).toMatchObject({
      requested: 30,
      moved: 0,
      error: 'gateway-2 refused Migrate',
    });

    const lonely = await setup('memory');
    await register(lonely.store, 'a', 7);
    await register(lonely.store, 'b', 0);
    // b is lost (no newer incarnation), so a has nowhere to send its sessions.
    await lonely.plane.nodeLost({
      ...makeEvent(Sources.control, 'Gateway Process Exited', { node: 'b', pid: 1000 }, ['b']),
    });
    const guards = { maxIsolatedShare: 1, panicThreshold: 0 };
    await new RecordRepository(lonely.store).putPolicy({
      apiVersion: API_V2,
      kind: 'FailoverPolicy',
      metadata: { name: 'default' },
      spec: { guards },
    });
    await lonely.plane.decide(overloaded('a', T0));
    await settle();
    expect(lonely.logs.messages()).toContain(
      'could not rebalance 7 connections from a: no eligible target',
    );
    expect(lonely.published.at(-1)!['detail-type']).toBe(DecisionEvents.migrationFailed);
  });

  it('records a move request once per decision (StoreMoveExecutor)', async () => {
    const { store } = await setup('memory');
    const { StoreMoveExecutor } = await import('../../../shared/control/moves.js');
    const executor = new StoreMoveExecutor(store);
    const targets = [{ node: 'b', count: 3 }];
    const trace = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };
    expect(await executor.moveSessions('a', targets, 3, trace, { moveId: 'm1', reason: 'r' })).toBe(
      3,
    );
    expect(await executor.moveSessions('a', targets, 3, trace, { moveId: 'm1', reason: 'r' })).toBe(
      3,
    );
    const moves = await store.list<MoveRequestRecord>(MOVE_PREFIX);
    expect(moves.map((m) => [m.key, m.version])).toHaveLength(1);
    expect(moves[0]!.value).toMatchObject({
      id: 'm1',
      fromNode: 'a',
      targets,
      count: 3,
      trace,
      status: 'requested',
    });
  });
});

function committedEject(record: NodeControlRecord) {
  // The decision the crashed invocation committed: rebuild it from the record it wrote.
  return {
    kind: 'eject' as const,
    id: 'c0ffee00-0000-4000-8000-000000000001',
    node: record.node,
    status: 'isolated' as const,
    rule: record.rule!,
    reason: record.reason!,
    action: 'isolate',
    at: record.statusSince,
    trigger: {
      eventId: record.recentEventIds[0]!,
      source: 'streamheal.gateway',
      detailType: 'Node Overloaded',
      time: new Date(T0).toISOString(),
    },
  };
}

describe('watchNodeLeases', () => {
  it('publishes Node Lease Expired with the last registration when a gateway lease ends', async () => {
    const { store, bus, published, logs } = await setup('memory');
    const { watchNodeLeases } = await import('../../../shared/control/leaseWatch.js');
    const before = await store.grantLease(60_000);
    await register(store, 'gateway-1', 0, { pid: 77 }, before);
    const watch = await watchNodeLeases(store, bus, logs.logger);
    cleanups.push(() => watch.close());
    const lease = await store.grantLease(60_000);
    await register(store, 'gateway-2', 0, { pid: 88 }, lease);
    await sleep(10);
    await store.revokeLease(before);
    await store.revokeLease(lease);
    await sleep(30);
    const expired = published.filter((e) => e['detail-type'] === 'Node Lease Expired');
    expect(expired.map((e) => e.detail)).toEqual([
      expect.objectContaining({ node: 'gateway-1', pid: 77 }),
      expect.objectContaining({ node: 'gateway-2', pid: 88 }),
    ]);
  });
});
