/**
 * The secrets of a deployment, in Secrets Manager, never in a template or an environment
 * variable in clear:
 *
 * - the token key ring (signs resume and redirect tokens; `kid:secret,...`, shared/tokens.ts),
 *   rotated on a schedule by infra/rotation/handler.ts: [current, staged, previous], so a key is
 *   everywhere one period before it signs. After a rotation the listed ECS services roll, so
 *   every task reads the new ring at start (ECS injects it as STREAMHEAL_CLUSTER_SECRET);
 *   functions read it by ARN (STREAMHEAL_TOKEN_KEYS_SECRET_ARN) and cache it (5 min), far less
 *   than a period;
 * - the publish key (bearer key of POST /v1/publish), generated, rotated by hand together with
 *   the publishers that hold it (docs/deploy.md).
 */
import { Duration, Stack } from 'aws-cdk-lib';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { functionsDefaults, keyRingDefaults } from '../defaults.js';
import { functionBundling, functionSource, LAMBDA_RUNTIME } from './bundling.js';
import { acknowledge } from '../nag.js';
import { lambdaRole } from './lambdaRole.js';
import { logRetention } from './logRetention.js';

/** Variable that carries the key ring's ARN to code that reads it at run time (functions/tokens/keyRing.ts). */
export const KEY_RING_ARN_ENV = 'STREAMHEAL_TOKEN_KEYS_SECRET_ARN';

export interface RollTarget {
  readonly cluster: ecs.ICluster;
  /** The service's physical name (a plain string: the service itself depends on the secret). */
  readonly serviceName: string;
}

export interface TokenKeysProps {
  /** @default keyRingDefaults().rotationInterval (30 days) */
  readonly rotationInterval?: Duration;
  /** Services to roll after a rotation. @default none */
  readonly rollServices?: RollTarget[];
  /** @default keyRingDefaults().restartServicesOnRotation (true) */
  readonly restartServicesOnRotation?: boolean;
  /** @default functionsDefaults().logRetentionDays (30) */
  readonly logRetentionDays?: number;
  /** Bundling of the rotation function. @default functionBundling({ externalModules: ['@aws-sdk/client-ecs'] }) */
  readonly bundling?: nodejs.BundlingOptions;
}

export class TokenKeys extends Construct {
  readonly keyRing: secretsmanager.Secret;
  readonly publishKey: secretsmanager.Secret;
  readonly rotationFunction: nodejs.NodejsFunction;

  constructor(scope: Construct, id: string, props: TokenKeysProps = {}) {
    super(scope, id);
    const defaults = keyRingDefaults();
    // Letters and digits only: ',' and ':' separate keys and ids in the ring format.
    const generate = { passwordLength: 48, excludePunctuation: true, includeSpace: false };
    this.keyRing = new secretsmanager.Secret(this, 'KeyRing', {
      description:
        'streamheal token key ring (kid:secret,...; first signs). Rotated by infra/rotation.',
      generateSecretString: generate,
    });
    this.publishKey = new secretsmanager.Secret(this, 'PublishKey', {
      description: 'streamheal bearer key of POST /v1/publish',
      generateSecretString: generate,
    });
    acknowledge(
      this.publishKey,
      'AwsSolutions-SMG4',
      'The publish key is held by publishers outside AWS; rotating it on a schedule would cut them ' +
        'off. It is rotated by hand with them (docs/deploy.md, "Secrets").',
    );

    const restart = props.restartServicesOnRotation ?? defaults.restartServicesOnRotation;
    const roll = restart ? (props.rollServices ?? []) : [];
    const logGroup = new logs.LogGroup(this, 'RotationLogs', {
      retention: logRetention(props.logRetentionDays ?? functionsDefaults().logRetentionDays),
    });
    this.rotationFunction = new nodejs.NodejsFunction(this, 'Rotation', {
      ...functionSource('infra/rotation/handler.ts'),
      handler: 'handler',
      runtime: LAMBDA_RUNTIME,
      architecture: lambda.Architecture.ARM_64,
      memorySize: 256,
      timeout: Duration.seconds(30),
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        STREAMHEAL_ROLL_SERVICES: roll
          .map((target) => `${target.cluster.clusterName}/${target.serviceName}`)
          .join(','),
      },
      logGroup,
      role: lambdaRole(this, 'RotationRole', {
        logGroup,
        inVpc: false,
        description: 'streamheal key ring rotation',
      }),
      bundling: props.bundling ?? functionBundling({ externalModules: ['@aws-sdk/client-ecs'] }),
      description: 'streamheal token key ring rotation (infra/rotation/handler.ts)',
    });
    if (roll.length > 0) {
      const stack = Stack.of(this);
      this.rotationFunction.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['ecs:UpdateService'],
          resources: roll.map((target) =>
            stack.formatArn({
              service: 'ecs',
              resource: 'service',
              resourceName: `${target.cluster.clusterName}/${target.serviceName}`,
            }),
          ),
        }),
      );
    }
    this.keyRing.addRotationSchedule('Rotation', {
      rotationLambda: this.rotationFunction,
      automaticallyAfter: props.rotationInterval ?? defaults.rotationInterval,
      // The first rotation waits for the schedule: at creation time the services are still
      // being created and must not be rolled under CloudFormation.
      rotateImmediatelyOnUpdate: false,
    });
  }

  /** Read access to the key ring (for code that reads it by ARN), and the variable naming it. */
  grantKeyRingRead(grantee: iam.IGrantable): Record<string, string> {
    this.keyRing.grantRead(grantee);
    return { [KEY_RING_ARN_ENV]: this.keyRing.secretArn };
  }
}
