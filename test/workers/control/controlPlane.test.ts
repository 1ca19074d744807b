/**
 * The control-plane functions inside the real local cluster (`streamheal start`: the control
 * process and three gateway processes): decide isolates a gateway that reports Node Overloaded
 * long enough, with the seed's two log lines; a SIGKILLed gateway is handled by nodeLost once.
 * Events are put on, and decision events read from, the cluster's own bus over the control link.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionEvents } from '../../../shared/bus/controlEvents.js';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import { createNodeClient } from '../../../shared/client/node.js';
import type { StreamhealClient } from '../../../shared/client/StreamhealClient.js';
import { HealthEvents } from '../../../shared/health/events.js';
import { LinkClient } from '../../../shared/link/LinkClient.js';
import { RemoteBus } from '../../../shared/link/RemoteBus.js';
import { RemoteStore } from '../../../shared/link/RemoteStore.js';
import { API_V2, RecordRepository } from '../../../shared/records/index.js';
import type { ClusterFile } from '../../../workers/control/clusterFile.js';
import { startClusterProcess, type ClusterProcess } from '../../support/cluster.js';
import { eventually } from '../../support/processes.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('control plane in the local cluster (real processes)', () => {
  let cluster: ClusterProcess;
  let link: LinkClient;
  let bus: RemoteBus;
  let store: RemoteStore;
  const decisions: BusEvent[] = [];
  const clients: StreamhealClient[] = [];

  beforeAll(async () => {
    cluster = await startClusterProcess({ controlPort: 17270, portBase: 17281 });
    const file = JSON.parse(readFileSync(cluster.clusterFile, 'utf8')) as ClusterFile;
    link = new LinkClient({
      url: `${cluster.controlUrl.replace(/^http/, 'ws')}/v1/link`,
      secret: file.clusterSecret!,
    });
    bus = new RemoteBus(link);
    store = new RemoteStore(link);
    bus.subscribe(
      { source: [Sources.control], 'detail-type': Object.values(DecisionEvents) },
      (event) => {
        decisions.push(event);
      },
    );
    await sleep(200); // the subscription is made over the link
  }, 60_000);

  afterAll(async () => {
    try {
      await Promise.all(clients.map((c) => c.close()));
      await bus?.close();
      link?.close();
    } finally {
      if (cluster) expect(await cluster.stop()).toEqual([]);
    }
  }, 30_000);

  const logLines = () =>
    cluster
      .stdout()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg: string; node?: string });

  it('isolates a gateway reporting Node Overloaded for 30 s, with the two seed log lines', async () => {
    const [g1] = cluster.gatewayUrls as [string];
    for (let i = 0; i < 4; i++) {
      const client = createNodeClient({ urls: [g1] });
      clients.push(client);
      await client.connect();
      await client.subscribe('control-plane');
    }
    // The gateway's registration (refreshed every 2 s) shows its client connections (its own
    // delivery canary is not one).
    const connections = async () => {
      const status = (await (await fetch(`${cluster.controlUrl}/v1/status`)).json()) as {
        nodes: { id: string; connections: { ws: number; sse: number } }[];
      };
      const node = status.nodes.find((n) => n.id === 'gateway-1');
      return (node?.connections.ws ?? 0) + (node?.connections.sse ?? 0);
    };
    await eventually(
      async () => (await connections()) >= 4,
      10_000,
      'gateway-1 registered with our 4 clients',
    );
    const count = await connections();
    const report = (heldForMs: number) =>
      makeEvent(
        Sources.gateway,
        HealthEvents.nodeOverloaded,
        {
          node: 'gateway-1',
          rule: 'cpu-overload',
          reason: 'CPU > 95% for 30s',
          cpuUtilisation: 0.99,
          eventLoopDelayMs: 8,
          heldForMs,
        },
        ['gateway-1'],
      );

    // Over 95 % for 10 s: not long enough.
    await bus.put([report(10_000)]);
    await sleep(1_000);
    expect(logLines().filter((l) => l.msg.startsWith('isolating'))).toEqual([]);

    // Still over 95 %, now for 30 s.
    const thirty = report(30_000);
    await bus.put([thirty]);
    // Our four clients move, make-before-break, through gateway-1's control service.
    expect(count).toBe(4);
    const rebalanced = `rebalanced ${count} connections to gateway-2,3`;
    await cluster.waitFor(new RegExp(`"msg":"${rebalanced}"`), 5_000);
    const messages = logLines().map((l) => l.msg);
    const isolating = messages.indexOf('isolating gateway-1 due to CPU > 95% for 30s');
    expect(isolating).toBeGreaterThanOrEqual(0);
    expect(messages.indexOf(rebalanced)).toBeGreaterThan(isolating);

    await eventually(() => decisions.length >= 3, 5_000, 'three decision events');
    expect(decisions.map((e) => e['detail-type'])).toEqual([
      DecisionEvents.nodeIsolated,
      DecisionEvents.migrationStarted,
      DecisionEvents.migrationCompleted,
    ]);
    expect(decisions[0]!.detail).toMatchObject({
      node: 'gateway-1',
      trigger: { eventId: thirty.id, detailType: 'Node Overloaded' },
    });
    for (const client of clients) {
      expect([cluster.gatewayUrls[1], cluster.gatewayUrls[2]]).toContain(client.url);
      expect(client.stats).toMatchObject({ moves: 1, duplicates: 0, gaps: 0, reconnects: 0 });
    }

    // The same report delivered again changes nothing.
    await bus.put([thirty]);
    await sleep(500);
    expect(logLines().filter((l) => l.msg.startsWith('isolating'))).toHaveLength(1);
  }, 40_000);

  it('runs nodeLost once for a SIGKILLed gateway: its sessions marked Failed, one decision event', async () => {
    const [, , g3] = cluster.gatewayUrls as [string, string, string];
    const repo = new RecordRepository(store);
    for (const name of ['sess-a', 'sess-b']) {
      await repo.putSession({
        apiVersion: API_V2,
        kind: 'StreamSession',
        metadata: { name },
        spec: { sessionId: name, clusterId: 'local', nodeId: 'gateway-3' },
        status: { phase: 'Active' },
      });
    }
    const pid = await cluster.gatewayPid(g3);
    decisions.length = 0;

    process.kill(pid, 'SIGKILL');

    await eventually(
      () => decisions.some((e) => e['detail-type'] === DecisionEvents.nodeDeclaredLost),
      5_000,
      'Node Declared Lost',
    );
    // The supervisor restarts it; wait past the old lease (3 × 2 s) so a lease expiry would show.
    await eventually(
      async () => (await fetch(`${g3}/readyz`)).status === 200,
      15_000,
      'gateway-3 back',
    );
    await sleep(7_000);
    const lost = decisions.filter((e) => e['detail-type'] === DecisionEvents.nodeDeclaredLost);
    expect(lost).toHaveLength(1);
    expect(lost[0]!.detail).toMatchObject({
      node: 'gateway-3',
      cause: 'process_exited',
      sessions: 2,
      incarnation: `pid:${pid}`,
      message:
        'gateway-3 lost (process exited (signal SIGKILL)); 2 sessions marked for resume elsewhere',
    });
    expect(logLines().filter((l) => l.msg.startsWith('gateway-3 lost'))).toHaveLength(1);
    const phases = (await repo.listSessions()).map((s) => s.record.status.phase);
    expect(phases).toEqual(['Failed', 'Failed']);
  }, 40_000);
});
