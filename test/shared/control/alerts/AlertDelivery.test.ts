/**
 * Alert delivery against real HTTP receivers on 127.0.0.1 that fail for a while and recover:
 * retries with backoff, dead letters, order, redelivery, and the three payload shapes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DecisionEvents } from '../../../../shared/bus/controlEvents.js';
import type { BusEvent } from '../../../../shared/bus/EventBus.js';
import { makeEvent, Sources } from '../../../../shared/bus/events.js';
import { AlertDelivery, type DeadLetter } from '../../../../shared/control/alerts/AlertDelivery.js';
import { verifyWebhookSignature } from '../../../../shared/control/alerts/signature.js';
import { parseAlertTargets, type AlertTarget } from '../../../../shared/control/alerts/targets.js';
import { MemoryStore } from '../../../../shared/store/MemoryStore.js';
import { captureLogs, sleep } from '../helpers.js';
import { Receiver } from './receiver.js';

const SECRET = 'whsec-0123456789abcdef';
const FAST = { baseMs: 20, capMs: 200, jitter: 0.3, floorMs: 10 };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function receiver(): Promise<Receiver> {
  const r = await new Receiver().start();
  cleanups.push(() => r.stop());
  return r;
}

function delivery(
  targets: AlertTarget[],
  extra: Partial<ConstructorParameters<typeof AlertDelivery>[0]> = {},
) {
  const store = new MemoryStore();
  cleanups.push(() => store.close());
  const logs = captureLogs();
  const d = new AlertDelivery({
    store,
    targets,
    logger: logs.logger,
    backoff: FAST,
    maxAttempts: 4,
    timeoutMs: 1_000,
    ...extra,
  });
  return { d, store, logs };
}

function decision(
  type: string,
  node = 'gateway-1',
  message = `isolating ${node} due to CPU > 95% for 30s`,
): BusEvent {
  return makeEvent(
    Sources.control,
    type,
    { node, decision: 'isolate', message, at: new Date().toISOString() },
    [node],
  );
}

describe('AlertDelivery: generic signed webhook', () => {
  it('retries a receiver answering 503 until it recovers, with a verifiable signature', async () => {
    const r = await receiver();
    r.answer = (_req, i) => (i < 3 ? { status: 503, body: 'busy' } : { status: 204 });
    const { d } = delivery(
      parseAlertTargets([{ name: 'ops', type: 'webhook', url: r.url, secret: SECRET }]),
    );
    const event = decision(DecisionEvents.nodeIsolated);

    const started = Date.now();
    const [report] = await d.deliver(event);

    expect(report).toEqual({ target: 'ops', outcome: 'sent', attempts: 4 });
    expect(r.received).toHaveLength(4);
    // Three waits of the backoff: ≥ 20 + 40 + 80 ms.
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    const last = r.received.at(-1)!;
    expect(last.headers['x-streamheal-event-id']).toBe(event.id);
    expect(
      verifyWebhookSignature({ secret: SECRET, body: last.body, headers: last.headers }),
    ).toMatchObject({ ok: true });
    expect(
      verifyWebhookSignature({
        secret: 'another-secret-0123',
        body: last.body,
        headers: last.headers,
      }),
    ).toEqual({
      ok: false,
      reason: 'mismatch',
    });
    expect(JSON.parse(last.body)).toMatchObject({
      type: 'streamheal.decision',
      version: 1,
      id: event.id,
      detailType: 'Node Isolated',
      node: 'gateway-1',
      message: 'isolating gateway-1 due to CPU > 95% for 30s',
    });
    // Delivered again (at-least-once bus): not sent twice.
    expect(await d.deliver(event)).toEqual([{ target: 'ops', outcome: 'duplicate', attempts: 0 }]);
    expect(r.received).toHaveLength(4);
  });

  it('loses nothing while the receiver is down: dead letters in order, redelivered when it is back', async () => {
    const r = await receiver();
    const port = r.port;
    await r.stop();
    const { d, logs } = delivery(
      parseAlertTargets([
        { name: 'ops', type: 'webhook', url: `http://127.0.0.1:${port}/hook`, secret: SECRET },
      ]),
    );
    const events = [1, 2, 3, 4, 5].map((i) =>
      decision(DecisionEvents.nodeIsolated, `gateway-${i}`),
    );

    const reports = [];
    for (const event of events) reports.push(...(await d.deliver(event)));
    expect(reports.map((x) => x.outcome)).toEqual(Array(5).fill('dead_lettered'));
    expect(reports[0]).toMatchObject({ attempts: 4, error: 'ECONNREFUSED' });
    // Later events queue behind the first without trying: order is kept.
    expect(reports.slice(1).map((x) => x.attempts)).toEqual([0, 0, 0, 0]);
    const letters = await d.deadLetters('ops');
    expect(letters.map((l) => (l.value as DeadLetter).event.id)).toEqual(events.map((e) => e.id));
    expect(logs.messages().some((m) => m.includes('dead-lettered'))).toBe(true);

    // Still down: redelivery tries the first only, and keeps all.
    await sleep(50);
    expect(await d.redeliver()).toMatchObject({ sent: 0, failed: 1, remaining: 5 });

    r.port = port;
    await r.start();
    await sleep(300); // past the first letter's next attempt time
    expect(await d.redeliver()).toEqual({ sent: 5, failed: 0, remaining: 0 });
    expect(r.json<{ id: string }>().map((b) => b.id)).toEqual(events.map((e) => e.id));
    expect(await d.deadLetters('ops')).toEqual([]);
    // A sixth event goes straight through now.
    expect((await d.deliver(decision(DecisionEvents.nodeReinstated)))[0]!.outcome).toBe('sent');
  });

  it('drains the queue in order before a new event when the receiver came back between events', async () => {
    const r = await receiver();
    r.answer = (_req, i) => (i < 4 ? { status: 500 } : { status: 200 });
    const { d } = delivery(
      parseAlertTargets([{ name: 'ops', type: 'webhook', url: r.url, secret: SECRET }]),
      {
        backoff: { baseMs: 5, capMs: 10, jitter: 0, floorMs: 5 },
      },
    );
    const first = decision(DecisionEvents.nodeIsolated, 'a');
    expect((await d.deliver(first))[0]!.outcome).toBe('dead_lettered');
    await sleep(20);
    const second = decision(DecisionEvents.nodeIsolated, 'b');
    expect((await d.deliver(second))[0]!.outcome).toBe('sent');
    const delivered = r.json<{ id: string }>().slice(4);
    expect(delivered.map((b) => b.id)).toEqual([first.id, second.id]);
  });
});

describe('AlertDelivery: Slack and PagerDuty', () => {
  it('sends Slack incoming-webhook messages; a refused payload is kept, not retried', async () => {
    const r = await receiver();
    r.answer = (req) =>
      JSON.parse(req.body).text.includes('bad')
        ? { status: 400, body: 'invalid_payload' }
        : { status: 200, body: 'ok' };
    const { d } = delivery(parseAlertTargets([{ name: 'chat', type: 'slack', url: r.url }]));
    const good = decision(DecisionEvents.nodeIsolated);
    expect((await d.deliver(good))[0]!.outcome).toBe('sent');
    expect(r.json()[0]).toMatchObject({
      text: '[streamheal] Node Isolated: isolating gateway-1 due to CPU > 95% for 30s',
      blocks: [{ type: 'section', text: { type: 'mrkdwn' } }, { type: 'context' }],
    });
    const bad = decision(DecisionEvents.migrationFailed, 'gateway-1', 'bad');
    expect(await d.deliver(bad)).toEqual([
      { target: 'chat', outcome: 'dead_lettered', attempts: 1, error: 'HTTP 400: invalid_payload' },
    ]);
    const [letter] = await d.deadLetters('chat');
    expect(letter!.value).toMatchObject({ refused: true, lastError: 'HTTP 400: invalid_payload' });
    // A refused letter does not hold back later events, nor is it sent again.
    expect((await d.deliver(decision(DecisionEvents.nodeReinstated)))[0]!.outcome).toBe('sent');
    expect(await d.redeliver()).toEqual({ sent: 0, failed: 0, remaining: 0 });
    expect(r.received).toHaveLength(3);
  });

  it('sends PagerDuty Events v2: trigger on isolation, resolve on reinstatement, honouring 429', async () => {
    const r = await receiver();
    let throttled = false;
    r.answer = () => {
      if (!throttled) {
        throttled = true;
        return {
          status: 429,
          headers: { 'retry-after': '0.1' },
          body: '{"status":"throttle event"}',
        };
      }
      return { status: 202, body: '{"status":"success","message":"Event processed"}' };
    };
    const { d } = delivery(
      parseAlertTargets([
        { name: 'pager', type: 'pagerduty', routingKey: 'R0UT1NGKEY', url: r.url },
      ]),
    );
    const isolated = decision(DecisionEvents.nodeIsolated, 'gateway-1');
    const started = await d.deliver(decision(DecisionEvents.migrationStarted));
    expect(started[0]!.outcome).toBe('skipped'); // not a paging event by default
    const t0 = Date.now();
    expect((await d.deliver(isolated))[0]).toMatchObject({ outcome: 'sent', attempts: 2 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100); // Retry-After 0.1 s over a 20 ms backoff
    const reinstated = decision(
      DecisionEvents.nodeReinstated,
      'gateway-1',
      'reinstating gateway-1',
    );
    await d.deliver(reinstated);
    const lost = decision(DecisionEvents.nodeDeclaredLost, 'gateway-2', 'gateway-2 lost');
    await d.deliver(lost);
    const [trigger, resolve, critical] = r.json().slice(1);
    expect(trigger).toEqual({
      routing_key: 'R0UT1NGKEY',
      event_action: 'trigger',
      dedup_key: 'streamheal/gateway-1/isolated',
      payload: {
        summary: 'Node Isolated: isolating gateway-1 due to CPU > 95% for 30s',
        source: 'gateway-1',
        severity: 'error',
        timestamp: (isolated.detail as { at: string }).at,
        component: 'gateway',
        group: 'streamheal',
        class: 'Node Isolated',
        custom_details: { ...isolated.detail, eventId: isolated.id },
      },
      client: 'streamheal',
    });
    expect(resolve).toEqual({
      routing_key: 'R0UT1NGKEY',
      event_action: 'resolve',
      dedup_key: 'streamheal/gateway-1/isolated',
    });
    expect(critical).toMatchObject({
      event_action: 'trigger',
      dedup_key: `streamheal/event/${lost.id}`,
      payload: { severity: 'critical', source: 'gateway-2' },
    });
  });
});

describe('alert targets', () => {
  it('refuses malformed targets with the path of each problem', () => {
    expect(() =>
      parseAlertTargets([
        { name: 'a b', type: 'webhook', url: 'ftp://x', secret: 'short' },
        { name: 'p', type: 'pagerduty' },
      ]),
    ).toThrow(/\[0\.name\].*\[0\.url\].*\[0\.secret\].*\[1\.routingKey\]/);
    expect(() =>
      parseAlertTargets([
        { name: 'x', type: 'slack', url: 'https://hooks.slack.com/a' },
        { name: 'x', type: 'slack', url: 'https://hooks.slack.com/b' },
      ]),
    ).toThrow(/duplicate name x/);
  });
});
