/**
 * The VPC and every security group of the deployment, with all their rules in one place: who
 * may talk to whom is then readable (and testable) from one construct, and stacks that hold the
 * resources never reference each other's groups in a cycle.
 *
 *   clients --listener--> load balancer --http--> gateways
 *   control functions / orchestrator --control port (gRPC)--> gateways
 *   gateways, control --etcd client port--> etcd members <--peer port--> etcd members
 */
import { Stack, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { gatewayPorts, networkDefaults, type GatewayPorts } from '../defaults.js';
import { acknowledge } from '../nag.js';
import { logRetention } from './logRetention.js';

export interface StreamhealNetworkProps {
  /** Port the load balancer listens on for clients (443 with TLS, 80 without). */
  readonly listenerPort: number;
  /** @default gatewayPorts() (HTTP 8080, gRPC control 9090) */
  readonly ports?: GatewayPorts;
  /** IPv4 CIDRs allowed to reach the listener. @default ['0.0.0.0/0'] (a public push endpoint) */
  readonly clientCidrs?: string[];
  /** @default networkDefaults().cidr ('10.40.0.0/16') */
  readonly cidr?: string;
  /** @default networkDefaults(environmentKnown).maxAzs (2 environment-agnostic, 3 otherwise) */
  readonly maxAzs?: number;
  /** Explicit AZ names; needs the stack's region. @default chosen by maxAzs */
  readonly availabilityZones?: string[];
  /** @default networkDefaults().natGateways (1) */
  readonly natGateways?: number;
  /** @default networkDefaults().flowLogRetentionDays (30) */
  readonly flowLogRetentionDays?: number;
  /** The etcd ports, when the deployment runs its own etcd cluster. @default no etcd group */
  readonly etcd?: { readonly clientPort: number; readonly peerPort: number };
}

export class StreamhealNetwork extends Construct {
  readonly vpc: ec2.Vpc;
  /** On the load balancer: clients in, gateways' HTTP port out. */
  readonly loadBalancerSecurityGroup: ec2.SecurityGroup;
  /** On gateway tasks: HTTP from the load balancer, the control port from `controlSecurityGroup`. */
  readonly gatewaySecurityGroup: ec2.SecurityGroup;
  /** On the control functions (or the orchestrator): the only source allowed on the control port. */
  readonly controlSecurityGroup: ec2.SecurityGroup;
  /** On etcd members, when there are any. */
  readonly etcdSecurityGroup: ec2.SecurityGroup | undefined;
  readonly ports: GatewayPorts;

  constructor(scope: Construct, id: string, props: StreamhealNetworkProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const environmentKnown =
      !Token.isUnresolved(stack.region) && !Token.isUnresolved(stack.account);
    const defaults = networkDefaults(environmentKnown);
    this.ports = props.ports ?? gatewayPorts();

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr(props.cidr ?? defaults.cidr),
      ...(props.availabilityZones
        ? { availabilityZones: props.availabilityZones }
        : { maxAzs: props.maxAzs ?? defaults.maxAzs }),
      natGateways: props.natGateways ?? defaults.natGateways,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 22 },
        { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
      ],
      // Gateway endpoints cost nothing and keep table traffic and image layers (S3) off the NAT.
      gatewayEndpoints: {
        DynamoDb: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB },
        S3: { service: ec2.GatewayVpcEndpointAwsService.S3 },
      },
      restrictDefaultSecurityGroup: false,
    });
    const flowLogs = new logs.LogGroup(this, 'FlowLogs', {
      retention: logRetention(props.flowLogRetentionDays ?? defaults.flowLogRetentionDays),
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs),
      trafficType: ec2.FlowLogTrafficType.REJECT,
    });

    this.loadBalancerSecurityGroup = new ec2.SecurityGroup(this, 'LoadBalancer', {
      vpc: this.vpc,
      description: 'streamheal load balancer: clients in, gateway HTTP out',
      allowAllOutbound: false,
    });
    this.gatewaySecurityGroup = new ec2.SecurityGroup(this, 'Gateway', {
      vpc: this.vpc,
      description:
        'streamheal gateways: HTTP from the load balancer, gRPC control from the control plane',
      allowAllOutbound: true,
    });
    this.controlSecurityGroup = new ec2.SecurityGroup(this, 'Control', {
      vpc: this.vpc,
      description: 'streamheal control plane (functions or orchestrator): calls gateways',
      allowAllOutbound: true,
    });

    for (const cidr of props.clientCidrs ?? ['0.0.0.0/0']) {
      this.loadBalancerSecurityGroup.addIngressRule(
        ec2.Peer.ipv4(cidr),
        ec2.Port.tcp(props.listenerPort),
        'clients to the listener',
      );
    }
    acknowledge(
      this.loadBalancerSecurityGroup,
      'AwsSolutions-EC23',
      'A public push endpoint: clients anywhere connect to the one listener port, nothing else is ' +
        'open; narrow it with the clientCidrs context when clients are known.',
    );
    this.loadBalancerSecurityGroup.addEgressRule(
      this.gatewaySecurityGroup,
      ec2.Port.tcp(this.ports.http),
      'load balancer to gateway HTTP (traffic and health checks)',
    );
    this.gatewaySecurityGroup.addIngressRule(
      this.loadBalancerSecurityGroup,
      ec2.Port.tcp(this.ports.http),
      'load balancer to gateway HTTP (traffic and health checks)',
    );
    this.gatewaySecurityGroup.addIngressRule(
      this.controlSecurityGroup,
      ec2.Port.tcp(this.ports.control),
      'control plane to the gateway gRPC control port',
    );

    if (props.etcd) {
      const etcd = new ec2.SecurityGroup(this, 'Etcd', {
        vpc: this.vpc,
        description:
          'streamheal etcd members: clients from gateways and control, peers from each other',
        allowAllOutbound: true,
      });
      for (const [peer, what] of [
        [this.gatewaySecurityGroup, 'gateways'],
        [this.controlSecurityGroup, 'control plane'],
      ] as const) {
        etcd.addIngressRule(peer, ec2.Port.tcp(props.etcd.clientPort), `${what} to etcd clients`);
      }
      etcd.addIngressRule(etcd, ec2.Port.tcp(props.etcd.peerPort), 'etcd peers');
      this.etcdSecurityGroup = etcd;
    } else {
      this.etcdSecurityGroup = undefined;
    }
  }
}
