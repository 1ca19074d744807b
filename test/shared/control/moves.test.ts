/**
 * GatewayMoveExecutor against real gateways (gRPC control service on loopback) and real SDK
 * clients: the decision's share of sessions moves make-before-break to each target.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { GatewayMoveExecutor } from '../../../shared/control/moves.js';
import { Cluster, keyRing, until } from '../client/harness.js';

describe('GatewayMoveExecutor', () => {
  let cluster: Cluster;
  afterEach(() => cluster.close());

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
});
