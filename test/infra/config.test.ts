import { describe, expect, it } from 'vitest';
import { ContextError, CONTEXT_KEYS, propsFromContext } from '../../infra/config.js';

const context = (values: Record<string, unknown>) => ({
  tryGetContext: (key: string) => values[key],
});

describe('propsFromContext', () => {
  it('leaves everything to the defaults when no context is given', () => {
    expect(propsFromContext(context({}), {})).toEqual({
      network: {},
      tables: {},
      etcd: {},
      gateway: {},
      alerting: {},
    });
  });

  it('reads the store option and the gateway, network and table keys', () => {
    const props = propsFromContext(
      context({
        store: 'etcd',
        stackPrefix: 'Staging',
        certificateArn: 'arn:aws:acm:eu-west-1:111122223333:certificate/x',
        publicUrl: 'https://push.example.com/',
        clientCidrs: '203.0.113.0/24, 198.51.100.0/24',
        natGateways: '2',
        cpuArchitecture: 'x86_64',
        gatewayMinCapacity: 3,
        otelCollector: 'true',
        deletionProtection: 'false',
        etcdVersion: 'v3.5.21',
      }),
      {},
    );
    expect(props).toMatchObject({
      store: 'etcd',
      stackPrefix: 'Staging',
      network: { clientCidrs: ['203.0.113.0/24', '198.51.100.0/24'], natGateways: 2 },
      gateway: {
        certificateArn: 'arn:aws:acm:eu-west-1:111122223333:certificate/x',
        publicUrl: 'https://push.example.com',
        cpuArchitecture: 'x86_64',
        minCapacity: 3,
        otelCollector: true,
      },
      tables: { deletionProtection: false },
      etcd: { version: 'v3.5.21' },
    });
  });

  it('takes account and region from the CDK CLI when both are known', () => {
    expect(
      propsFromContext(context({}), {
        CDK_DEFAULT_ACCOUNT: '111122223333',
        CDK_DEFAULT_REGION: 'eu-west-1',
      }).env,
    ).toEqual({ account: '111122223333', region: 'eu-west-1' });
    expect(propsFromContext(context({}), { CDK_DEFAULT_REGION: 'eu-west-1' }).env).toBeUndefined();
  });

  it('builds the alert receivers, and refuses half-configured ones', () => {
    const props = propsFromContext(
      context({
        alertEmail: 'ops@example.com',
        webhookUrl: 'https://hooks.example.com/x',
        webhookAuthSecret: 'streamheal/webhook',
        slackChannel: '#ops',
        slackTokenSecret: 'streamheal/slack',
        pagerDutyRoutingKeySecret: 'streamheal/pd',
      }),
      {},
    );
    expect(props.alerting).toEqual({
      email: 'ops@example.com',
      webhook: { url: 'https://hooks.example.com/x', authSecret: 'streamheal/webhook' },
      slack: { channel: '#ops', tokenSecret: 'streamheal/slack' },
      pagerDuty: { routingKeySecret: 'streamheal/pd' },
    });
    expect(() => propsFromContext(context({ webhookUrl: 'https://x' }), {})).toThrow(
      /webhookAuthSecret/,
    );
    expect(() => propsFromContext(context({ slackChannel: '#ops' }), {})).toThrow(/go together/);
  });

  it('can leave all Lambda concurrency unreserved', () => {
    const props = propsFromContext(context({ reservedConcurrency: 'false' }), {});
    expect(props.functions?.decide).toEqual({ reservedConcurrency: null });
    expect(Object.keys(props.functions ?? {})).toHaveLength(4);
  });

  it('names the key of a malformed value', () => {
    expect(() => propsFromContext(context({ store: 'redis' }), {})).toThrow(ContextError);
    expect(() => propsFromContext(context({ store: 'redis' }), {})).toThrow(
      /"store".*dynamodb, etcd/,
    );
    expect(() => propsFromContext(context({ natGateways: '-1' }), {})).toThrow(/"natGateways"/);
    expect(() => propsFromContext(context({ publicUrl: 'push.example.com' }), {})).toThrow(
      /"publicUrl".*is not a URL/,
    );
    expect(() => propsFromContext(context({ otelCollector: 'maybe' }), {})).toThrow(
      /"otelCollector"/,
    );
  });

  it('documents every key it reads in docs/deploy.md', async () => {
    const { readFileSync } = await import('node:fs');
    const { repoPath } = await import('../../infra/paths.js');
    const doc = readFileSync(repoPath('docs/deploy.md'), 'utf8');
    for (const key of Object.keys(CONTEXT_KEYS)) expect(doc, key).toContain(`\`${key}\``);
  });
});
