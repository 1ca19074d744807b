/**
 * EventBridgeBus against the PutEvents emulator (test/support/eventBridgeEndpoint.ts): the real
 * AWS SDK client, real HTTP over loopback. There is no EventBridge or LocalStack here; the
 * emulator speaks the documented PutEvents wire protocol and records what it accepted.
 *
 * The EventBus contract suite is not run: it subscribes, and on EventBridge subscribing is the
 * job of rules and Lambda targets (see the subscribe test below).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import {
  EventBridgeBus,
  EventTooLargeError,
  SubscribeNotSupportedError,
  type Drop,
  type EventBridgeBusOptions,
  type Retry,
} from '../../../shared/bus/EventBridgeBus.js';
import {
  EVENT_ID_FIELD,
  entrySize,
  fromEventBridgeEvent,
  MAX_REQUEST_BYTES,
  toPutEventsEntry,
} from '../../../shared/bus/eventBridgeEntry.js';
import { makeEvent } from '../../../shared/bus/events.js';
import { EventBridgeEndpoint } from '../../support/eventBridgeEndpoint.js';

const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG' };
/** Short retries so outages of a few hundred milliseconds are ridden out quickly. */
const FAST_BACKOFF = { baseMs: 10, capMs: 100, jitter: 0.3, floorMs: 5 };

let endpoint: EventBridgeEndpoint;
const buses: EventBridgeBus[] = [];

beforeEach(async () => {
  endpoint = await EventBridgeEndpoint.start();
});

afterEach(async () => {
  await Promise.all(buses.splice(0).map((bus) => bus.close()));
  await endpoint.stop();
});

function busFor(options: EventBridgeBusOptions = {}, target = endpoint): EventBridgeBus {
  const bus = new EventBridgeBus({
    eventBusName: 'streamheal-test',
    backoff: FAST_BACKOFF,
    closeTimeoutMs: 1_000,
    ...options,
    clientConfig: {
      region: 'eu-west-1',
      endpoint: target.url,
      credentials: CREDENTIALS,
      ...options.clientConfig,
    },
  });
  buses.push(bus);
  return bus;
}

/** Numbered events; `seq` says the put order within each source. */
function numbered(source: string, count: number, detail: Record<string, unknown> = {}): BusEvent[] {
  return Array.from({ length: count }, (_, seq) =>
    makeEvent(source, 'Numbered', { seq, ...detail }, [`node-${seq % 3}`]),
  );
}

/** What the emulator accepted, as BusEvents again. */
function acceptedEvents(): BusEvent[] {
  return endpoint.events().map(fromEventBridgeEvent);
}

function seqsBySource(): Record<string, number[]> {
  const bySource: Record<string, number[]> = {};
  for (const event of acceptedEvents()) {
    (bySource[event.source] ??= []).push(event.detail.seq as number);
  }
  return bySource;
}

const range = (count: number) => Array.from({ length: count }, (_, index) => index);

function wholeSeconds(time: string): string {
  return new Date(time).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

describe('EventBridgeBus: entries', () => {
  it('sends Source, DetailType, Detail, Resources, Time and EventBusName, with our id in the detail', async () => {
    const bus = busFor();
    const sent = makeEvent('streamheal.gateway', 'Node Overloaded', { node: 'gw-1', cpu: 0.97 }, [
      'gw-1',
    ]);

    await bus.put([sent]);
    expect(await bus.flush(5_000)).toBe(true);

    expect(endpoint.accepted).toHaveLength(1);
    const [accepted] = endpoint.accepted;
    expect(accepted!.eventBusName).toBe('streamheal-test');
    expect(accepted!.wire).toMatchObject({
      Source: 'streamheal.gateway',
      DetailType: 'Node Overloaded',
      Resources: ['gw-1'],
      EventBusName: 'streamheal-test',
    });
    expect(JSON.parse(accepted!.wire.Detail!)).toEqual({
      node: 'gw-1',
      cpu: 0.97,
      [EVENT_ID_FIELD]: sent.id,
    });
    expect(accepted!.wire.Time! * 1000).toBeCloseTo(Date.parse(sent.time), -3);
    expect(endpoint.calls[0]).toMatchObject({
      signingService: 'events',
      signingRegion: 'eu-west-1',
    });

    // EventBridge's own id differs; ours comes back out of the detail.
    expect(accepted!.event.id).not.toBe(sent.id);
    expect(fromEventBridgeEvent(accepted!.event)).toEqual({
      ...sent,
      time: wholeSeconds(sent.time),
    });
    expect(bus.delivered).toBe(1);
    expect(bus.spooled).toBe(0);
  });

  it('keeps events without resources without resources', async () => {
    const bus = busFor();
    const sent = makeEvent('streamheal.control', 'Node Isolated', { node: 'gw-2' });

    await bus.put([sent]);
    await bus.flush(5_000);

    expect(endpoint.accepted[0]!.wire.Resources).toBeUndefined();
    expect(fromEventBridgeEvent(endpoint.events()[0]!)).toEqual({
      ...sent,
      time: wholeSeconds(sent.time),
    });
  });

  it('sends the event as it was when put', async () => {
    const bus = busFor();
    const sent = makeEvent('streamheal.gateway', 'Snapshot', { state: 'healthy' });

    await bus.put([sent]);
    sent.detail.state = 'changed after put';
    await bus.flush(5_000);

    expect(acceptedEvents()[0]!.detail.state).toBe('healthy');
  });

  it('rejects an invalid envelope or a reserved detail field, spooling nothing of the batch', async () => {
    const bus = busFor();
    const valid = makeEvent('streamheal.gateway', 'Valid', {});
    const noSource = { ...makeEvent('x', 'Invalid', {}), source: '' };
    const reserved = makeEvent('streamheal.gateway', 'Reserved', { [EVENT_ID_FIELD]: 'mine' });

    await expect(bus.put([valid, noSource])).rejects.toThrow(/events\[1\]: "source"/);
    await expect(bus.put([reserved])).rejects.toThrow(
      /events\[0\]: "detail.streamhealEventId" is reserved/,
    );

    expect(bus.spooled).toBe(0);
    expect(endpoint.calls).toHaveLength(0);
  });
});

describe('EventBridgeBus: batching', () => {
  it('sends at most 10 entries per call, in put order', async () => {
    const bus = busFor({ ordering: 'batched' });

    await bus.put(numbered('streamheal.gateway', 25));
    await bus.flush(5_000);

    expect(endpoint.calls.map((call) => call.entries)).toEqual([10, 10, 5]);
    expect(seqsBySource()).toEqual({ 'streamheal.gateway': range(25) });
  });

  it('in strict order, puts at most one entry per source in a call', async () => {
    const bus = busFor();
    const sources = ['streamheal.gateway', 'streamheal.control', 'streamheal.canary'];

    await bus.put(sources.flatMap((source) => numbered(source, 12)));
    await bus.flush(5_000);

    expect(endpoint.calls.every((call) => call.entries <= 3)).toBe(true);
    expect(endpoint.calls.map((call) => call.entries)).toEqual(range(12).map(() => 3));
    expect(seqsBySource()).toEqual(Object.fromEntries(sources.map((s) => [s, range(12)])));
  });

  it('keeps each call within 256 KB as EventBridge counts entry sizes', async () => {
    const bus = busFor({ ordering: 'batched' });
    // Each entry is just under 100 KB: two fit in a call, three do not.
    const events = numbered('streamheal.gateway', 5, { blob: 'x'.repeat(100_000) });
    expect(entrySize(toPutEventsEntry(events[0]!, 'streamheal-test'))).toBeLessThan(101_000);

    await bus.put(events);
    await bus.flush(5_000);

    expect(endpoint.calls.map((call) => call.entries)).toEqual([2, 2, 1]);
    expect(endpoint.calls.every((call) => call.status === 200)).toBe(true);
    expect(Math.max(...endpoint.calls.map((call) => call.bytes))).toBeLessThanOrEqual(
      MAX_REQUEST_BYTES,
    );
    expect(seqsBySource()).toEqual({ 'streamheal.gateway': range(5) });
  });

  it('counts multi-byte characters as their UTF-8 bytes', async () => {
    const bus = busFor({ ordering: 'batched' });
    // 45,000 three-byte characters: 135 KB on the wire although the string has 45,000 units.
    const events = numbered('streamheal.gateway', 2, { text: '€'.repeat(45_000) });

    await bus.put(events);
    await bus.flush(5_000);

    expect(endpoint.calls.map((call) => call.entries)).toEqual([1, 1]);
    expect(endpoint.calls.every((call) => call.status === 200)).toBe(true);
  });

  it('sends an event of exactly the limit alone, and refuses a larger one at put', async () => {
    const bus = busFor({ ordering: 'batched' });
    const [probe] = numbered('streamheal.gateway', 1, { blob: '' });
    const overhead = entrySize(toPutEventsEntry(probe!, 'streamheal-test'));
    const atLimit = makeEvent('streamheal.gateway', 'Numbered', { seq: 0, blob: '' }, ['node-0']);
    atLimit.detail.blob = 'x'.repeat(MAX_REQUEST_BYTES - overhead);
    expect(entrySize(toPutEventsEntry(atLimit, 'streamheal-test'))).toBe(MAX_REQUEST_BYTES);
    const tooLarge = makeEvent('streamheal.gateway', 'Too Large', { blob: 'x'.repeat(300_000) });

    const refused = bus.put([tooLarge]);
    await expect(refused).rejects.toThrow(EventTooLargeError);
    await expect(refused).rejects.toThrow(/events\[0\]: 300\d{3} bytes .* over the 262144-byte/);
    await bus.put([atLimit, ...numbered('streamheal.gateway', 2).slice(1)]);
    await bus.flush(5_000);

    expect(endpoint.calls.map((call) => [call.entries, call.status])).toEqual([
      [1, 200],
      [1, 200],
    ]);
    expect(acceptedEvents().map((event) => event['detail-type'])).not.toContain('Too Large');
    expect(bus.dropped).toBe(0);
  });

  it('takes a larger request limit (AWS raised it to 1 MB)', async () => {
    const large = await EventBridgeEndpoint.start({ maxRequestBytes: 1024 * 1024 });
    try {
      const bus = busFor({ ordering: 'batched', maxRequestBytes: 1024 * 1024 }, large);
      await bus.put(numbered('streamheal.gateway', 3, { blob: 'x'.repeat(300_000) }));
      await bus.flush(5_000);
      expect(large.calls.map((call) => [call.entries, call.status])).toEqual([[3, 200]]);
    } finally {
      await large.stop();
    }
  });
});

describe('EventBridgeBus: failed entries', () => {
  it('retries entries that failed with a retryable code, delivering each once in order per source', async () => {
    const retries: Retry[] = [];
    const bus = busFor({ onRetry: (retry) => retries.push(retry) });
    const gateway = numbered('streamheal.gateway', 8);
    const control = numbered('streamheal.control', 8);
    const failSeq =
      (source: string, seq: number) => (entry: { Source?: string; Detail?: string }) =>
        entry.Source === source && (JSON.parse(entry.Detail!) as { seq: number }).seq === seq;
    endpoint.failEntries({
      match: failSeq('streamheal.gateway', 2),
      code: 'ThrottlingException',
      times: 2,
    });
    endpoint.failEntries({ match: failSeq('streamheal.control', 5), code: 'InternalFailure' });

    await bus.put(gateway.flatMap((event, index) => [event, control[index]!]));
    await bus.flush(5_000);

    // The calls answered 200 with per-entry errors: the bus looked at every entry.
    const entryErrors = endpoint.calls.flatMap((call) => call.entryErrors);
    expect(endpoint.calls.every((call) => call.status === 200)).toBe(true);
    expect(entryErrors.sort()).toEqual([
      'InternalFailure',
      'ThrottlingException',
      'ThrottlingException',
    ]);
    expect(retries.map((retry) => retry.errorCodes)).toEqual([
      ['ThrottlingException'],
      ['ThrottlingException'],
      ['InternalFailure'],
    ]);
    expect(seqsBySource()).toEqual({
      'streamheal.gateway': range(8),
      'streamheal.control': range(8),
    });
    expect(new Set(acceptedEvents().map((event) => event.id)).size).toBe(16);
    expect(bus.delivered).toBe(16);
    expect(bus.dropped).toBe(0);
  });

  it('in batched order, retries a failed entry before newer ones, at most 9 places late', async () => {
    const bus = busFor({ ordering: 'batched' });
    endpoint.failEntries({
      match: (entry) => (JSON.parse(entry.Detail!) as { seq: number }).seq === 3,
      code: 'ThrottlingException',
    });

    await bus.put(numbered('streamheal.gateway', 15));
    await bus.flush(5_000);

    const order = seqsBySource()['streamheal.gateway']!;
    expect([...order].sort((a, b) => a - b)).toEqual(range(15));
    // 3 failed inside the first call of 10; the retry goes before 10..14.
    expect(order).toEqual([0, 1, 2, 4, 5, 6, 7, 8, 9, 3, 10, 11, 12, 13, 14]);
  });

  it('drops an entry with a non-retryable code at once, counting it, and keeps the rest', async () => {
    const drops: Drop[] = [];
    const bus = busFor({ onDrop: (drop) => drops.push(drop) });
    const events = numbered('streamheal.gateway', 4);
    endpoint.failEntries({
      match: (entry) => (JSON.parse(entry.Detail!) as { seq: number }).seq === 1,
      code: 'NotAuthorizedForSourceException',
      message: 'not allowed to publish streamheal.gateway',
    });

    await bus.put(events);
    await bus.flush(5_000);

    expect(seqsBySource()).toEqual({ 'streamheal.gateway': [0, 2, 3] });
    expect(drops).toEqual([
      {
        reason: 'rejected',
        events: [events[1]],
        errorCode: 'NotAuthorizedForSourceException',
        errorMessage: 'not allowed to publish streamheal.gateway',
      },
    ]);
    expect(bus.dropped).toBe(1);
    expect(bus.droppedBy).toEqual({ spool_full: 0, rejected: 1, closed: 0 });
    expect(endpoint.calls.flatMap((call) => call.entryErrors)).toEqual([
      'NotAuthorizedForSourceException',
    ]);
  });

  it('gives an unknown entry code a bounded number of attempts', async () => {
    const drops: Drop[] = [];
    const bus = busFor({ maxUnclassifiedAttempts: 3, onDrop: (drop) => drops.push(drop) });
    endpoint.failEntries({ match: () => true, code: 'SomethingNew', times: 100 });

    await bus.put(numbered('streamheal.gateway', 1));
    await bus.flush(5_000);

    expect(endpoint.calls).toHaveLength(3);
    expect(drops.map((drop) => [drop.reason, drop.errorCode])).toEqual([
      ['rejected', 'SomethingNew'],
    ]);
  });
});

describe('EventBridgeBus: unreachable EventBridge', () => {
  it('gives a call refused with another client error a bounded number of attempts', async () => {
    const drops: Drop[] = [];
    const bus = busFor({ maxUnclassifiedAttempts: 2, onDrop: (drop) => drops.push(drop) });
    endpoint.failCalls({ status: 400, type: 'AccessDeniedException', times: 100 });

    await bus.put(numbered('streamheal.gateway', 2));
    await bus.flush(5_000);

    // Strict order: one entry per call, two attempts each.
    expect(endpoint.calls.map((call) => [call.entries, call.errorType])).toEqual([
      [1, 'AccessDeniedException'],
      [1, 'AccessDeniedException'],
      [1, 'AccessDeniedException'],
      [1, 'AccessDeniedException'],
    ]);
    expect(drops.map((drop) => [drop.reason, drop.errorCode, drop.events[0]!.detail.seq])).toEqual([
      ['rejected', 'AccessDeniedException', 0],
      ['rejected', 'AccessDeniedException', 1],
    ]);
  });

  it('retries calls answered 500 or 503, and a throttled call', async () => {
    const retries: Retry[] = [];
    const bus = busFor({ onRetry: (retry) => retries.push(retry) });
    endpoint.failCalls({ status: 500, type: 'InternalException' });
    endpoint.failCalls({ status: 503, type: 'ServiceUnavailable' });
    endpoint.failCalls({ status: 400, type: 'ThrottlingException', message: 'Rate exceeded' });

    await bus.put(numbered('streamheal.gateway', 3));
    await bus.flush(5_000);

    expect(endpoint.calls.map((call) => call.status)).toEqual([500, 503, 400, 200, 200, 200]);
    expect(retries.map((retry) => retry.errorCodes[0])).toEqual([
      'InternalException',
      'ServiceUnavailable',
      'ThrottlingException',
    ]);
    expect(seqsBySource()).toEqual({ 'streamheal.gateway': range(3) });
  });

  it('sends a call again when its answer does not come in time; the copy keeps our id', async () => {
    const retries: Retry[] = [];
    const bus = busFor({ requestTimeoutMs: 150, onRetry: (retry) => retries.push(retry) });
    endpoint.latencyMs = 400;
    const [sent] = numbered('streamheal.gateway', 1);

    await bus.put([sent!]);
    await expect.poll(() => retries.length, { timeout: 5_000 }).toBeGreaterThanOrEqual(1);
    endpoint.latencyMs = 0;
    await bus.flush(5_000);
    // The timed-out call was accepted all the same: EventBridge holds two copies.
    await expect.poll(() => endpoint.accepted.length, { timeout: 5_000 }).toBeGreaterThanOrEqual(2);

    const copies = endpoint.events();
    expect(new Set(copies.map((event) => event.id)).size).toBe(copies.length);
    expect(acceptedEvents().map((event) => event.id)).toEqual(copies.map(() => sent!.id));
    expect(retries[0]!.errorCodes[0]).toMatch(/ETIMEDOUT|Timeout/);
  });

  it('keeps everything while the endpoint is down and delivers it in order once it is up', async () => {
    const retries: Retry[] = [];
    const bus = busFor({ onRetry: (retry) => retries.push(retry) });
    await endpoint.down();

    const sources = ['streamheal.gateway', 'streamheal.control'];
    for (const source of sources) await bus.put(numbered(source, 20));
    await expect.poll(() => retries.length, { timeout: 5_000 }).toBeGreaterThanOrEqual(5);
    expect(bus.spooled).toBe(40);
    expect(retries.every((retry) => retry.error !== undefined)).toBe(true);

    await endpoint.up();
    expect(await bus.flush(5_000)).toBe(true);

    expect(seqsBySource()).toEqual(Object.fromEntries(sources.map((s) => [s, range(20)])));
    expect(new Set(acceptedEvents().map((event) => event.id)).size).toBe(40);
    expect(bus.dropped).toBe(0);
    expect([bus.spooled, bus.spooledBytes]).toEqual([0, 0]);
  });

  it('drops the oldest events past the spool bound, counts them and says which', async () => {
    const drops: Drop[] = [];
    const bus = busFor({ maxSpooled: 5, onDrop: (drop) => drops.push(drop) });
    await endpoint.down();
    const events = numbered('streamheal.gateway', 8);

    await bus.put(events.slice(0, 4));
    await bus.put(events.slice(4));

    expect(bus.dropped).toBe(3);
    expect(bus.droppedBy.spool_full).toBe(3);
    // Event 0 went out at once (its call is failing): only events not in flight are dropped.
    expect(drops).toEqual([{ reason: 'spool_full', events: events.slice(1, 4) }]);
    await endpoint.up();
    await bus.flush(5_000);
    expect(seqsBySource()).toEqual({ 'streamheal.gateway': [0, 4, 5, 6, 7] });
  });

  it('bounds the spool by bytes too', async () => {
    const bus = busFor({ maxSpooledBytes: 250_000 });
    await endpoint.down();

    const events = numbered('streamheal.gateway', 4, { blob: 'x'.repeat(100_000) });
    await bus.put(events);

    expect(bus.spooled).toBe(2);
    expect(bus.spooledBytes).toBe(2 * entrySize(toPutEventsEntry(events[0]!, 'streamheal-test')));
    expect(bus.droppedBy.spool_full).toBe(2);
    await endpoint.up();
    await bus.flush(5_000);
    expect(seqsBySource()).toEqual({ 'streamheal.gateway': [2, 3] });
    expect(bus.spooledBytes).toBe(0);
  });

  it('on close, sends what is spooled, then refuses puts', async () => {
    const bus = busFor();
    await bus.put(numbered('streamheal.gateway', 12));

    await bus.close();

    expect(seqsBySource()).toEqual({ 'streamheal.gateway': range(12) });
    await expect(bus.put(numbered('streamheal.gateway', 1))).rejects.toThrow(/closed/);
  });

  it('on close with the endpoint down, gives up after closeTimeoutMs and counts the rest as dropped', async () => {
    const drops: Drop[] = [];
    const bus = busFor({ closeTimeoutMs: 200, onDrop: (drop) => drops.push(drop) });
    await endpoint.down();
    await bus.put(numbered('streamheal.gateway', 3));

    const started = Date.now();
    await bus.close();

    expect(Date.now() - started).toBeLessThan(1_000);
    expect(bus.droppedBy.closed).toBe(3);
    expect(drops.map((drop) => [drop.reason, drop.events.length])).toEqual([['closed', 3]]);
  });
});

describe('EventBridgeBus: configuration', () => {
  const ENV_KEYS = ['AWS_ENDPOINT_URL', 'AWS_ENDPOINT_URL_EVENTBRIDGE'] as const;
  let saved: Partial<Record<(typeof ENV_KEYS)[number], string>>;

  beforeEach(() => {
    saved = Object.fromEntries(ENV_KEYS.map((key) => [key, process.env[key]]));
    for (const key of ENV_KEYS) delete process.env[key];
  });

  afterEach(() => {
    for (const key of ENV_KEYS) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  });

  function busFromEnvironment(): EventBridgeBus {
    // No endpoint in the client config: the SDK resolves it from the environment.
    const bus = new EventBridgeBus({
      backoff: FAST_BACKOFF,
      clientConfig: { region: 'us-east-1', credentials: CREDENTIALS },
    });
    buses.push(bus);
    return bus;
  }

  it('honours AWS_ENDPOINT_URL', async () => {
    process.env.AWS_ENDPOINT_URL = endpoint.url;
    const bus = busFromEnvironment();

    await bus.put(numbered('streamheal.gateway', 1));

    expect(await bus.flush(5_000)).toBe(true);
    expect(endpoint.accepted).toHaveLength(1);
    expect(endpoint.accepted[0]!.eventBusName).toBe('default');
  });

  it('prefers AWS_ENDPOINT_URL_EVENTBRIDGE over AWS_ENDPOINT_URL', async () => {
    const specific = await EventBridgeEndpoint.start();
    try {
      process.env.AWS_ENDPOINT_URL = endpoint.url;
      process.env.AWS_ENDPOINT_URL_EVENTBRIDGE = specific.url;
      const bus = busFromEnvironment();

      await bus.put(numbered('streamheal.gateway', 1));

      expect(await bus.flush(5_000)).toBe(true);
      expect(specific.accepted).toHaveLength(1);
      expect(endpoint.calls).toHaveLength(0);
    } finally {
      await specific.stop();
    }
  });

  it('refuses to subscribe, explaining where subscriptions live on AWS', () => {
    const bus = busFor();
    expect(() => bus.subscribe({ source: ['streamheal.gateway'] }, () => {})).toThrow(
      SubscribeNotSupportedError,
    );
    expect(() => bus.subscribe({ source: ['streamheal.gateway'] }, () => {})).toThrow(
      /rules whose targets are Lambda functions/,
    );
  });
});
