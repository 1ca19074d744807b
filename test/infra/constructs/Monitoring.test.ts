import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { resourcesOf, synthStreamheal, type Synthesized } from '../support/synth.js';

function alarms(synth: Synthesized) {
  return resourcesOf(synth.template(synth.stacks.observability), 'AWS::CloudWatch::Alarm').map(
    ([, alarm]) =>
      alarm.Properties as {
        MetricName?: string;
        Namespace?: string;
        Threshold: number;
        ComparisonOperator: string;
        AlarmActions: unknown[];
        OKActions: unknown[];
        ExtendedStatistic?: string;
      },
  );
}

describe('Monitoring', () => {
  let dynamo: Synthesized;
  let etcd: Synthesized;
  beforeAll(() => {
    dynamo = synthStreamheal('dynamodb');
    etcd = synthStreamheal('etcd');
  });

  it('alarms on gateway targets, CPU and memory, each function and its dead letters, and alert delivery', () => {
    const names = alarms(dynamo).map((a) => `${a.Namespace}/${a.MetricName}`);
    expect(names).toEqual(
      expect.arrayContaining([
        'AWS/NetworkELB/HealthyHostCount',
        'AWS/NetworkELB/UnHealthyHostCount',
        'AWS/ECS/CPUUtilization',
        'AWS/ECS/MemoryUtilization',
        'AWS/Lambda/Errors',
        'AWS/Lambda/Throttles',
        'AWS/SQS/ApproximateNumberOfMessagesVisible',
      ]),
    );
    // four functions: errors, throttles, dead letters each; decide's p99 on top.
    expect(names.filter((n) => n === 'AWS/Lambda/Errors')).toHaveLength(4);
    expect(names.filter((n) => n === 'AWS/SQS/ApproximateNumberOfMessagesVisible')).toHaveLength(5);
    const p99 = alarms(dynamo).find((a) => a.ExtendedStatistic === 'p99');
    expect(p99).toMatchObject({ MetricName: 'Duration', Threshold: 800 });
    const healthy = alarms(dynamo).find((a) => a.MetricName === 'HealthyHostCount');
    expect(healthy).toMatchObject({ Threshold: 2, ComparisonOperator: 'LessThanThreshold' });
  });

  it('notifies the alert topic on alarm and on recovery', () => {
    for (const alarm of alarms(dynamo)) {
      expect(alarm.AlarmActions).toHaveLength(1);
      expect(alarm.OKActions).toEqual(alarm.AlarmActions);
      expect(JSON.stringify(alarm.AlarmActions)).toContain('Streamheal-Alerting');
    }
  });

  it('watches the orchestrator and every etcd member with store=etcd, and no functions', () => {
    const names = alarms(etcd).map((a) => `${a.Namespace}/${a.MetricName}`);
    expect(names).toContain('ECS/ContainerInsights/RunningTaskCount');
    expect(names.filter((n) => n === 'AWS/AutoScaling/GroupInServiceInstances')).toHaveLength(3);
    expect(names.filter((n) => n === 'AWS/EC2/StatusCheckFailed')).toHaveLength(3);
    expect(names.some((n) => n.startsWith('AWS/Lambda/'))).toBe(false);
  });

  it('draws one dashboard', () => {
    dynamo
      .template(dynamo.stacks.observability)
      .hasResourceProperties('AWS::CloudWatch::Dashboard', {
        DashboardName: 'Streamheal',
        DashboardBody: Match.anyValue(),
      });
  });
});
