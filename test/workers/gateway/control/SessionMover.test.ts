/**
 * Drains behind a load balancer (STREAMHEAL_PUBLIC_URL): two in-process gateways on real
 * sockets behind a TCP proxy that plays the NLB, SDK clients that only know the proxy. The
 * draining gateway redirects to the public URL with cluster-targeted tokens; the client moves
 * make-before-break through the proxy to the other gateway, every position exactly once. When
 * the proxy sends the redirect connection back to the draining gateway, the move fails and the
 * client still loses nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { USED_TOKEN_PREFIX } from '../../../../shared/redirectTokens.js';
import { Cluster, range, until } from '../../../shared/client/harness.js';
import { TestLoadBalancer } from './loadBalancer.js';

describe('SessionMover behind a load balancer (public URL)', () => {
  let cluster: Cluster;
  let balancer: TestLoadBalancer;
  afterEach(async () => {
    await cluster.close();
    await balancer.close();
  });

  /** Two gateways that advertise the proxy as their public URL; clients reach only A at first. */
  async function twoGatewaysBehindTheBalancer() {
    cluster = new Cluster();
    balancer = await TestLoadBalancer.start();
    const advertise = { publicUrl: balancer.url };
    const a = await cluster.gateway({ advertise });
    const b = await cluster.gateway({ advertise });
    balancer.register('a', a.port);
    return { a, b };
  }

  it('moves every session make-before-break through the load balancer to the other gateway', async () => {
    const { a, b } = await twoGatewaysBehindTheBalancer();
    const record = await cluster.store.get<{ publicUrl?: string }>('nodes/gw-1');
    expect(record?.value.publicUrl).toBe(balancer.url);
    const recordings = Array.from({ length: 3 }, () => cluster.client([balancer.url]));
    for (const { client } of recordings) {
      await client.connect();
      await client.subscribe('live');
    }
    expect(a.gateway.status(10).sessions).toHaveLength(3);
    balancer.register('b', b.port);
    const publisher = cluster.keepPublishing(b, 'live');
    await until(() => recordings.every((r) => r.positions('live').length >= 10), 'messages on A');

    // What ECS does: deregister the task (no new flows to it), then SIGTERM (a drain).
    balancer.deregister('a');
    const reply = await a.gateway.drain(5_000);

    expect(reply).toEqual({ moved: 3, closed: 0 });
    expect(balancer.routed).toEqual(['a', 'a', 'a', 'b', 'b', 'b']);
    expect(a.gateway.status(10).websocketConnections).toBe(0);
    expect(b.gateway.status(10).sessions.sort()).toEqual(
      recordings.map((r) => r.client.session).sort(),
    );
    // Each used its own token once, at B (the gateway the load balancer picked).
    const used = await cluster.store.list<{ sessionId: string; targetNode: string }>(
      USED_TOKEN_PREFIX,
    );
    expect(used.map((u) => u.value.targetNode)).toEqual(['gw-2', 'gw-2', 'gw-2']);
    const moved = recordings.map((r) => r.positions('live').length);
    await until(
      () => recordings.every((r, i) => r.positions('live').length >= moved[i]! + 10),
      '10 more messages on B',
    );
    const published = await publisher.stop();
    for (const r of recordings) {
      await until(() => r.positions('live').at(-1) === published, 'every message');
      expect(r.positions('live')).toEqual(range(r.positions('live')[0]!, published));
      // The redirect named no node ("*"); the client learnt it from the target's welcome.
      expect(r.of('moved')).toMatchObject([{ from: balancer.url, to: balancer.url, node: 'gw-2' }]);
      expect(r.client.node).toBe('gw-2');
      // Make-before-break: never disconnected, nothing twice, nothing missing.
      expect(r.of('disconnected')).toEqual([]);
      expect(r.of('error')).toEqual([]);
      expect(r.client.url).toBe(balancer.url);
      expect(r.client.stats).toMatchObject({ duplicates: 0, gaps: 0, moves: 1, reconnects: 0 });
    }
  });

  it('loses nothing when the redirect connection comes back to the draining gateway', async () => {
    const { a, b } = await twoGatewaysBehindTheBalancer();
    const recording = cluster.client([balancer.url]);
    const { client } = recording;
    await client.connect();
    await client.subscribe('live');
    balancer.register('b', b.port);
    balancer.deregister('a');
    const publisher = cluster.keepPublishing(b, 'live');
    await until(() => recording.positions('live').length >= 10, 'messages on A');

    // A load balancer that still sends new flows to the draining gateway: it refuses them (503).
    balancer.routeNextTo('a', a.port);
    const reply = await a.gateway.drain(1_000);

    expect(reply).toEqual({ moved: 0, closed: 1 });
    expect(recording.of('error')).toEqual([
      { code: 'move_failed', message: expect.stringMatching(/abandoned/) },
    ]);
    // The client kept its connection to A through the drain...
    expect(recording.of('disconnected')).toEqual([]);
    expect(a.gateway.status(10).sessions).toEqual([client.session]);
    // ...until A closes what is left (4000, as at the end of a drain); it resumes through the
    // load balancer, now on B, from the positions it holds.
    await a.gateway.close();
    await until(() => client.isConnected && client.node === 'gw-2', 'resumed on B');
    const published = await publisher.stop();
    await until(() => recording.positions('live').at(-1) === published, 'every message');
    expect(recording.positions('live')).toEqual(range(1, published));
    expect(recording.of('disconnected').map((d) => d.code)).toEqual([4000]);
    expect(client.stats).toMatchObject({ duplicates: 0, gaps: 0, moves: 0, reconnects: 1 });
    expect(balancer.routed).toEqual(['a', 'a', 'b']);
  });
});
