import { afterEach, describe, expect, it } from 'vitest';
import { parseSseRequest } from '../../../workers/gateway/SseStream.js';
import type { Gateway } from '../../../workers/gateway/Gateway.js';
import { openSse as openStream } from '../../support/sse.js';
import { Cluster, publish, range } from './harness.js';

/** An SSE stream from a gateway, read as a browser would. */
function openSse(gateway: Gateway, query: string, headers: Record<string, string> = {}) {
  return openStream(`${gateway.url}/v1/sse?${query}`, headers);
}

describe('SseStream', () => {
  let cluster: Cluster;
  afterEach(() => cluster.close());

  it('streams messages with id = position and the configured retry', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway({ sseRetryMs: 2500 });
    const sse = await openSse(gateway, 'channel=news');
    expect(sse.response.status).toBe(200);
    expect(sse.response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await publish(gateway, { channel: 'news', data: { hello: 'world' } });
    const [event] = await sse.waitFor(1);
    expect(event!.id).toBe('1');
    expect(JSON.parse(event!.data)).toMatchObject({
      channel: 'news',
      position: 1,
      data: { hello: 'world' },
    });
    expect(sse.retry()).toBe(2500);
    await sse.close();
  });

  it('resumes with Last-Event-ID on another gateway and misses nothing', async () => {
    cluster = new Cluster();
    const [a, b] = [await cluster.gateway(), await cluster.gateway()];
    const first = await openSse(a, 'channel=news');
    for (let i = 0; i < 5; i++) await publish(a, { channel: 'news', data: i });
    const seen = await first.waitFor(5);
    const lastId = seen.at(-1)!.id!;
    await first.close();
    for (let i = 5; i < 10; i++) await publish(b, { channel: 'news', data: i });
    const second = await openSse(b, 'channel=news', { 'last-event-id': lastId });
    for (let i = 10; i < 12; i++) await publish(a, { channel: 'news', data: i });
    const resumed = await second.waitFor(7);
    expect([...seen, ...resumed].map((e) => Number(e.id))).toEqual(range(1, 12));
    await second.close();
  });

  it('carries every channel position in the id when several channels are streamed', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway();
    await cluster.store.append('b', 'before');
    const sse = await openSse(gateway, 'channel=a&channel=b');
    await publish(gateway, { channel: 'a', data: 1 });
    await publish(gateway, { channel: 'b', data: 2 });
    const events = await sse.waitFor(2);
    expect(events.map((e) => e.id)).toEqual(['a=1&b=1', 'a=1&b=2']);
    await sse.close();
    await publish(gateway, { channel: 'a', data: 3 });
    const again = await openSse(gateway, 'channel=a&channel=b', { 'last-event-id': 'a=1&b=1' });
    const replayed = await again.waitFor(2);
    expect(replayed.map((e) => JSON.parse(e.data).data).sort()).toEqual([2, 3]);
    await again.close();
  });

  it('sends an explicit history_lost event when the history no longer reaches Last-Event-ID', async () => {
    cluster = new Cluster({ maxCount: 3, maxAgeMs: 60_000 });
    const gateway = await cluster.gateway();
    for (let i = 0; i < 10; i++) await cluster.store.append('news', i);
    const sse = await openSse(gateway, 'channel=news&lastEventId=2');
    const [lost, ...rest] = await sse.waitFor(4);
    expect(lost!.event).toBe('error');
    expect(JSON.parse(lost!.data)).toEqual({
      code: 'history_lost',
      channel: 'news',
      oldest: 8,
      latest: 10,
    });
    expect(rest.map((e) => e.id)).toEqual(['8', '9', '10']);
    await sse.close();
  });

  it('refuses bad requests with 400 before streaming', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway();
    await cluster.store.append('news', 1);
    const cases: [string, Record<string, string>, string][] = [
      ['', {}, 'invalid_channel'],
      ['channel=bad%20name', {}, 'invalid_channel'],
      ['channel=news', { 'last-event-id': 'abc' }, 'bad_frame'],
      ['channel=news', { 'last-event-id': '9' }, 'position_from_future'],
    ];
    for (const [query, headers, code] of cases) {
      const response = await fetch(`${gateway.url}/v1/sse?${query}`, { headers });
      expect(response.status, query).toBe(400);
      expect((await response.json()).error.code).toBe(code);
    }
  });
});

describe('parseSseRequest', () => {
  const url = (q: string) => new URL(`http://x/v1/sse?${q}`);
  it('reads positions from a bare id or from channel=position pairs', () => {
    expect([...parseSseRequest(url('channel=a'), '7', 10)]).toEqual([['a', 7]]);
    expect([...parseSseRequest(url('channel=a&channel=b'), 'b=3', 10)]).toEqual([
      ['a', undefined],
      ['b', 3],
    ]);
    expect(() => parseSseRequest(url('channel=a&channel=b'), '3', 10)).toThrow(/Last-Event-ID/);
    expect(() => parseSseRequest(url('channel=a'), 'c=1', 10)).toThrow(/Last-Event-ID/);
    expect(() => parseSseRequest(url('channel=a&channel=b'), undefined, 1)).toThrow(/at most 1/);
  });
});
