/**
 * Alerting: the alert topic (alarms and the alerts function publish to it) and the webhook API
 * destinations fed by decision events (constructs/Alerting.ts).
 */
import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { Alerting, type AlertingOptions } from '../constructs/Alerting.js';
import type { StateStack } from './StateStack.js';

export interface AlertingStackProps extends StackProps {
  readonly state: StateStack;
  /** @default no subscriptions, no webhook receivers */
  readonly alerting?: AlertingOptions;
}

export class AlertingStack extends Stack {
  readonly alerting: Alerting;

  constructor(scope: Construct, id: string, props: AlertingStackProps) {
    super(scope, id, props);
    this.alerting = new Alerting(this, 'Alerting', { ...props.alerting, bus: props.state.bus.bus });
  }
}
