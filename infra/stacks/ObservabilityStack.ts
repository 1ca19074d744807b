/** Observability: the CloudWatch dashboard and alarms (constructs/Monitoring.ts). */
import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { Monitoring, type MonitoringOptions } from '../constructs/Monitoring.js';
import type { AlertingStack } from './AlertingStack.js';
import type { ControlStack } from './ControlStack.js';
import type { GatewayStack } from './GatewayStack.js';
import type { StateStack } from './StateStack.js';

export interface ObservabilityStackProps extends StackProps {
  readonly state: StateStack;
  readonly gateways: GatewayStack;
  readonly control: ControlStack;
  readonly alerting: AlertingStack;
  /** @default Monitoring defaults */
  readonly monitoring?: MonitoringOptions;
}

export class ObservabilityStack extends Stack {
  readonly monitoring: Monitoring;

  constructor(scope: Construct, id: string, props: ObservabilityStackProps) {
    super(scope, id, props);
    const functions = props.control.functions
      ? Object.values(props.control.functions.functions)
      : undefined;
    this.monitoring = new Monitoring(this, 'Monitoring', {
      ...props.monitoring,
      topic: props.alerting.alerting.topic,
      gateway: props.gateways.gateway,
      ...(functions ? { functions } : {}),
      ...(props.control.orchestrator ? { orchestrator: props.control.orchestrator } : {}),
      alertDeadLetters: props.alerting.alerting.deadLetterQueue,
      ...(props.state.etcd ? { etcdMembers: props.state.etcd.groups } : {}),
    });
  }
}
