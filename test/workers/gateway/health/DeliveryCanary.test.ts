import { afterEach, describe, expect, it } from 'vitest';
import {
  DeliveryCanary,
  canaryChannel,
  type CanaryResult,
} from '../../../../workers/gateway/health/DeliveryCanary.js';
import { Cluster, PUBLISH_KEY } from '../harness.js';

const until = async (check: () => boolean, timeoutMs = 5_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

describe('DeliveryCanary', () => {
  let cluster: Cluster;
  let canary: DeliveryCanary | undefined;
  afterEach(async () => {
    canary?.stop();
    await cluster.close();
  });

  it('measures publish-to-delivery through the gateway', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway();
    const results: CanaryResult[] = [];
    canary = new DeliveryCanary({
      gatewayUrl: gateway.url,
      publishKey: PUBLISH_KEY,
      channel: canaryChannel('gateway-1'),
      intervalMs: 50,
      onResult: (r) => results.push(r),
    });
    canary.start();
    await until(() => results.length >= 3);
    expect(results.every((r) => r.ok && r.latencyMs! >= 0 && r.latencyMs! < 1_000)).toBe(true);
  });

  it('counts misses when messages stop arriving though the gateway still answers', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway();
    const results: CanaryResult[] = [];
    canary = new DeliveryCanary({
      gatewayUrl: gateway.url,
      publishKey: 'a-wrong-key-so-nothing-is-published',
      channel: canaryChannel('gateway-1'),
      intervalMs: 50,
      timeoutMs: 100,
      onResult: (r) => results.push(r),
    });
    canary.start();
    await until(() => results.length >= 3);
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
    expect(results.slice(0, 3)).toEqual([
      { ok: false, misses: 1 },
      { ok: false, misses: 2 },
      { ok: false, misses: 3 },
    ]);
  });
});
