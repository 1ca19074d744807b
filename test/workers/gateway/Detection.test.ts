/**
 * The gateway's detection wiring over real sockets: L3 socket options, the fast path pausing a
 * slow reader without slowing the others, readiness from the canary, and the kernel's view.
 */
import { execFileSync } from 'node:child_process';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import {
  fdOf,
  kernelProbes,
  type KernelProbes,
} from '../../../workers/gateway/probes/kernelProbe.js';
import { Cluster, range } from './harness.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('Detection', () => {
  let cluster: Cluster;
  afterEach(() => cluster.close());

  it('sets TCP keepalive and TCP_USER_TIMEOUT on every accepted socket (L3)', async () => {
    cluster = new Cluster();
    const tuned: number[] = [];
    const probes: KernelProbes = Object.create(kernelProbes, {
      setUserTimeout: {
        value: (fd: number, ms: number) => {
          tuned.push(fd);
          return kernelProbes.setUserTimeout(fd, ms);
        },
      },
    });
    const gateway = await cluster.gateway({ detection: { tcpUserTimeoutMs: 3_000, probes } });
    const c = await cluster.client(gateway);
    expect(tuned).toHaveLength(1);
    expect(kernelProbes.getUserTimeout(tuned[0]!)).toBe(3_000);
    const port = new URL(gateway.url).port;
    const local = (c.ws as unknown as { _socket: Socket })._socket.localPort;
    // `ss -o` shows the kernel's keepalive timer on the gateway's end of the connection.
    const ss = execFileSync('ss', ['-tnoH', 'state', 'established', `( sport = :${port} )`], {
      encoding: 'utf8',
    });
    expect(ss.split('\n').find((l) => l.includes(`:${local}`))).toMatch(/timer:\(keepalive,/);
    expect(fdOf((c.ws as unknown as { _socket: Socket })._socket)).toBeGreaterThan(0);
  });

  it('pauses a slow reader at the high-water mark, keeps the others on time, and resumes it with nothing lost', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway({ maxBufferedBytes: 256 * 1024 });
    const events: BusEvent[] = [];
    cluster.bus.subscribe({ 'detail-type': ['Write Blocked'] }, (e) => void events.push(e));
    const fast = await cluster.client(gateway);
    const slow = await cluster.client(gateway);
    for (const client of [fast, slow]) {
      client.send({ type: 'subscribe', channel: 'firehose' });
      await client.next((f) => f.type === 'subscribed');
    }
    slow.ws.pause(); // stops reading: the kernel's buffers fill, then the gateway's queue
    const payload = 'x'.repeat(16 * 1024);
    const latencies: number[] = [];
    for (let i = 0; i < 600; i++) {
      const sent = performance.now();
      await cluster.store.append('firehose', payload);
      await fast.waitForMessages('firehose', i + 1);
      latencies.push(performance.now() - sent);
    }
    await sleep(700); // two fast-path ticks
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(
      /streamheal_write_blocked_connections\{cause="slow_client",node="gateway-1"\} 1/,
    );
    expect(metrics).toMatch(
      /streamheal_fast_path_actions_total\{action="queue",node="gateway-1"\} \d+/,
    );
    expect(events.map((e) => e.detail)).toContainEqual(expect.objectContaining({ slow_client: 1 }));
    // The paused reader holds at most the high-water mark plus one frame in the gateway.
    const slowSession = [
      ...(
        gateway as unknown as { sessions: Set<{ queuedBytes: number; isDeliveryPaused: boolean }> }
      ).sessions,
    ].find((s) => s.isDeliveryPaused)!;
    expect(slowSession.queuedBytes).toBeLessThan(256 * 1024 + 17 * 1024);
    latencies.sort((a, b) => a - b);
    expect(latencies[Math.floor(latencies.length * 0.99)]).toBeLessThan(100);
    // Reading again: the fast path resumes it from the store's history, in order.
    slow.ws.resume();
    expect(await slow.waitForMessages('firehose', 600, 15_000)).toEqual(range(1, 600));
  }, 30_000);

  it('reports readiness with the canary, and unready when messages stop being delivered', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway({ detection: { canaryIntervalMs: 50 } });
    await sleep(300);
    expect(await (await fetch(`${gateway.url}/readyz`)).json()).toMatchObject({
      ready: true,
      checks: { canary: 'ok' },
    });
    // The store goes away: the process is alive and answers /healthz, but nothing is delivered.
    await cluster.store.close();
    await sleep(2_600);
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
    const unready = await fetch(`${gateway.url}/readyz`);
    expect(unready.status).toBe(503);
    expect(await unready.json()).toMatchObject({ ready: false, checks: { canary: 'failing' } });
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    const misses = /streamheal_canary_misses_total\{node="gateway-1"\} (\d+)/.exec(metrics)?.[1];
    expect(Number(misses)).toBeGreaterThanOrEqual(3);
  });
});
