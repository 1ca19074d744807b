/**
 * One control-plane Lambda (functions/<name>/handler.ts, export `handler`): NodejsFunction on
 * Node.js 24 / ARM64, bundled by esbuild, with its own log group, X-Ray tracing, a dead-letter
 * queue, and explicit retry policies at both places an event can fail:
 *
 * - EventBridge -> Lambda (the rule target): `targetRetryAttempts` / `targetMaxEventAge`, then
 *   the event goes to the DLQ (delivery failed: throttled, function missing, no permission);
 * - inside Lambda's asynchronous invocation: `asyncRetryAttempts` / `asyncMaxEventAge`, then the
 *   invocation record goes to the same DLQ (the function ran and failed).
 */
import type { Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import {
  controlFunctionDefaults,
  functionsDefaults,
  type ControlFunctionDefaults,
  type ControlFunctionName,
} from '../defaults.js';
import { functionBundling, functionSource, LAMBDA_RUNTIME } from './bundling.js';
import { deadLetterQueue } from './deadLetterQueue.js';
import { lambdaRole } from './lambdaRole.js';
import { logRetention } from './logRetention.js';

export interface ControlFunctionOptions {
  /** Handler file, repository-relative. @default `functions/<name>/handler.ts` */
  readonly entry?: string;
  /** @default controlFunctionDefaults(name).memoryMiB */
  readonly memoryMiB?: number;
  /** @default controlFunctionDefaults(name).timeout */
  readonly timeout?: Duration;
  /** 0 or more; `null` leaves the function unreserved. @default controlFunctionDefaults(name).reservedConcurrency */
  readonly reservedConcurrency?: number | null;
  /** @default controlFunctionDefaults(name).targetRetryAttempts */
  readonly targetRetryAttempts?: number;
  /** @default controlFunctionDefaults(name).targetMaxEventAge */
  readonly targetMaxEventAge?: Duration;
  /** @default controlFunctionDefaults(name).asyncRetryAttempts */
  readonly asyncRetryAttempts?: number;
  /** @default controlFunctionDefaults(name).asyncMaxEventAge */
  readonly asyncMaxEventAge?: Duration;
}

export interface ControlFunctionProps extends ControlFunctionOptions {
  readonly name: ControlFunctionName;
  /** Runs in this VPC's private subnets with `securityGroup` when the function is `inVpc`. */
  readonly vpc: ec2.IVpc;
  readonly securityGroup: ec2.ISecurityGroup;
  /** @default controlFunctionDefaults(name).inVpc */
  readonly inVpc?: boolean;
  /** Plain configuration only: secrets are passed by ARN and read at run time. @default {} */
  readonly environment?: Record<string, string>;
  /** @default functionsDefaults().logRetentionDays (30) */
  readonly logRetentionDays?: number;
  /** @default functionsDefaults().dlqRetention (14 days) */
  readonly dlqRetention?: Duration;
  /** Bundling (tests pass a cheaper one). @default functionBundling() */
  readonly bundling?: nodejs.BundlingOptions;
}

export class ControlFunction extends Construct {
  readonly name: ControlFunctionName;
  readonly function: nodejs.NodejsFunction;
  readonly deadLetterQueue: sqs.Queue;
  readonly logGroup: logs.LogGroup;
  readonly settings: ControlFunctionDefaults;

  constructor(scope: Construct, id: string, props: ControlFunctionProps) {
    super(scope, id);
    this.name = props.name;
    const defaults = controlFunctionDefaults(props.name);
    const common = functionsDefaults();
    const reserved =
      props.reservedConcurrency === null
        ? undefined
        : (props.reservedConcurrency ?? defaults.reservedConcurrency);
    this.settings = {
      memoryMiB: props.memoryMiB ?? defaults.memoryMiB,
      timeout: props.timeout ?? defaults.timeout,
      reservedConcurrency: reserved,
      inVpc: props.inVpc ?? defaults.inVpc,
      targetRetryAttempts: props.targetRetryAttempts ?? defaults.targetRetryAttempts,
      targetMaxEventAge: props.targetMaxEventAge ?? defaults.targetMaxEventAge,
      asyncRetryAttempts: props.asyncRetryAttempts ?? defaults.asyncRetryAttempts,
      asyncMaxEventAge: props.asyncMaxEventAge ?? defaults.asyncMaxEventAge,
    };

    this.deadLetterQueue = deadLetterQueue(
      this,
      'DeadLetters',
      props.dlqRetention ?? common.dlqRetention,
    );
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logRetention(props.logRetentionDays ?? common.logRetentionDays),
    });
    const role = lambdaRole(this, 'Role', {
      logGroup: this.logGroup,
      inVpc: this.settings.inVpc,
      description: `streamheal ${props.name} function`,
    });
    this.function = new nodejs.NodejsFunction(this, 'Function', {
      role,
      ...functionSource(props.entry ?? `functions/${props.name}/handler.ts`),
      handler: 'handler',
      runtime: LAMBDA_RUNTIME,
      architecture: lambda.Architecture.ARM_64,
      memorySize: this.settings.memoryMiB,
      timeout: this.settings.timeout,
      ...(reserved === undefined ? {} : { reservedConcurrentExecutions: reserved }),
      ...(this.settings.inVpc
        ? {
            vpc: props.vpc,
            vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
            securityGroups: [props.securityGroup],
          }
        : {}),
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: `streamheal-${props.name}`,
        STREAMHEAL_FUNCTION: props.name,
        ...props.environment,
      },
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      tracing: lambda.Tracing.ACTIVE,
      retryAttempts: this.settings.asyncRetryAttempts,
      maxEventAge: this.settings.asyncMaxEventAge,
      onFailure: new destinations.SqsDestination(this.deadLetterQueue),
      bundling: props.bundling ?? functionBundling(),
      description: `streamheal ${props.name} (functions/${props.name}/handler.ts)`,
    });
  }

  /** An EventBridge rule target for this function, with its retry policy and DLQ. */
  eventTarget(): targets.LambdaFunction {
    return new targets.LambdaFunction(this.function, {
      retryAttempts: this.settings.targetRetryAttempts,
      maxEventAge: this.settings.targetMaxEventAge,
      deadLetterQueue: this.deadLetterQueue,
    });
  }

  addEnvironment(variables: Record<string, string>): void {
    for (const [name, value] of Object.entries(variables)) {
      this.function.addEnvironment(name, value);
    }
  }
}
