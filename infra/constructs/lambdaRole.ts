/**
 * An execution role for one of the app's Lambdas with only what running needs: writing to its
 * own log group, and, in a VPC, managing its network interfaces. AWS managed policies
 * (AWSLambdaBasicExecutionRole, AWSLambdaVPCAccessExecutionRole) would grant log writes on every
 * log group of the account.
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { acknowledge } from '../nag.js';

/** The ENI actions Lambda needs in a VPC; EC2 offers no resource-level permissions for them. */
export const VPC_ENI_ACTIONS = [
  'ec2:CreateNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSubnets',
  'ec2:DeleteNetworkInterface',
  'ec2:AssignPrivateIpAddresses',
  'ec2:UnassignPrivateIpAddresses',
];

export function lambdaRole(
  scope: Construct,
  id: string,
  options: { logGroup: logs.ILogGroup; inVpc: boolean; description: string },
): iam.Role {
  const role = new iam.Role(scope, id, {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: options.description,
  });
  role.addToPolicy(
    new iam.PolicyStatement({
      actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      // A log group's ARN attribute ends in ":*", which covers its streams.
      resources: [options.logGroup.logGroupArn],
    }),
  );
  if (options.inVpc) {
    role.addToPolicy(new iam.PolicyStatement({ actions: VPC_ENI_ACTIONS, resources: ['*'] }));
  }
  acknowledge(
    role,
    'AwsSolutions-IAM5[Resource::*]',
    'Resource "*" only for actions without resource-level permissions: X-Ray PutTraceSegments / ' +
      'PutTelemetryRecords (active tracing), Lambda VPC network interface management, and ' +
      'Secrets Manager GetRandomPassword (rotation). Data actions name their resources.',
  );
  return role;
}
