/**
 * The alerts Lambda: targets from the environment, a receiver down for a while, the dead letters
 * in DynamoDB (dynalite), and redelivery by a scheduled invocation once it is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionEvents } from '../../../shared/bus/controlEvents.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import { DEAD_LETTER_PREFIX } from '../../../shared/control/alerts/AlertDelivery.js';
import { verifyWebhookSignature } from '../../../shared/control/alerts/signature.js';
import { handler } from '../../../functions/alerts/handler.js';
import { closeLambdaDeps } from '../../../functions/runtime.js';
import { Receiver } from '../../shared/control/alerts/receiver.js';
import { sleep } from '../../shared/control/helpers.js';
import { asDelivered, startLambdaEnv, type LambdaEnv } from '../lambdaEnv.js';

const SECRET = 'whsec-lambda-0123456789';

describe('alerts: Lambda handler', () => {
  let env: LambdaEnv;
  let hook: Receiver;
  let slack: Receiver;
  beforeAll(async () => {
    hook = await new Receiver().start();
    slack = await new Receiver().start();
    env = await startLambdaEnv({
      STREAMHEAL_ALERT_TARGETS: JSON.stringify([
        { name: 'ops', type: 'webhook', url: hook.url, secret: SECRET },
        { name: 'chat', type: 'slack', url: slack.url },
      ]),
      STREAMHEAL_ALERT_MAX_ATTEMPTS: '3',
      STREAMHEAL_ALERT_BACKOFF_BASE_MS: '20',
    });
  }, 30_000);
  afterAll(async () => {
    await closeLambdaDeps();
    await env.restore();
    await hook.stop();
    await slack.stop();
  });

  it('dead-letters while a receiver is down and redelivers on the schedule, losing nothing', async () => {
    const port = hook.port;
    await hook.stop();
    const events = ['gateway-1', 'gateway-2'].map((node) =>
      makeEvent(
        Sources.control,
        DecisionEvents.nodeIsolated,
        { node, decision: 'isolate', message: `isolating ${node} due to CPU > 95% for 30s` },
        [node],
      ),
    );
    const reports = [];
    for (const event of events) reports.push(await handler(asDelivered(event)));
    expect(reports).toEqual([
      [
        { target: 'ops', outcome: 'dead_lettered', attempts: 3, error: 'ECONNREFUSED' },
        { target: 'chat', outcome: 'sent', attempts: 1 },
      ],
      [
        { target: 'ops', outcome: 'dead_lettered', attempts: 0, error: 'queued' },
        { target: 'chat', outcome: 'sent', attempts: 1 },
      ],
    ]);
    expect(await env.store.list(`${DEAD_LETTER_PREFIX}ops/`)).toHaveLength(2);

    hook.port = port;
    await hook.start();
    await sleep(100);
    const scheduled = {
      version: '0',
      id: 'sched-1',
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      account: '111122223333',
      time: new Date().toISOString(),
      region: 'us-east-1',
      resources: ['arn:aws:events:us-east-1:111122223333:rule/streamheal-alerts-redeliver'],
      detail: {},
    };
    expect(await handler(scheduled)).toEqual({ sent: 2, failed: 0, remaining: 0 });
    expect(await handler({ action: 'redeliver' })).toEqual({ sent: 0, failed: 0, remaining: 0 });
    expect(hook.json<{ id: string }>().map((b) => b.id)).toEqual(events.map((e) => e.id));
    for (const request of hook.received) {
      expect(
        verifyWebhookSignature({ secret: SECRET, body: request.body, headers: request.headers }).ok,
      ).toBe(true);
    }
    expect(await env.store.list(`${DEAD_LETTER_PREFIX}ops/`)).toEqual([]);
    // Delivered again by EventBridge: Slack is not posted twice.
    await handler(asDelivered(events[0]!));
    expect(slack.received).toHaveLength(2);
  });
});
