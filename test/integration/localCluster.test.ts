/**
 * The must-have scenarios on the real local cluster: a control process and three
 * gateway processes, clients over real sockets, SIGKILL for crashes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeClient } from '../../shared/client/node.js';
import type { StreamhealClient } from '../../shared/client/StreamhealClient.js';
import { startClusterProcess, type ClusterProcess } from '../support/cluster.js';
import { eventually } from '../support/processes.js';
import { openSse, type SseEvent } from '../support/sse.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('local cluster (real processes)', () => {
  let cluster: ClusterProcess;
  const clients: StreamhealClient[] = [];

  beforeAll(async () => {
    cluster = await startClusterProcess({
      controlPort: 17070,
      portBase: 17081,
      env: { STREAMHEAL_HISTORY_MAX_COUNT: '50' },
    });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    expect(await cluster.stop()).toEqual([]);
  }, 30_000);

  async function client(urls: string[], channel: string, after?: number) {
    const c = createNodeClient({ urls });
    clients.push(c);
    const received: number[] = [];
    c.on('message', (m) => {
      if (m.channel === channel) received.push(m.position);
    });
    await c.connect();
    await c.subscribe(channel, after === undefined ? {} : { after });
    return { c, received };
  }

  const range = (from: number, to: number) =>
    Array.from({ length: to - from + 1 }, (_, i) => from + i);

  it('delivers every message in order to clients on different gateways', async () => {
    const [g1, g2, g3] = cluster.gatewayUrls as [string, string, string];
    const a = await client([g1], 'fanout');
    const b = await client([g2], 'fanout');
    for (let i = 0; i < 100; i++) await cluster.publish(i % 2 ? g3 : g1, 'fanout', { i });
    await eventually(
      () => a.received.length === 100 && b.received.length === 100,
      5_000,
      '100 messages each',
    );
    expect(a.received).toEqual(range(1, 100));
    expect(b.received).toEqual(range(1, 100));
  });

  it("exports the control link pool on each gateway's /metrics", async () => {
    const text = await (await fetch(`${cluster.gatewayUrls[0]}/metrics`)).text();
    const open = Number(
      text.match(/^streamheal_link_pool_connections\{state="open"[^}]*\} (\S+)$/m)?.[1],
    );
    expect(open).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^streamheal_link_pool_busy_ratio\{[^}]*\} \S+$/m);
  });

  it('resumes on another gateway after SIGKILL of its own, with every position exactly once', async () => {
    const { c, received } = await client(cluster.gatewayUrls, 'crash');
    const victimUrl = c.url!;
    const victim = await cluster.gatewayPid(victimUrl);
    const publishers = cluster.gatewayUrls.filter((u) => u !== victimUrl);
    const publisher = cluster.keepPublishing(publishers, 'crash');
    await eventually(() => received.length >= 50, 5_000, 'messages before the crash');
    process.kill(victim, 'SIGKILL');
    await eventually(() => c.url !== victimUrl && c.isConnected, 5_000, 'reconnected elsewhere');
    await sleep(500);
    const published = await publisher.stop();
    await eventually(() => received.length === published, 5_000, `all ${published} messages`);
    expect(received).toEqual(range(1, published));
    expect(c.stats).toMatchObject({ duplicates: 0, gaps: 0 });
    // Like ECS, the supervisor brings the dead gateway back on the same port.
    await cluster.waitFor(/restarting on port/, 5_000);
    await eventually(
      async () => (await fetch(`${victimUrl}/readyz`)).status === 200,
      15_000,
      'gateway restarted',
    );
  }, 30_000);

  it('drains a gateway on SIGTERM: its sessions move make-before-break, every position once', async () => {
    const [g1, ...others] = cluster.gatewayUrls as [string, ...string[]];
    // The client knows only g1: the others it learns from the redirect.
    const { c, received } = await client([g1], 'drain');
    const events: string[] = [];
    c.on('moved', (e) => events.push(`moved ${e.to}`));
    c.on('disconnected', (e) => events.push(`disconnected ${e.code}`));
    const publisher = cluster.keepPublishing(others, 'drain');
    await eventually(() => received.length >= 50, 5_000, 'messages before the drain');
    process.kill(await cluster.gatewayPid(g1), 'SIGTERM');
    await eventually(() => c.url !== g1 && c.isConnected, 10_000, 'moved elsewhere');
    await sleep(300);
    const published = await publisher.stop();
    await eventually(() => received.length === published, 5_000, `all ${published} messages`);
    expect(received).toEqual(range(1, published));
    expect(events).toEqual([`moved ${c.url}`]);
    expect(others).toContain(c.url);
    expect(c.stats).toMatchObject({ duplicates: 0, gaps: 0, moves: 1, reconnects: 0 });
    await eventually(
      async () => (await fetch(`${g1}/readyz`).catch(() => undefined))?.status === 200,
      15_000,
      'gateway restarted',
    );
  }, 40_000);

  it('lets a plain SSE client resume with Last-Event-ID on another gateway after a SIGKILL', async () => {
    const [g1, g2, g3] = cluster.gatewayUrls as [string, string, string];
    await eventually(
      async () => (await fetch(`${g1}/readyz`)).status === 200,
      15_000,
      'gateway-1 ready',
    );
    const positions = (events: SseEvent[]) =>
      events.map((e) => (JSON.parse(e.data) as { position: number }).position);
    const first = await openSse(`${g1}/v1/sse?channel=sse`);
    for (let i = 0; i < 20; i++) await cluster.publish(g3, 'sse', i);
    await first.waitFor(20);
    process.kill(await cluster.gatewayPid(g1), 'SIGKILL');
    await first.ended;
    for (let i = 20; i < 40; i++) await cluster.publish(g3, 'sse', i);
    const second = await openSse(`${g2}/v1/sse?channel=sse`, {
      'last-event-id': first.events.at(-1)!.id!,
    });
    await second.waitFor(20);
    expect([...positions(first.events), ...positions(second.events)]).toEqual(range(1, 40));
    await second.close();
  }, 30_000);

  it('says history-lost when resuming beyond the history bound', async () => {
    const [g1] = cluster.gatewayUrls as [string];
    await eventually(
      async () => (await fetch(`${g1}/readyz`)).status === 200,
      15_000,
      'gateway-1 ready',
    );
    for (let i = 0; i < 80; i++) await cluster.publish(g1, 'bounded', i);
    const lost: { oldest: number; latest: number }[] = [];
    const c = createNodeClient({ urls: [g1] });
    clients.push(c);
    c.on('history-lost', (event) => lost.push(event));
    const received: number[] = [];
    c.on('message', (m) => received.push(m.position));
    await c.connect();
    await c.subscribe('bounded', { after: 10 });
    await eventually(() => received.length === 50, 5_000, 'the 50 held messages');
    expect(lost).toEqual([expect.objectContaining({ channel: 'bounded', oldest: 31, latest: 80 })]);
    expect(received).toEqual(range(31, 80));
  });
});
