/**
 * What the gateway and orchestrator task definitions share: the container's liveness check and
 * the cdk-nag findings every such task definition carries.
 */
import { Duration } from 'aws-cdk-lib';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import { acknowledge } from '../nag.js';

/** Liveness on `/healthz` of `port`: the image has no curl, so Node's fetch asks. */
export function healthzCheck(port: number): ecs.HealthCheck {
  return {
    command: [
      'CMD',
      'node',
      '-e',
      `fetch('http://127.0.0.1:${port}/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`,
    ],
    interval: Duration.seconds(10),
    timeout: Duration.seconds(3),
    retries: 3,
    startPeriod: Duration.seconds(15),
  };
}

/**
 * The ECR token permission of the execution role, and the plain environment (what it holds is
 * `environment`; secrets come through ECS `secrets`).
 */
export function acknowledgeTaskDefinition(
  taskDefinition: ecs.TaskDefinition,
  environment: string,
): void {
  acknowledge(
    taskDefinition.obtainExecutionRole(),
    'AwsSolutions-IAM5[Resource::*]',
    'ecr:GetAuthorizationToken has no resource-level permissions; the image pulls themselves ' +
      '(BatchGetImage, GetDownloadUrlForLayer) name the image repository.',
  );
  acknowledge(taskDefinition, 'AwsSolutions-ECS2', environment);
}
