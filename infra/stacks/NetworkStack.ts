/**
 * Network: the VPC (public subnets for the load balancer and NAT, private ones for tasks,
 * functions and etcd), gateway endpoints for DynamoDB and S3, REJECT flow logs, and every
 * security group with its rules (constructs/Network.ts).
 */
import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { StreamhealNetwork, type StreamhealNetworkProps } from '../constructs/Network.js';

export type NetworkStackProps = StackProps & StreamhealNetworkProps;

export class NetworkStack extends Stack {
  readonly network: StreamhealNetwork;

  constructor(scope: Construct, id: string, props: NetworkStackProps) {
    super(scope, id, props);
    this.network = new StreamhealNetwork(this, 'Network', props);
  }
}
