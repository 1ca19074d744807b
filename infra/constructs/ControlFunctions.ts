/**
 * The four control-plane functions (decide, nodeLost, tokens, alerts) with what each one needs
 * and nothing more:
 *
 * | function | store | bus (PutEvents) | key ring | alert topic | VPC (gateway control port) |
 * | -------- | ----- | --------------- | -------- | ----------- | -------------------------- |
 * | decide   | yes   | yes             | yes      |             | yes                        |
 * | nodeLost | yes   | yes             | yes      |             | yes                        |
 * | tokens   | yes   |                 | yes      |             |                            |
 * | alerts   |       |                 |          | yes         |                            |
 *
 * Every function gets the same variable names the local twins read (STREAMHEAL_STORE, table
 * names, STREAMHEAL_EVENT_BUS_NAME, STREAMHEAL_KEY_RING_SECRET_ARN, ...).
 */
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { ControlFunctionNames, type ControlFunctionName, type GatewayPorts } from '../defaults.js';
import { ControlFunction, type ControlFunctionOptions } from './ControlFunction.js';
import type { TokenKeys } from './TokenKeys.js';
import type { Wiring } from './wiring.js';

export const ALERT_TOPIC_ENV = 'STREAMHEAL_ALERT_TOPIC_ARN';

export interface ControlFunctionsProps {
  readonly vpc: ec2.IVpc;
  /** The group allowed on the gateways' control port. */
  readonly securityGroup: ec2.ISecurityGroup;
  readonly ports: GatewayPorts;
  readonly store: Wiring;
  readonly bus: Wiring;
  readonly keys: TokenKeys;
  readonly alertTopic: sns.ITopic;
  /** The topic's KMS key (publishers need to encrypt with it). */
  readonly alertTopicKey: kms.IKey;
  /** Per-function settings. @default controlFunctionDefaults(name) for each */
  readonly functions?: Partial<Record<ControlFunctionName, ControlFunctionOptions>>;
  /** @default functionsDefaults().logRetentionDays (30) */
  readonly logRetentionDays?: number;
  /** @default functionBundling() */
  readonly bundling?: nodejs.BundlingOptions;
}

export class ControlFunctions extends Construct {
  readonly functions: Record<ControlFunctionName, ControlFunction>;

  constructor(scope: Construct, id: string, props: ControlFunctionsProps) {
    super(scope, id);
    const made: Partial<Record<ControlFunctionName, ControlFunction>> = {};
    for (const name of ControlFunctionNames) {
      made[name] = new ControlFunction(this, capitalize(name), {
        name,
        vpc: props.vpc,
        securityGroup: props.securityGroup,
        ...props.functions?.[name],
        ...(props.logRetentionDays === undefined
          ? {}
          : { logRetentionDays: props.logRetentionDays }),
        ...(props.bundling === undefined ? {} : { bundling: props.bundling }),
        environment: { STREAMHEAL_GATEWAY_CONTROL_PORT: String(props.ports.control) },
      });
    }
    this.functions = made as Record<ControlFunctionName, ControlFunction>;
    const { decide, nodeLost, tokens, alerts } = this.functions;

    for (const fn of [decide, nodeLost, tokens]) {
      fn.addEnvironment(props.store.environment);
      props.store.grant(fn.function);
      fn.addEnvironment(props.keys.grantKeyRingRead(fn.function));
    }
    for (const fn of [decide, nodeLost]) {
      fn.addEnvironment(props.bus.environment);
      props.bus.grant(fn.function);
    }
    alerts.addEnvironment({ [ALERT_TOPIC_ENV]: props.alertTopic.topicArn });
    alerts.function.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['sns:Publish'], resources: [props.alertTopic.topicArn] }),
    );
    alerts.function.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [props.alertTopicKey.keyArn],
      }),
    );
  }
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
