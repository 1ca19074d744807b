import { afterEach, describe, expect, it } from 'vitest';
import { signToken, keyRingFromSecret } from '../../../shared/tokens.js';
import { CloseCodes } from '../../../shared/protocol/closeCodes.js';
import { Cluster, keyRing, publish, range } from './harness.js';

describe('WsSession', () => {
  let cluster: Cluster;
  afterEach(() => cluster.close());

  it('welcomes with a session, node, resume token and limits', async () => {
    cluster = new Cluster();
    const client = await cluster.client(await cluster.gateway());
    expect(client.frames[0]).toMatchObject({
      type: 'welcome',
      version: 1,
      node: 'gateway-1',
      limits: { maxFrameBytes: 65536, maxChannels: 100, requestsPerSecond: 50 },
    });
    expect(client.frames[0]!.resumeToken).toEqual(expect.any(String));
  });

  it('subscribes to many channels, unsubscribes, and echoes request ids', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway();
    const client = await cluster.client(gateway);
    client.send({ type: 'subscribe', id: 'a', channel: 'one' });
    client.send({ type: 'subscribe', id: 'b', channel: 'two' });
    expect(await client.next((f) => f.id === 'a')).toMatchObject({
      type: 'subscribed',
      channel: 'one',
      position: 0,
    });
    expect(await client.next((f) => f.id === 'b')).toMatchObject({
      type: 'subscribed',
      channel: 'two',
      position: 0,
    });
    await publish(gateway, { channel: 'one', data: 'x' });
    await publish(gateway, { channel: 'two', data: 'y' });
    expect(await client.next((f) => f.type === 'message' && f.channel === 'two')).toMatchObject({
      position: 1,
      data: 'y',
    });
    client.send({ type: 'unsubscribe', id: 'c', channel: 'one' });
    expect(await client.next((f) => f.id === 'c')).toMatchObject({
      type: 'unsubscribed',
      channel: 'one',
    });
    await publish(gateway, { channel: 'one', data: 'z' });
    await publish(gateway, { channel: 'two', data: 'w' });
    await client.waitForMessages('two', 2);
    expect(client.messages('one')).toEqual([1]);
    client.send({ type: 'unsubscribe', id: 'd', channel: 'one' });
    expect(await client.next((f) => f.id === 'd')).toMatchObject({
      type: 'error',
      code: 'not_subscribed',
    });
  });

  it('answers bad frames with documented errors and keeps serving', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway();
    const client = await cluster.client(gateway);
    client.send('{not json');
    client.send({ type: 'launch', id: 1 });
    client.send({ type: 'subscribe', id: 2, channel: 'bad channel' });
    client.send({ type: 'subscribe', id: 3 });
    client.ws.send(Buffer.from([1, 2, 3]));
    client.send({ type: 'subscribe', id: 4, channel: 'ok', after: -1 });
    await client.next(
      (f) => f.code === 'bad_frame' && f.message === 'binary frames are not accepted',
    );
    const errors = client.frames.filter((f) => f.type === 'error');
    expect(errors.map((f) => [f.id, f.code])).toEqual([
      [undefined, 'bad_frame'],
      [1, 'bad_frame'],
      [2, 'invalid_channel'],
      [3, 'invalid_channel'],
      [undefined, 'bad_frame'],
      [4, 'bad_frame'],
    ]);
    client.send({ type: 'subscribe', id: 5, channel: 'ok' });
    await client.next((f) => f.id === 5 && f.type === 'subscribed');
    await publish(gateway, { channel: 'ok', data: 1 });
    expect(await client.waitForMessages('ok', 1)).toEqual([1]);
  });

  it('closes a client whose frame exceeds the limit with 1009, and no one else', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway({ limits: { maxFrameBytes: 1024 } });
    const bystander = await cluster.client(gateway);
    bystander.send({ type: 'subscribe', channel: 'news' });
    await bystander.next((f) => f.type === 'subscribed');
    const offender = await cluster.client(gateway);
    offender.send({ type: 'subscribe', channel: 'x'.repeat(2000) });
    expect(await offender.closed()).toBe(1009);
    await publish(gateway, { channel: 'news', data: 1 });
    expect(await bystander.waitForMessages('news', 1)).toEqual([1]);
  });

  it('limits channels per connection', async () => {
    cluster = new Cluster();
    const client = await cluster.client(await cluster.gateway({ limits: { maxChannels: 2 } }));
    for (const channel of ['a', 'b', 'c']) client.send({ type: 'subscribe', id: channel, channel });
    expect(await client.next((f) => f.id === 'c')).toMatchObject({
      type: 'error',
      code: 'too_many_channels',
    });
    expect(client.frames.filter((f) => f.type === 'subscribed')).toHaveLength(2);
  });

  it('rate-limits a subscribe storm and finally closes the connection with 4002', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway({ limits: { requestsPerSecond: 5 } });
    const bystander = await cluster.client(gateway);
    bystander.send({ type: 'subscribe', channel: 'news' });
    await bystander.next((f) => f.type === 'subscribed');
    const storm = await cluster.client(gateway);
    for (let i = 0; i < 200; i++) storm.send({ type: 'subscribe', channel: `c${i % 3}` });
    expect(await storm.closed()).toBe(CloseCodes.rateLimited.code);
    const refused = storm.frames.filter((f) => f.code === 'rate_limited').length;
    expect(refused).toBeGreaterThanOrEqual(100);
    expect(storm.frames.filter((f) => f.type === 'subscribed').length).toBeLessThanOrEqual(11);
    await publish(gateway, { channel: 'news', data: 1 });
    expect(await bystander.waitForMessages('news', 1)).toEqual([1]);
  });

  describe('resume', () => {
    it('replays every message after the given positions, then continues live', async () => {
      cluster = new Cluster();
      const gateway = await cluster.gateway();
      for (let i = 0; i < 10; i++) await cluster.store.append('news', i);
      const first = await cluster.client(gateway);
      const token = first.frames[0]!.resumeToken as string;
      const session = first.frames[0]!.session;
      const client = await cluster.client(gateway);
      client.send({ type: 'resume', id: 1, token, channels: { news: 4 } });
      const resumed = await client.next((f) => f.type === 'resumed');
      expect(resumed).toMatchObject({ id: 1, session, channels: { news: 4 } });
      await publish(gateway, { channel: 'news', data: 'live' });
      expect(await client.waitForMessages('news', 7)).toEqual(range(5, 11));
    });

    it('refuses a position from the future', async () => {
      cluster = new Cluster();
      const gateway = await cluster.gateway();
      await cluster.store.append('news', 1);
      const client = await cluster.client(gateway);
      client.send({ type: 'subscribe', id: 1, channel: 'news', after: 5 });
      expect(await client.next((f) => f.id === 1)).toMatchObject({
        type: 'error',
        code: 'position_from_future',
        latest: 1,
      });
      client.send({ type: 'subscribe', id: 2, channel: 'news', after: 1 });
      expect(await client.next((f) => f.id === 2)).toMatchObject({
        type: 'subscribed',
        position: 1,
      });
    });

    it('reports a forged, garbled or foreign-key token and still resumes the positions', async () => {
      cluster = new Cluster();
      const gateway = await cluster.gateway();
      for (let i = 0; i < 3; i++) await cluster.store.append('news', i);
      const foreign = await signToken(
        keyRingFromSecret('another-secret-entirely'),
        'resume',
        { sub: 's' },
        60_000,
      );
      const real = await signToken(keyRing, 'resume', { sub: 's' }, 60_000);
      const tampered = real.slice(0, -3) + (real.endsWith('AAA') ? 'BBB' : 'AAA');
      const expired = await signToken(keyRing, 'resume', { sub: 's' }, 1_000, Date.now() - 10_000);
      for (const [token, code] of [
        ['garbage', 'invalid_token'],
        [foreign, 'invalid_token'],
        [tampered, 'invalid_token'],
        [expired, 'token_expired'],
      ]) {
        const client = await cluster.client(gateway);
        client.send({ type: 'resume', id: 7, token, channels: { news: 1 } });
        expect(await client.next((f) => f.type === 'error')).toMatchObject({ id: 7, code });
        expect(await client.next((f) => f.type === 'resumed')).toMatchObject({
          channels: { news: 1 },
        });
        expect(await client.waitForMessages('news', 2)).toEqual([2, 3]);
      }
    });

    it('says explicitly when history no longer reaches the position, then continues from the oldest', async () => {
      cluster = new Cluster({ maxCount: 5, maxAgeMs: 60_000 });
      const gateway = await cluster.gateway();
      for (let i = 0; i < 20; i++) await cluster.store.append('news', i);
      const client = await cluster.client(gateway);
      client.send({ type: 'subscribe', id: 1, channel: 'news', after: 3 });
      expect(await client.next((f) => f.type === 'error')).toMatchObject({
        code: 'history_lost',
        channel: 'news',
        oldest: 16,
        latest: 20,
      });
      expect(await client.waitForMessages('news', 5)).toEqual(range(16, 20));
    });
  });
});
