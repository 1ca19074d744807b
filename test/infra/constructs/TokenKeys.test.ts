import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { KEY_RING_ARN_ENV } from '../../../infra/constructs/TokenKeys.js';
import { resourcesOf, synthStreamheal, type Synthesized } from '../support/synth.js';

describe('TokenKeys', () => {
  let dynamo: Synthesized;
  let etcd: Synthesized;
  beforeAll(() => {
    dynamo = synthStreamheal('dynamodb');
    etcd = synthStreamheal('etcd');
  });

  it('generates both secrets in Secrets Manager, none in the template, without ring separators', () => {
    const template = dynamo.template(dynamo.stacks.gateways);
    const secrets = resourcesOf(template, 'AWS::SecretsManager::Secret');
    expect(secrets).toHaveLength(2);
    for (const [, secret] of secrets) {
      expect(secret.Properties!.SecretString).toBeUndefined();
      expect(secret.Properties!.GenerateSecretString).toMatchObject({
        PasswordLength: 48,
        ExcludePunctuation: true,
      });
    }
  });

  it('rotates the key ring every 30 days, not at creation, and rolls the gateway service after', () => {
    const template = dynamo.template(dynamo.stacks.gateways);
    template.hasResourceProperties('AWS::SecretsManager::RotationSchedule', {
      RotationRules: { ScheduleExpression: 'rate(30 days)' },
      RotateImmediatelyOnUpdate: false,
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs24.x',
      Architectures: ['arm64'],
      Environment: {
        Variables: Match.objectLike({
          STREAMHEAL_ROLL_SERVICES: {
            'Fn::Join': ['', [{ Ref: Match.anyValue() }, '/streamheal-gateway']],
          },
        }),
      },
    });
    const policies = JSON.stringify(template.findResources('AWS::IAM::Policy'));
    expect(policies).toContain('ecs:UpdateService');
    expect(policies).toMatch(/service\/",\{"Ref":"[^"]+"\},"\/streamheal-gateway"/);
  });

  it('rolls the orchestrator too with store=etcd', () => {
    etcd.template(etcd.stacks.gateways).hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          STREAMHEAL_ROLL_SERVICES: {
            'Fn::Join': ['', Match.arrayWith(['/streamheal-gateway,', '/streamheal-orchestrator'])],
          },
        }),
      },
    });
  });

  it('passes the ring to functions by ARN only, with read access to that secret', () => {
    const template = dynamo.template(dynamo.stacks.control);
    const functions = resourcesOf(template, 'AWS::Lambda::Function');
    const variables = functions.map(
      ([, f]) => (f.Properties!.Environment as { Variables: Record<string, unknown> }).Variables,
    );
    const withRing = variables.filter((v) => v[KEY_RING_ARN_ENV] !== undefined);
    expect(withRing).toHaveLength(3); // decide, nodeLost, tokens; not alerts
    for (const v of variables) {
      for (const name of Object.keys(v)) expect(name).not.toMatch(/CLUSTER_SECRET|PUBLISH_KEY/);
    }
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
          }),
        ]),
      },
    });
  });
});
