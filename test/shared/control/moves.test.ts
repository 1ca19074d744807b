/**
 * GatewayMoveExecutor against real gateways (gRPC control service on loopback) and real SDK
 * clients: the decision's share of sessions moves make-before-break to each target; behind a
 * load balancer (a TCP proxy on loopback, the gateways' public URL), through it with
 * cluster-targeted tokens.
 */
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GatewayMoveExecutor } from '../../../shared/control/moves.js';
import { USED_TOKEN_PREFIX } from '../../../shared/redirectTokens.js';
import { initTracing, shutdownTracing } from '../../../shared/telemetry/tracing.js';
import { Cluster, keyRing, range, until } from '../client/harness.js';
import { TestLoadBalancer } from '../../workers/gateway/control/loadBalancer.js';
import { register } from './helpers.js';

describe('GatewayMoveExecutor', () => {
  let cluster: Cluster;
  const exporter = new InMemorySpanExporter();
  beforeAll(() => initTracing('test', [new SimpleSpanProcessor(exporter)]));
  afterAll(() => shutdownTracing());
  afterEach(() => cluster.close());

  it("continues the decision's trace in the gateway's migrate span", async () => {
    cluster = new Cluster();
    const a = await cluster.gateway({ controlPort: 0 });
    await cluster.gateway();
    const { client } = cluster.client([a.url]);
    await client.connect();
    const decisionTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const moved = await new GatewayMoveExecutor(cluster.store, keyRing).moveSessions(
      'gw-1',
      [{ node: 'gw-2', count: 1 }],
      1,
      { traceparent: `00-${decisionTrace}-00f067aa0ba902b7-01` },
    );
    expect(moved).toBe(1);
    const migrate = exporter.getFinishedSpans().find((span) => span.name === 'migrate')!;
    expect(migrate.spanContext().traceId).toBe(decisionTrace);
    expect(migrate.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
    expect(migrate.attributes['streamheal.sessions']).toBe(1);
  });

  it('moves the asked share of a gateway’s sessions to each target', async () => {
    cluster = new Cluster();
    const a = await cluster.gateway({ controlPort: 0 });
    const b = await cluster.gateway();
    const c = await cluster.gateway();
    const recordings = Array.from({ length: 3 }, () => cluster.client([a.url]));
    for (const { client } of recordings) {
      await client.connect();
      await client.subscribe('live');
    }
    const executor = new GatewayMoveExecutor(cluster.store, keyRing, { ttlMs: 5_000 });
    const moved = await executor.moveSessions(
      'gw-1',
      [
        { node: 'gw-2', count: 1 },
        { node: 'gw-3', count: 1 },
      ],
      2,
      {},
    );
    expect(moved).toBe(2);
    expect(recordings.map((r) => r.client.url).sort()).toEqual([a.url, b.url, c.url].sort());
    const position = await cluster.publish(b, 'live', 'after the move');
    for (const r of recordings) {
      await until(() => r.positions('live').includes(position), 'delivered everywhere');
      expect(r.of('disconnected')).toEqual([]);
    }
  });

  it('says so when the source gateway runs no control service', async () => {
    cluster = new Cluster();
    await cluster.gateway();
    await cluster.gateway();
    const executor = new GatewayMoveExecutor(cluster.store, keyRing);
    await expect(
      executor.moveSessions('gw-1', [{ node: 'gw-2', count: 1 }], 1, {}),
    ).rejects.toThrow(/gw-1 has no control service/);
  });

  it('takes the ring from an async provider, when a move happens', async () => {
    cluster = new Cluster();
    const a = await cluster.gateway({ controlPort: 0 });
    await cluster.gateway();
    const recording = cluster.client([a.url]);
    await recording.client.connect();
    let asked = 0;
    const executor = new GatewayMoveExecutor(cluster.store, async () => {
      asked++;
      return keyRing;
    });
    expect(asked).toBe(0);
    expect(await executor.moveSessions('gw-1', [{ node: 'gw-2', count: 1 }], 1, {})).toBe(1);
    expect(asked).toBe(1);
  });

  it('gives up on a gateway that does not answer Status', async () => {
    cluster = new Cluster();
    // Accepts TCP and never says a word: what a frozen gateway looks like.
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const control = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
      await register(cluster.store, 'gw-frozen', 1, { control });
      await register(cluster.store, 'gw-2', 0);
      const executor = new GatewayMoveExecutor(cluster.store, keyRing, { statusTimeoutMs: 300 });
      const started = performance.now();
      await expect(
        executor.moveSessions('gw-frozen', [{ node: 'gw-2', count: 1 }], 1, {}),
      ).rejects.toThrow(`gateway gw-frozen did not answer Status at ${control} within 300 ms`);
      expect(performance.now() - started).toBeLessThan(2_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  describe('behind a load balancer (the source advertises a public URL)', () => {
    let balancer: TestLoadBalancer;
    afterEach(() => balancer.close());

    async function threeGatewaysBehindTheBalancer() {
      cluster = new Cluster();
      balancer = await TestLoadBalancer.start();
      const advertise = { publicUrl: balancer.url };
      const a = await cluster.gateway({ controlPort: 0, advertise });
      const b = await cluster.gateway({ advertise });
      const c = await cluster.gateway({ advertise });
      balancer.register('a', a.port);
      return { a, b, c };
    }

    it('sends the moved clients to the public URL; the load balancer picks the gateway', async () => {
      const { a, b, c } = await threeGatewaysBehindTheBalancer();
      const recordings = Array.from({ length: 4 }, () => cluster.client([balancer.url]));
      for (const { client } of recordings) {
        await client.connect();
        await client.subscribe('live');
      }
      // The isolated gateway stays registered, as an unhealthy NLB target may still be.
      balancer.register('b', b.port);
      balancer.register('c', c.port);
      const publisher = cluster.keepPublishing(b, 'live');
      await until(() => recordings.every((r) => r.positions('live').length >= 5), 'messages');
      const executor = new GatewayMoveExecutor(cluster.store, keyRing, { ttlMs: 3_000 });
      // The load balancer routes in turn over a, b, c: one move comes back to A and is refused.
      const moved = await executor.moveSessions(
        'gw-1',
        [
          { node: 'gw-2', count: 2 },
          { node: 'gw-3', count: 1 },
        ],
        3,
        {},
      );
      expect(balancer.routed.slice(4)).toEqual(['a', 'b', 'c']);
      expect(moved).toBe(2);
      const used = await cluster.store.list<{ targetNode: string }>(USED_TOKEN_PREFIX);
      expect(used.map((u) => u.value.targetNode).sort()).toEqual(['gw-2', 'gw-3']);
      expect(a.gateway.status(10).sessions).toHaveLength(2);
      const refused = recordings.filter((r) => r.of('error').length > 0);
      expect(refused.map((r) => r.of('error'))).toEqual([
        [{ code: 'move_failed', message: expect.stringMatching(/token_wrong_target/) }],
      ]);
      const published = await publisher.stop();
      for (const r of recordings) {
        await until(() => r.positions('live').at(-1) === published, 'every message');
        expect(r.positions('live')).toEqual(range(r.positions('live')[0]!, published));
        expect(r.of('disconnected')).toEqual([]);
        expect(r.client.stats).toMatchObject({ duplicates: 0, gaps: 0, reconnects: 0 });
      }
      expect(recordings.map((r) => r.client.stats.moves).sort()).toEqual([0, 0, 1, 1]);
    });

    it('a redirect routed back to the source is refused (token_wrong_target): the client stays, nothing lost', async () => {
      const { a, b } = await threeGatewaysBehindTheBalancer();
      const recording = cluster.client([balancer.url]);
      const { client } = recording;
      await client.connect();
      await client.subscribe('live');
      const publisher = cluster.keepPublishing(b, 'live');
      await until(() => recording.positions('live').length >= 10, 'messages on A');
      balancer.routeNextTo('a', a.port);
      const executor = new GatewayMoveExecutor(cluster.store, keyRing, { ttlMs: 1_000 });
      const moved = await executor.moveSessions('gw-1', [{ node: 'gw-2', count: 1 }], 1, {});

      expect(moved).toBe(0);
      expect(balancer.routed).toEqual(['a', 'a']);
      expect(recording.of('error')).toEqual([
        {
          code: 'move_failed',
          message: expect.stringMatching(/token_wrong_target .*presented to gw-1 itself/),
        },
      ]);
      // Refused before it was used up, and the session is still served where it was.
      expect(await cluster.store.list(USED_TOKEN_PREFIX)).toEqual([]);
      expect(a.gateway.status(10).sessions).toEqual([client.session]);
      expect(client.node).toBe('gw-1');
      const before = recording.positions('live').length;
      await until(() => recording.positions('live').length >= before + 10, '10 more on A');
      const published = await publisher.stop();
      await until(() => recording.positions('live').at(-1) === published, 'every message');
      expect(recording.positions('live')).toEqual(range(1, published));
      expect(recording.of('disconnected')).toEqual([]);
      expect(client.stats).toMatchObject({ duplicates: 0, gaps: 0, moves: 0, reconnects: 0 });
    });
  });
});
