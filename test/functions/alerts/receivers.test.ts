/**
 * The alerts Lambda with its receivers in Secrets Manager: the real SDK client against the
 * GetSecretValue emulator on 127.0.0.1, the store on dynalite, events delivered to real HTTP
 * receivers. The secret is read once per cache time (shortened here), an edit takes effect
 * after it, a malformed secret or an unreachable Secrets Manager fails the invocation (so Lambda
 * retries it) with an error naming the secret and never quoting it.
 */
import { Writable } from 'node:stream';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DecisionEvents } from '../../../shared/bus/controlEvents.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { DEAD_LETTER_PREFIX, SENT_PREFIX } from '../../../shared/control/alerts/AlertDelivery.js';
import { verifyWebhookSignature } from '../../../shared/control/alerts/signature.js';
import { closeAlertsLambda, handler } from '../../../functions/alerts/handler.js';
import { AlertReceivers } from '../../../functions/alerts/receivers.js';
import { closeLambdaDeps } from '../../../functions/runtime.js';
import { SecretsManagerEndpoint } from '../../support/secretsManagerEndpoint.js';
import { Receiver } from '../../shared/control/alerts/receiver.js';
import { sleep } from '../../shared/control/helpers.js';
import { asDelivered, startLambdaEnv, type LambdaEnv } from '../lambdaEnv.js';

const ARN =
  'arn:aws:secretsmanager:us-east-1:111122223333:secret:streamheal/alert-receivers-AbCdEf';
const CACHE_MS = 400;
/** Values that must never reach an error message or a log line. */
const HOOK_SECRET = 'whsec-receivers-0123456789';
const SLACK_PATH = '/hook/T0SECRET/B0SECRET/slackSecretPart';

function isolated(node: string): BusEvent {
  return makeEvent(
    Sources.control,
    DecisionEvents.nodeIsolated,
    { node, decision: 'isolate', message: `isolating ${node} due to CPU > 95% for 30s` },
    [node],
  );
}

function failure(promise: Promise<unknown>): Promise<{ code?: string; message: string }> {
  return promise.then(
    () => {
      throw new Error('expected the invocation to fail');
    },
    (error: { code?: string; message: string }) => error,
  );
}

describe('alerts: receivers from Secrets Manager (Lambda handler)', () => {
  let env: LambdaEnv;
  let secrets: SecretsManagerEndpoint;
  let hook: Receiver;
  let chat: Receiver;

  const receiversJson = () =>
    JSON.stringify([{ name: 'ops', type: 'webhook', url: hook.url, secret: HOOK_SECRET }]);

  beforeAll(async () => {
    secrets = await SecretsManagerEndpoint.start();
    hook = await new Receiver().start();
    chat = await new Receiver().start();
    env = await startLambdaEnv({
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.url,
      STREAMHEAL_ALERT_TARGETS_SECRET_ARN: ARN,
      STREAMHEAL_ALERT_TARGETS_CACHE_MS: String(CACHE_MS),
      STREAMHEAL_ALERT_MAX_ATTEMPTS: '2',
      STREAMHEAL_ALERT_BACKOFF_BASE_MS: '20',
    });
  }, 30_000);
  afterEach(() => closeAlertsLambda());
  afterAll(async () => {
    closeAlertsLambda();
    await closeLambdaDeps();
    await env.restore();
    await secrets.stop();
    await hook.stop();
    await chat.stop();
  });

  it('reads the receivers from the secret once per cache time and delivers to them', async () => {
    secrets.secrets.set(ARN, receiversJson());
    const calls = secrets.calls;
    const first = isolated('gateway-1');
    expect(await handler(asDelivered(first))).toEqual([
      { target: 'ops', outcome: 'sent', attempts: 1 },
    ]);
    const second = isolated('gateway-2');
    expect(await handler(asDelivered(second))).toEqual([
      { target: 'ops', outcome: 'sent', attempts: 1 },
    ]);
    expect(secrets.calls - calls).toBe(1);
    const bodies = hook.json<{ id: string; node: string }>().slice(-2);
    expect(bodies.map((b) => b.id)).toEqual([first.id, second.id]);
    for (const request of hook.received.slice(-2)) {
      expect(
        verifyWebhookSignature({
          secret: HOOK_SECRET,
          body: request.body,
          headers: request.headers,
        }).ok,
      ).toBe(true);
    }
  });

  it('picks up an edited secret after the cache time, without a redeploy', async () => {
    secrets.secrets.set(ARN, receiversJson());
    await handler(asDelivered(isolated('gateway-3')));
    const edited = JSON.stringify([
      { name: 'chat', type: 'slack', url: `${chat.url.replace(/\/hook$/, '')}${SLACK_PATH}` },
    ]);
    secrets.secrets.set(ARN, edited);
    const hookBefore = hook.received.length;

    // Within the cache time the list read before still applies.
    const early = isolated('gateway-4');
    expect(await handler(asDelivered(early))).toEqual([
      { target: 'ops', outcome: 'sent', attempts: 1 },
    ]);
    expect(hook.received.length).toBe(hookBefore + 1);

    await sleep(CACHE_MS + 50);
    const late = isolated('gateway-5');
    expect(await handler(asDelivered(late))).toEqual([
      { target: 'chat', outcome: 'sent', attempts: 1 },
    ]);
    expect(hook.received.length).toBe(hookBefore + 1);
    expect(chat.received.at(-1)!.body).toContain(late.id);
  });

  it('fails the invocation on a malformed secret, naming it and what is wrong, and delivers once fixed', async () => {
    // Not JSON: the error says so without quoting the text (V8's own message would).
    secrets.secrets.set(ARN, `[{"name": "ops", "type": "webhook", "secret": ${HOOK_SECRET}}]`);
    const event = isolated('gateway-6');
    const hookBefore = hook.received.length;
    const notJson = await failure(handler(asDelivered(event)));
    expect(notJson.code).toBe('alert_receivers_unavailable');
    expect(notJson.message).toContain(ARN);
    expect(notJson.message).toContain('not valid JSON');
    expect(notJson.message).not.toContain(HOOK_SECRET);

    // JSON, but not a receiver list: every problem by its path, no value.
    secrets.secrets.set(
      ARN,
      JSON.stringify([
        { name: 'ops', type: 'webhook', url: 'hooks.example.com/no-scheme', secret: 'short-one' },
        { name: 'pager', type: 'pagerduty', routingKey: 'R0UTINGKEYSECRET', token: HOOK_SECRET },
      ]),
    );
    const invalid = await failure(handler(asDelivered(event)));
    expect(invalid.code).toBe('alert_receivers_unavailable');
    expect(invalid.message).toContain(ARN);
    expect(invalid.message).toContain('[0.url]: Invalid URL');
    expect(invalid.message).toContain('[0.secret]');
    expect(invalid.message).toContain('[1]: Unrecognized key: "token"');
    for (const value of [HOOK_SECRET, 'short-one', 'R0UTINGKEYSECRET', 'no-scheme']) {
      expect(invalid.message).not.toContain(value);
    }

    // Not acknowledged: nothing sent, nothing marked sent, nothing dead-lettered.
    expect(hook.received.length).toBe(hookBefore);
    expect(await env.store.list(`${SENT_PREFIX}ops/${event.id}`)).toEqual([]);
    expect(await env.store.list(`${DEAD_LETTER_PREFIX}`)).toEqual([]);

    // Fixed: Lambda's retry of the same event delivers it.
    secrets.secrets.set(ARN, receiversJson());
    expect(await handler(asDelivered(event))).toEqual([
      { target: 'ops', outcome: 'sent', attempts: 1 },
    ]);
    expect(hook.json<{ id: string }>().at(-1)!.id).toBe(event.id);
  });

  it('does not paper over a malformed edit with the list read before', async () => {
    secrets.secrets.set(ARN, receiversJson());
    await handler(asDelivered(isolated('gateway-7')));
    secrets.secrets.set(ARN, '{"receivers": []}');
    await sleep(CACHE_MS + 50);
    const error = await failure(handler(asDelivered(isolated('gateway-8'))));
    expect(error.message).toContain(
      `${ARN}: invalid alert targets: []: Invalid input: expected array`,
    );
  });

  it('fails the invocation, without crashing, when Secrets Manager cannot be reached or refuses', async () => {
    const down = await SecretsManagerEndpoint.start();
    const url = down.url;
    await down.stop();
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = url;
    try {
      const event = isolated('gateway-9');
      const unreachable = await failure(handler(asDelivered(event)));
      expect(unreachable.code).toBe('alert_receivers_unavailable');
      expect(unreachable.message).toContain(`reading ${ARN}`);
      expect(unreachable.message).toContain('ECONNREFUSED');
      expect(await env.store.list(`${SENT_PREFIX}ops/${event.id}`)).toEqual([]);
    } finally {
      process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = secrets.url;
    }
    // A secret that does not exist (or no permission): Secrets Manager's own answer.
    closeAlertsLambda();
    secrets.secrets.delete(ARN);
    const missing = await failure(handler({ action: 'redeliver' }));
    expect(missing.message).toContain(
      `reading ${ARN}: Secrets Manager can't find the specified secret`,
    );
    // The process carries on: the next invocation with a readable secret works.
    secrets.secrets.set(ARN, receiversJson());
    expect(await handler({ action: 'redeliver' })).toEqual({ sent: 0, failed: 0, remaining: 0 });
  });
});

describe('AlertReceivers: Secrets Manager unreachable after a good read', () => {
  let secrets: SecretsManagerEndpoint;
  let client: SecretsManagerClient;
  let receivers: AlertReceivers | undefined;
  const lines: string[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    }),
  );

  beforeAll(async () => {
    secrets = await SecretsManagerEndpoint.start();
    client = new SecretsManagerClient({
      endpoint: secrets.url,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
    });
  });
  afterAll(async () => {
    receivers?.close();
    client.destroy();
    await secrets.stop();
  });

  it('keeps delivering to the receivers read before and logs the failure without values', async () => {
    const text = JSON.stringify([
      { name: 'ops', type: 'webhook', url: 'https://ops.example.com/in', secret: HOOK_SECRET },
      { name: 'chat', type: 'slack', url: `https://hooks.slack.com/services${SLACK_PATH}` },
      { name: 'pager', type: 'pagerduty', routingKey: 'R0UTINGKEYSECRET' },
    ]);
    secrets.secrets.set(ARN, text);
    let now = 1_000_000;
    receivers = new AlertReceivers({
      env: { STREAMHEAL_ALERT_TARGETS_SECRET_ARN: ARN },
      secretsManager: client,
      cacheMs: 60_000,
      now: () => now,
      logger,
    });
    expect(receivers.origin).toBe('secretsmanager');
    const first = await receivers.get();
    expect(first.map((t) => t.name)).toEqual(['ops', 'chat', 'pager']);
    now += 30_000;
    expect(await receivers.get()).toBe(first);
    const calls = secrets.calls;
    now += 30_001;
    expect(await receivers.get()).toBe(first); // re-read, unchanged: the same list
    expect(secrets.calls - calls).toBe(1);

    await secrets.stop();
    now += 60_001;
    expect(await receivers.get()).toBe(first);
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 50, secret: ARN, code: 'alert_receivers_unavailable' });
    // The kept-alive socket is cut (hang up), or a new one refused.
    expect(String(line.msg)).toMatch(
      new RegExp(`reading ${ARN}: (socket hang up|ECONNRESET|.*ECONNREFUSED)`),
    );
    expect(String(line.msg)).toContain('delivering to the 3 read at');
    for (const value of [
      HOOK_SECRET,
      SLACK_PATH,
      'T0SECRET',
      'R0UTINGKEYSECRET',
      'ops.example.com',
    ]) {
      expect(lines[0]).not.toContain(value);
    }

    // Without a list read before there is nothing to fall back on.
    const cold = new AlertReceivers({
      env: { STREAMHEAL_ALERT_TARGETS_SECRET_ARN: ARN },
      secretsManager: client,
      logger,
    });
    await expect(cold.get()).rejects.toMatchObject({
      code: 'alert_receivers_unavailable',
      reason: 'unreadable',
      message: expect.stringContaining(`reading ${ARN}`),
    });
  });

  it('refuses a secret ARN together with receivers in the environment', async () => {
    const both = new AlertReceivers({
      env: { STREAMHEAL_ALERT_TARGETS_SECRET_ARN: ARN, STREAMHEAL_ALERT_TARGETS: '[]' },
      secretsManager: client,
    });
    await expect(both.get()).rejects.toMatchObject({ code: 'invalid_alert_targets' });
    expect(await new AlertReceivers({ env: {} }).get()).toEqual([]);
  });
});
