/**
 * Seed 2.4: every connection's timers, listeners and pending work go away with it. A client
 * process opens and closes 100,000 connections (each subscribing once) against an in-process
 * gateway; afterwards the gateway's active handles, timers and heap are back at their baseline.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dist, runNode } from '../../support/processes.js';
import { Cluster } from './harness.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const CYCLES = Number(process.env.STREAMHEAL_CHURN_CYCLES ?? 100_000);

function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

async function settledHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    gc();
  }
  return process.memoryUsage().heapUsed;
}

describe('connection lifecycle', () => {
  let cluster: Cluster;
  beforeAll(() => {
    cluster = new Cluster();
  });
  afterAll(() => cluster.close());

  it(`releases everything a connection held after ${CYCLES.toLocaleString('en')} connect/disconnect cycles`, async () => {
    const gateway = await cluster.gateway();
    const url = `${gateway.url.replace('http', 'ws')}/v1/ws`;
    // Warm up: first-use allocations (JIT, pools, the channels' feeds) are not leaks.
    const warm = await runNode(
      dist('test/support/churnClient.js'),
      [url, '2000', '50'],
      {},
      60_000,
    );
    expect(JSON.parse(warm.stdout)).toEqual({ completed: 2000, failed: 0 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const baseline = { resources: resources(), heap: await settledHeap() };

    const churn = await runNode(
      dist('test/support/churnClient.js'),
      [url, String(CYCLES), '50'],
      {},
      600_000,
    );
    expect(JSON.parse(churn.stdout)).toEqual({ completed: CYCLES, failed: 0 });
    await new Promise((resolve) => setTimeout(resolve, 200));

    expect(resources()).toEqual(baseline.resources);
    const growth = (await settledHeap()) - baseline.heap;
    // A leak of even 100 bytes per connection would be 10 MB here.
    expect(growth).toBeLessThan(2 * 1024 * 1024);
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/streamheal_connections\{transport="ws",node="gateway-1"\} 0/);
  }, 600_000);
});
