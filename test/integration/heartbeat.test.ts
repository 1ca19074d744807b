/**
 * Seed 3.1 on the real local cluster: a gateway PROCESS frozen with SIGSTOP keeps its sockets
 * (its kernel still acknowledges TCP) but answers nothing. The SDK notices through its
 * heartbeat, drops the connection and resumes on another gateway, receiving every position
 * exactly once while a publisher keeps publishing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CLIENT_HEARTBEAT, createNodeClient } from '../../shared/client/node.js';
import type { StreamhealClient } from '../../shared/client/StreamhealClient.js';
import { heartbeatDetectionBoundMs } from '../../shared/protocol/heartbeat.js';
import { startClusterProcess, type ClusterProcess } from '../support/cluster.js';
import { eventually, isAlive } from '../support/processes.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('heartbeat on the local cluster (real processes)', () => {
  let cluster: ClusterProcess;
  const clients: StreamhealClient[] = [];
  const stopped: number[] = [];

  beforeAll(async () => {
    cluster = await startClusterProcess({ controlPort: 16070, portBase: 16081 });
  }, 60_000);

  afterAll(async () => {
    for (const pid of stopped) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone
      }
    }
    await Promise.all(clients.map((c) => c.close()));
    expect(await cluster.stop()).toEqual([]);
  }, 30_000);

  it('detects a gateway frozen with SIGSTOP and resumes on another with every position exactly once', async () => {
    const c = createNodeClient({ urls: cluster.gatewayUrls });
    clients.push(c);
    const received: number[] = [];
    const events: { event: string; at: number; payload: unknown }[] = [];
    c.on('message', (m) => received.push(m.position));
    for (const event of ['degraded', 'disconnected', 'connected', 'resumed'] as const) {
      c.on(event, (payload) => events.push({ event, at: performance.now(), payload }));
    }
    await c.connect();
    await c.subscribe('frozen');
    const victimUrl = c.url!;
    const victim = await cluster.gatewayPid(victimUrl);
    const publishers = cluster.gatewayUrls.filter((u) => u !== victimUrl);
    const publisher = cluster.keepPublishing(publishers, 'frozen');
    await eventually(() => received.length >= 50, 5_000, 'messages before the freeze');

    const frozenAt = performance.now();
    process.kill(victim, 'SIGSTOP');
    stopped.push(victim);
    await eventually(() => c.url !== victimUrl && c.isConnected, 10_000, 'resumed elsewhere');
    const resumedAt = performance.now();
    await sleep(500);
    const published = await publisher.stop();
    await eventually(() => received.length === published, 5_000, `all ${published} messages`);

    const degraded = events.find((e) => e.event === 'degraded');
    const disconnected = events.find((e) => e.event === 'disconnected');
    expect(degraded?.payload).toMatchObject({ url: victimUrl, reason: 'heartbeat', misses: 3 });
    expect(disconnected?.payload).toMatchObject({ url: victimUrl, code: 1006 });
    const detectedMs = degraded!.at - frozenAt;
    const bound = heartbeatDetectionBoundMs(DEFAULT_CLIENT_HEARTBEAT);
    console.log(
      `frozen gateway process: SDK declared it dead ${detectedMs.toFixed(0)} ms after SIGSTOP ` +
        `(bound ${bound} ms; ${(degraded!.payload as { silentMs: number }).silentMs} ms since the last pong), ` +
        `resumed on another gateway ${(resumedAt - frozenAt).toFixed(0)} ms after SIGSTOP; ${published} messages`,
    );
    // The third unanswered ping leaves two probes after the first and waits its timeout.
    const { probeMs, timeoutMs } = DEFAULT_CLIENT_HEARTBEAT;
    expect(detectedMs).toBeGreaterThanOrEqual(2 * probeMs + timeoutMs - 50);
    expect(detectedMs).toBeLessThanOrEqual(bound + 150);
    expect(received).toEqual(range(1, published));
    expect(c.stats).toMatchObject({ duplicates: 0, gaps: 0, heartbeatTimeouts: 1, resumes: 1 });

    // Thawed, the gateway carries on: it was never killed.
    process.kill(victim, 'SIGCONT');
    stopped.splice(stopped.indexOf(victim), 1);
    expect(isAlive(victim)).toBe(true);
    await eventually(
      async () => (await fetch(`${victimUrl}/readyz`)).status === 200,
      15_000,
      'the thawed gateway ready again',
    );
    expect(await cluster.gatewayPid(victimUrl)).toBe(victim);
  }, 40_000);
});
