/**
 * The four control-plane functions (functions/<name>/handler.ts) with what each one needs and
 * nothing more:
 *
 * | function | store | bus (PutEvents) | key ring | alert receivers | VPC (gateway control port) |
 * | -------- | ----- | --------------- | -------- | --------------- | -------------------------- |
 * | decide   | yes   | yes             | yes      |                 | yes                        |
 * | nodeLost | yes   | yes             | yes      |                 | yes                        |
 * | tokens   |       |                 | yes      |                 |                            |
 * | alerts   | yes   |                 |          | yes             |                            |
 *
 * The store holds decide's and nodeLost's rule memory, idempotency records and moves, and the
 * alerts function's dead letters. The key ring signs redirect tokens (tokens) and authenticates
 * calls to the gateways' control service (decide, nodeLost). The alert receivers secret
 * (AlertReceivers.ts, made here) holds where alerts delivers. Variable names are the ones the
 * handlers read (functions/runtime.ts, functions/tokens/keyRing.ts,
 * functions/alerts/receivers.ts, docs/dynamodb.md).
 */
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import { Construct } from 'constructs';
import { ControlFunctionNames, type ControlFunctionName } from '../defaults.js';
import { AlertReceivers } from './AlertReceivers.js';
import { ControlFunction, type ControlFunctionOptions } from './ControlFunction.js';
import type { TokenKeys } from './TokenKeys.js';
import type { Wiring } from './wiring.js';

export interface ControlFunctionsProps {
  readonly vpc: ec2.IVpc;
  /** The group allowed on the gateways' control port. */
  readonly securityGroup: ec2.ISecurityGroup;
  readonly store: Wiring;
  readonly bus: Wiring;
  readonly keys: TokenKeys;
  /** Per-function settings. @default controlFunctionDefaults(name) for each */
  readonly functions?: Partial<Record<ControlFunctionName, ControlFunctionOptions>>;
  /** @default functionsDefaults().logRetentionDays (30) */
  readonly logRetentionDays?: number;
  /** @default functionBundling() */
  readonly bundling?: nodejs.BundlingOptions;
}

export class ControlFunctions extends Construct {
  readonly functions: Record<ControlFunctionName, ControlFunction>;
  /** The secret holding the alerts function's receivers (created with none). */
  readonly alertReceivers: AlertReceivers;

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
        environment: { STREAMHEAL_LOG_LEVEL: 'info' },
      });
    }
    this.functions = made as Record<ControlFunctionName, ControlFunction>;
    const { decide, nodeLost, tokens, alerts } = this.functions;

    for (const fn of [decide, nodeLost, alerts]) {
      fn.addEnvironment(props.store.environment);
      props.store.grant(fn.function);
    }
    for (const fn of [decide, nodeLost]) {
      fn.addEnvironment(props.bus.environment);
      props.bus.grant(fn.function);
    }
    for (const fn of [decide, nodeLost, tokens]) {
      fn.addEnvironment(props.keys.grantKeyRingRead(fn.function));
    }
    this.alertReceivers = new AlertReceivers(this, 'AlertReceivers');
    alerts.addEnvironment(this.alertReceivers.grantRead(alerts.function));
  }
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
