import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { alertsEntry, PAGE_ON, RESOLVE_ON } from '../../../infra/constructs/Alerting.js';
import { alertingDefaults } from '../../../infra/defaults.js';
import { DecisionEvents } from '../../../shared/bus/controlEvents.js';
import { resourcesOf, synthStreamheal, type Synthesized } from '../support/synth.js';

describe('Alerting', () => {
  let synth: Synthesized;
  beforeAll(() => {
    synth = synthStreamheal('dynamodb', {
      props: {
        alerting: {
          email: 'ops@example.com',
          webhook: {
            url: 'https://hooks.example.com/streamheal',
            authSecret: 'streamheal/webhook',
          },
          slack: { channel: '#ops', tokenSecret: 'streamheal/slack' },
          pagerDuty: { routingKeySecret: 'streamheal/pagerduty' },
        },
      },
    });
  });

  it('encrypts the topic with a rotating customer key that alarms and EventBridge may use, TLS only', () => {
    const template = synth.template(synth.stacks.alerting);
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    template.hasResourceProperties('AWS::KMS::Key', {
      EnableKeyRotation: true,
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({ Principal: { Service: 'cloudwatch.amazonaws.com' } }),
          Match.objectLike({ Principal: { Service: 'events.amazonaws.com' } }),
        ]),
      },
    });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
  });

  it('feeds every webhook destination from the catalogue alerts entry, PagerDuty by need', () => {
    const alerting = synth.stacks.alerting;
    const rules = resourcesOf(synth.template(alerting), 'AWS::Events::Rule');
    const entry = alertsEntry();
    const patterns = rules.map(
      ([, rule]) => (rule.Properties as { EventPattern: Record<string, unknown> }).EventPattern,
    );
    // topic, generic, Slack: the whole alerts entry; PagerDuty: trigger and resolve subsets of it.
    expect(
      patterns.filter((p) => JSON.stringify(p) === JSON.stringify(entry.pattern)),
    ).toHaveLength(3);
    const all = (entry.pattern['detail-type'] as string[]) ?? [];
    for (const subset of [PAGE_ON, RESOLVE_ON]) {
      const match = patterns.find(
        (p) => JSON.stringify(p['detail-type']) === JSON.stringify(subset),
      );
      expect(match).toEqual({ ...entry.pattern, 'detail-type': [...subset] });
      for (const type of subset) expect(all).toContain(type);
    }
    expect(Object.values(DecisionEvents)).toEqual(all);
  });

  it('retries every destination and the topic, and dead-letters what it cannot deliver', () => {
    const defaults = alertingDefaults();
    const rules = resourcesOf(synth.template(synth.stacks.alerting), 'AWS::Events::Rule');
    expect(rules).toHaveLength(5);
    for (const [, rule] of rules) {
      const [target] = (rule.Properties as { Targets: Array<Record<string, unknown>> }).Targets;
      expect(target).toMatchObject({
        RetryPolicy: {
          MaximumRetryAttempts: defaults.retryAttempts,
          MaximumEventAgeInSeconds: defaults.maxEventAge.toSeconds(),
        },
        DeadLetterConfig: { Arn: expect.anything() },
      });
    }
    synth
      .template(synth.stacks.alerting)
      .resourcePropertiesCountIs('AWS::Events::ApiDestination', { HttpMethod: 'POST' }, 3);
  });

  it('keeps receiver credentials out of the template: only Secrets Manager dynamic references', () => {
    const template = JSON.stringify(synth.template(synth.stacks.alerting).toJSON());
    for (const secret of ['streamheal/webhook', 'streamheal/slack', 'streamheal/pagerduty']) {
      expect(template).toContain(`{{resolve:secretsmanager:${secret}:SecretString:::}}`);
    }
    synth.template(synth.stacks.alerting).hasResourceProperties('AWS::Events::Connection', {
      AuthParameters: Match.objectLike({
        InvocationHttpParameters: {
          BodyParameters: [
            {
              Key: 'routing_key',
              Value: Match.stringLikeRegexp('resolve:secretsmanager'),
              IsValueSecret: true,
            },
          ],
        },
      }),
    });
  });

  it('feeds decision events to the topic even without receivers', () => {
    const plain = synthStreamheal('dynamodb');
    const template = plain.template(plain.stacks.alerting);
    template.resourceCountIs('AWS::Events::ApiDestination', 0);
    template.resourceCountIs('AWS::SNS::Topic', 1);
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: alertsEntry().pattern,
      Targets: [
        Match.objectLike({
          Arn: { Ref: Match.stringLikeRegexp('Topic') },
          InputTransformer: Match.objectLike({
            InputPathsMap: Match.objectLike({ 'detail-type': '$.detail-type' }),
          }),
        }),
      ],
    });
  });
});
