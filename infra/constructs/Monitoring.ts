/**
 * CloudWatch alarms and one dashboard for the gateway fleet and the control plane. Every alarm
 * notifies the alert topic. What is watched, and why:
 *
 * - gateways: fewer healthy targets than the minimum (clients are being turned away or piled on
 *   the rest), any unhealthy target, CPU and memory near the limit (scaling is not keeping up);
 * - functions (store=dynamodb): errors, throttles (reserved concurrency reached: a storm), any
 *   dead-lettered event, and decide's p99 duration over the sub-second budget;
 * - orchestrator (store=etcd): no running task, CPU near the limit;
 * - alert delivery: any dead-lettered webhook call.
 */
import { Duration } from 'aws-cdk-lib';
import type * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { observabilityDefaults } from '../defaults.js';
import type { ControlFunction } from './ControlFunction.js';
import type { GatewayService } from './GatewayService.js';
import type { OrchestratorService } from './OrchestratorService.js';

export interface MonitoringOptions {
  /** @default observabilityDefaults().decideP99Threshold (800 ms) */
  readonly decideP99Threshold?: Duration;
  /** @default observabilityDefaults().gatewayCpuAlarmPercent (85) */
  readonly gatewayCpuAlarmPercent?: number;
  /** @default observabilityDefaults().gatewayMemoryAlarmPercent (85) */
  readonly gatewayMemoryAlarmPercent?: number;
  /** @default 'streamheal' */
  readonly dashboardName?: string;
}

export interface MonitoringProps extends MonitoringOptions {
  readonly topic: sns.ITopic;
  readonly gateway: GatewayService;
  /** The control functions (store=dynamodb). @default none */
  readonly functions?: ControlFunction[];
  /** The orchestrator (store=etcd). @default none */
  readonly orchestrator?: OrchestratorService;
  /** The etcd members' groups (store=etcd). @default none */
  readonly etcdMembers?: autoscaling.AutoScalingGroup[];
  /** The alert destinations' dead-letter queue. */
  readonly alertDeadLetters: sqs.IQueue;
}

export class Monitoring extends Construct {
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarms: cloudwatch.Alarm[] = [];
  private readonly action: actions.SnsAction;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const defaults = observabilityDefaults();
    this.action = new actions.SnsAction(props.topic);
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: props.dashboardName ?? 'streamheal',
    });

    const gw = props.gateway;
    const minute = Duration.minutes(1);
    const healthy = gw.targetGroup.metrics.healthyHostCount({
      period: minute,
      statistic: 'Minimum',
    });
    const unhealthy = gw.targetGroup.metrics.unHealthyHostCount({
      period: minute,
      statistic: 'Maximum',
    });
    const flows = gw.loadBalancer.metrics.activeFlowCount({ period: minute, statistic: 'Average' });
    const newFlows = gw.loadBalancer.metrics.newFlowCount({ period: minute, statistic: 'Sum' });
    const resets = gw.loadBalancer.metrics.tcpTargetResetCount({
      period: minute,
      statistic: 'Sum',
    });
    const cpu = gw.service.metricCpuUtilization({ period: minute });
    const memory = gw.service.metricMemoryUtilization({ period: minute });

    this.alarm('GatewayHealthyTargets', healthy, {
      threshold: gw.minCapacity,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      alarmDescription: `fewer than ${gw.minCapacity} healthy gateway targets for 3 minutes`,
    });
    this.alarm('GatewayUnhealthyTargets', unhealthy, {
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 2,
      alarmDescription: 'a gateway target failed its /readyz health checks for 2 minutes',
    });
    this.alarm('GatewayCpu', cpu, {
      threshold: props.gatewayCpuAlarmPercent ?? defaults.gatewayCpuAlarmPercent,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      alarmDescription: 'gateway CPU high for 5 minutes (scaling not keeping up?)',
    });
    this.alarm('GatewayMemory', memory, {
      threshold: props.gatewayMemoryAlarmPercent ?? defaults.gatewayMemoryAlarmPercent,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      alarmDescription: 'gateway memory high for 5 minutes',
    });
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({ markdown: '# streamheal gateways', width: 24, height: 1 }),
      new cloudwatch.GraphWidget({
        title: 'Connections (active flows)',
        left: [flows],
        right: [newFlows],
      }),
      new cloudwatch.GraphWidget({ title: 'Targets', left: [healthy, unhealthy] }),
      new cloudwatch.GraphWidget({ title: 'CPU / memory %', left: [cpu, memory] }),
      new cloudwatch.GraphWidget({ title: 'TCP resets from gateways', left: [resets] }),
    );

    for (const fn of props.functions ?? []) this.watchFunction(fn, props);
    if (props.orchestrator) this.watchOrchestrator(props.orchestrator, props);
    (props.etcdMembers ?? []).forEach((group, index) => this.watchEtcdMember(group, index));

    const alertDlq = props.alertDeadLetters.metricApproximateNumberOfMessagesVisible({
      period: minute,
    });
    this.alarm('AlertDeadLetters', alertDlq, {
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      alarmDescription:
        'a webhook alert could not be delivered (see the alerting dead-letter queue)',
    });
  }

  private watchFunction(fn: ControlFunction, props: MonitoringProps): void {
    const minute = Duration.minutes(1);
    const f = fn.function;
    const errors = f.metricErrors({ period: minute, statistic: 'Sum' });
    const throttles = f.metricThrottles({ period: minute, statistic: 'Sum' });
    const invocations = f.metricInvocations({ period: minute, statistic: 'Sum' });
    const p99 = f.metricDuration({ period: minute, statistic: 'p99' });
    const dlq = fn.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: minute });
    const name = fn.name.charAt(0).toUpperCase() + fn.name.slice(1);
    const gt0 = {
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
    };
    this.alarm(`${name}Errors`, errors, { ...gt0, alarmDescription: `${fn.name} failed` });
    this.alarm(`${name}Throttles`, throttles, {
      ...gt0,
      alarmDescription: `${fn.name} throttled (reserved concurrency reached: an event storm?)`,
    });
    this.alarm(`${name}DeadLetters`, dlq, {
      ...gt0,
      alarmDescription: `${fn.name} dead-lettered an event (see its queue)`,
    });
    if (fn.name === 'decide') {
      const budget = props.decideP99Threshold ?? observabilityDefaults().decideP99Threshold;
      this.alarm('DecideP99', p99, {
        threshold: budget.toMilliseconds(),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 5,
        alarmDescription: `decide p99 over ${budget.toMilliseconds()} ms for 5 minutes (control path budget < 1 s)`,
      });
    }
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: `${fn.name}: invocations, errors, throttles`,
        left: [invocations, errors, throttles],
      }),
      new cloudwatch.GraphWidget({ title: `${fn.name}: duration p99 (ms)`, left: [p99] }),
      new cloudwatch.GraphWidget({ title: `${fn.name}: dead letters`, left: [dlq] }),
    );
  }

  private watchOrchestrator(orchestrator: OrchestratorService, props: MonitoringProps): void {
    const minute = Duration.minutes(1);
    const running = new cloudwatch.Metric({
      namespace: 'ECS/ContainerInsights',
      metricName: 'RunningTaskCount',
      dimensionsMap: {
        ClusterName: orchestrator.service.cluster.clusterName,
        ServiceName: orchestrator.service.serviceName,
      },
      period: minute,
      statistic: 'Minimum',
    });
    const cpu = orchestrator.service.metricCpuUtilization({ period: minute });
    this.alarm('OrchestratorNotRunning', running, {
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 3,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      alarmDescription: 'no orchestrator task running for 3 minutes: no decisions are taken',
    });
    this.alarm('OrchestratorCpu', cpu, {
      threshold: props.gatewayCpuAlarmPercent ?? observabilityDefaults().gatewayCpuAlarmPercent,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 5,
      alarmDescription: 'orchestrator CPU high for 5 minutes',
    });
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'orchestrator: running tasks, CPU %',
        left: [running],
        right: [cpu],
      }),
    );
  }

  /** A member out of service or failing its status checks: the cluster is one loss from no quorum. */
  private watchEtcdMember(group: autoscaling.AutoScalingGroup, index: number): void {
    const minute = Duration.minutes(1);
    const dimensionsMap = { AutoScalingGroupName: group.autoScalingGroupName };
    const inService = new cloudwatch.Metric({
      namespace: 'AWS/AutoScaling',
      metricName: 'GroupInServiceInstances',
      dimensionsMap,
      period: minute,
      statistic: 'Minimum',
    });
    const statusFailed = new cloudwatch.Metric({
      namespace: 'AWS/EC2',
      metricName: 'StatusCheckFailed',
      dimensionsMap,
      period: minute,
      statistic: 'Maximum',
    });
    this.alarm(`EtcdMember${index}OutOfService`, inService, {
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 5,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      alarmDescription: `etcd member m${index} out of service for 5 minutes`,
    });
    this.alarm(`EtcdMember${index}StatusCheck`, statusFailed, {
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      alarmDescription: `etcd member m${index} failing EC2 status checks`,
    });
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: `etcd m${index}: in service, status check failed`,
        left: [inService, statusFailed],
      }),
    );
  }

  private alarm(
    id: string,
    metric: cloudwatch.IMetric,
    options: Omit<cloudwatch.CreateAlarmOptions, 'alarmName'>,
  ): void {
    const alarm = new cloudwatch.Alarm(this, id, {
      metric,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      ...options,
    });
    alarm.addAlarmAction(this.action);
    alarm.addOkAction(this.action);
    this.alarms.push(alarm);
  }
}
