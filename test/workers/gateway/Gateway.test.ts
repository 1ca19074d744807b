import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Cluster, PUBLISH_KEY, publish, range } from './harness.js';

describe('Gateway', () => {
  let cluster: Cluster;
  beforeEach(() => {
    cluster = new Cluster();
  });
  afterEach(() => cluster.close());

  describe('POST /v1/publish', () => {
    it('assigns positions that grow by one per channel', async () => {
      const gateway = await cluster.gateway();
      const answers = [];
      for (let i = 0; i < 3; i++)
        answers.push(await (await publish(gateway, { channel: 'news', data: { i } })).json());
      expect(answers).toEqual([1, 2, 3].map((position) => ({ channel: 'news', position })));
      expect(await (await publish(gateway, { channel: 'other', data: 'x' })).json()).toEqual({
        channel: 'other',
        position: 1,
      });
    });

    it('refuses a missing or wrong key with 401 and stores nothing', async () => {
      const gateway = await cluster.gateway();
      const missing = await fetch(`${gateway.url}/v1/publish`, {
        method: 'POST',
        body: JSON.stringify({ channel: 'a', data: 1 }),
      });
      expect(missing.status).toBe(401);
      expect(missing.headers.get('www-authenticate')).toBe('Bearer');
      const wrong = await publish(gateway, { channel: 'a', data: 1 }, `${PUBLISH_KEY}x`);
      expect(wrong.status).toBe(401);
      expect((await wrong.json()).error.code).toBe('unauthorized');
      expect((await cluster.store.read('a', 0, 10)).latest).toBe(0);
    });

    it('refuses oversized bodies with 413', async () => {
      const gateway = await cluster.gateway({ limits: { maxFrameBytes: 1024 } });
      const response = await publish(gateway, { channel: 'a', data: 'x'.repeat(2000) });
      expect(response.status).toBe(413);
      expect((await response.json()).error.code).toBe('payload_too_large');
      expect((await cluster.store.read('a', 0, 10)).latest).toBe(0);
    });

    it('refuses malformed JSON, invalid channels and missing data with 400', async () => {
      const gateway = await cluster.gateway();
      const cases: [unknown, string][] = [
        ['{"channel": "a", "data": ', 'bad_frame'],
        [{ channel: 'has space', data: 1 }, 'invalid_channel'],
        [{ channel: 'x'.repeat(129), data: 1 }, 'invalid_channel'],
        [{ data: 1 }, 'invalid_channel'],
        [{ channel: 'a' }, 'bad_frame'],
        ['null', 'invalid_channel'],
      ];
      for (const [body, code] of cases) {
        const response = await publish(gateway, body);
        expect(response.status, JSON.stringify(body)).toBe(400);
        expect((await response.json()).error.code).toBe(code);
      }
      // The gateway keeps serving.
      expect((await publish(gateway, { channel: 'a', data: 1 })).status).toBe(200);
    });

    it('answers 503 with Retry-After when the store is down, acknowledging nothing', async () => {
      const gateway = await cluster.gateway();
      await cluster.store.close();
      const response = await publish(gateway, { channel: 'a', data: 1 });
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBe('1');
      expect((await response.json()).error.code).toBe('store_unavailable');
    });
  });

  describe('health, readiness and metrics', () => {
    it('serves /healthz, /readyz and Prometheus metrics with the seed counter', async () => {
      const gateway = await cluster.gateway();
      expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
      const ready = await fetch(`${gateway.url}/readyz`);
      expect(ready.status).toBe(200);
      expect((await ready.json()).checks.store).toBe('ok');
      await publish(gateway, { channel: 'a', data: 1 }, 'wrong-key-123');
      const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
      expect(metrics).toContain('# TYPE stream_push_errors_total counter');
      expect(metrics).toMatch(/streamheal_messages_published_total\{node="gateway-1"\} 0/);
      expect(metrics).toContain('nodejs_eventloop_lag_seconds');
    });

    it('registers itself in the store and leaves on close', async () => {
      const gateway = await cluster.gateway();
      const record = await cluster.store.get<{ url: string }>('nodes/gateway-1');
      expect(record?.value.url).toBe(gateway.url);
      await gateway.close();
      expect(await cluster.store.get('nodes/gateway-1')).toBeUndefined();
      expect(
        (await fetch(`${gateway.url}/healthz`).catch(() => undefined))?.status,
      ).toBeUndefined();
    });

    it('answers unknown routes with 404', async () => {
      const gateway = await cluster.gateway();
      const response = await fetch(`${gateway.url}/nope`);
      expect(response.status).toBe(404);
      expect((await response.json()).error.code).toBe('not_found');
    });
  });

  describe('CORS', () => {
    it('serves allowed browser origins and refuses WebSocket upgrades from others', async () => {
      const gateway = await cluster.gateway({ corsOrigins: ['https://app.example'] });
      const preflight = await fetch(`${gateway.url}/v1/publish`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example');
      const allowed = await publish(gateway, { channel: 'a', data: 1 }, PUBLISH_KEY, {
        origin: 'https://app.example',
      });
      expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example');
      const other = await publish(gateway, { channel: 'a', data: 1 }, PUBLISH_KEY, {
        origin: 'https://evil.example',
      });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
      await expect(cluster.client(gateway, { origin: 'https://evil.example' })).rejects.toThrow(
        /403/,
      );
      await expect(
        cluster.client(gateway, { origin: 'https://app.example' }),
      ).resolves.toBeDefined();
    });
  });

  describe('fan-out across gateways', () => {
    it('delivers every message, in order, to subscribers on different gateways', async () => {
      const [a, b] = [await cluster.gateway(), await cluster.gateway()];
      const onA = await cluster.client(a);
      const onB = await cluster.client(b);
      for (const client of [onA, onB]) {
        client.send({ type: 'subscribe', id: 1, channel: 'news' });
        await client.next((f) => f.type === 'subscribed');
      }
      for (let i = 1; i <= 50; i++) await publish(i % 2 ? a : b, { channel: 'news', data: { i } });
      expect(await onA.waitForMessages('news', 50)).toEqual(range(1, 50));
      expect(await onB.waitForMessages('news', 50)).toEqual(range(1, 50));
    });

    it('only the gateways with subscribers on a channel receive it', async () => {
      const [a, b] = [await cluster.gateway(), await cluster.gateway()];
      const onA = await cluster.client(a);
      onA.send({ type: 'subscribe', channel: 'only-a' });
      await onA.next((f) => f.type === 'subscribed');
      await publish(b, { channel: 'only-a', data: 1 });
      await onA.waitForMessages('only-a', 1);
      expect(a.hub.channelCount).toBe(1);
      expect(b.hub.channelCount).toBe(0);
    });
  });
});
