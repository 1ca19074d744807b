import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { isAwsServiceEntry } from '../../../infra/constructs/CatalogueRules.js';
import { controlFunctionDefaults } from '../../../infra/defaults.js';
import { catalogue, TargetFunctions } from '../../../shared/bus/catalogue.js';
import { resourcesOf, synthStreamheal, type Synthesized } from '../support/synth.js';

interface RuleProperties {
  Name?: string;
  EventBusName?: unknown;
  EventPattern: Record<string, unknown>;
  Targets: Array<{
    Arn: unknown;
    RetryPolicy?: { MaximumRetryAttempts: number; MaximumEventAgeInSeconds: number };
    DeadLetterConfig?: { Arn: unknown };
  }>;
}

describe('CatalogueRules', () => {
  let synth: Synthesized;
  let rules: Array<[string, { Properties: RuleProperties }]>;
  beforeAll(() => {
    synth = synthStreamheal('dynamodb');
    rules = (
      resourcesOf(
        synth.template(synth.stacks.control),
        'AWS::Events::Rule',
      ) as unknown as typeof rules
    ).filter(([, rule]) => rule.Properties.EventPattern !== undefined);
  });

  it('makes one rule per catalogue entry whose pattern equals the entry, tokens resolved', () => {
    const control = synth.stacks.control;
    const gateways = synth.stacks.gateways;
    const expected = catalogue({
      gatewayClusterArn: gateways.cluster.clusterArn,
      gatewayTaskGroup: `service:${gateways.gateway.serviceName}`,
    });
    // Every target function is routed, ECS included: the catalogue has its ECS entry here.
    expect(new Set(expected.map((e) => e.target))).toEqual(new Set(TargetFunctions));
    expect(expected.some(isAwsServiceEntry)).toBe(true);
    expect(rules).toHaveLength(expected.length);
    for (const entry of expected) {
      const rule = control.rules!.rules[entry.name]!;
      const logicalId = control.getLogicalId(rule.node.defaultChild as never);
      const properties = synth.template(control).toJSON().Resources[logicalId]
        .Properties as RuleProperties;
      expect(properties.EventPattern, entry.name).toEqual(control.resolve(entry.pattern));
    }
  });

  it('puts the ECS task-state entry on the default bus (AWS events arrive only there), the rest on the deployment bus by name', () => {
    const control = synth.stacks.control;
    for (const entry of control.rules!.entries) {
      const rule = control.rules!.rules[entry.name]!;
      const properties = synth.template(control).toJSON().Resources[
        control.getLogicalId(rule.node.defaultChild as never)
      ].Properties as RuleProperties;
      if (isAwsServiceEntry(entry)) {
        expect(properties.EventBusName).toBe('default');
        expect(properties.Name).toBeUndefined();
        expect(JSON.stringify(properties.EventPattern)).toContain('ECS Task State Change');
        expect(properties.EventPattern.detail).toMatchObject({
          lastStatus: ['STOPPED'],
          group: ['service:streamheal-gateway'],
        });
      } else {
        expect(properties.Name).toBe(entry.name);
        expect(JSON.stringify(properties.EventBusName)).toContain('Streamheal-State');
      }
    }
  });

  it('gives every target the function retry policy and its dead-letter queue', () => {
    const control = synth.stacks.control;
    const functions = control.functions!.functions;
    for (const entry of control.rules!.entries) {
      const fn = functions[entry.target];
      const defaults = controlFunctionDefaults(entry.target);
      const rule = control.rules!.rules[entry.name]!;
      const properties = synth.template(control).toJSON().Resources[
        control.getLogicalId(rule.node.defaultChild as never)
      ].Properties as RuleProperties;
      expect(properties.Targets).toHaveLength(1);
      const [target] = properties.Targets;
      expect(target!.Arn).toEqual(control.resolve(fn.function.functionArn));
      expect(target!.RetryPolicy).toEqual({
        MaximumRetryAttempts: defaults.targetRetryAttempts,
        MaximumEventAgeInSeconds: defaults.targetMaxEventAge.toSeconds(),
      });
      expect(target!.DeadLetterConfig!.Arn).toEqual(control.resolve(fn.deadLetterQueue.queueArn));
    }
  });

  it('lets EventBridge send to each dead-letter queue only from its own rules', () => {
    const template = synth.template(synth.stacks.control);
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: 'sqs:SendMessage',
            Principal: { Service: 'events.amazonaws.com' },
            Condition: { ArnEquals: { 'aws:SourceArn': Match.anyValue() } },
          }),
        ]),
      },
    });
  });

  it('has no rules with store=etcd: the orchestrator routes the catalogue on the etcd bus', () => {
    const etcd = synthStreamheal('etcd');
    etcd.template(etcd.stacks.control).resourceCountIs('AWS::Events::Rule', 0);
    etcd.template(etcd.stacks.control).resourceCountIs('AWS::Lambda::Function', 0);
  });
});
