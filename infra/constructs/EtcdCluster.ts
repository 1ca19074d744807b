/**
 * A 3-member etcd cluster for `store=etcd`, on EC2: one Auto Scaling group of exactly one
 * instance per member, pinned to one private subnet (spread over the AZs), plus the member's
 * identity kept outside the instance: a network interface with a fixed private IP and an
 * encrypted gp3 EBS volume with its data. A replacement instance (failed status check, update)
 * attaches both at boot (etcdBoot.ts) and comes back as the same member with the same data.
 *
 * Why this shape and not ECS on EC2: etcd members are not interchangeable tasks. Each needs a
 * stable peer URL and its own persistent disk; ECS would need an EC2 capacity provider per
 * member, placement constraints, and an EBS attachment scheme of its own (Fargate and ECS-managed
 * EBS volumes are deleted with the task). An ASG of one gives self-replacement for free, and
 * the ENI + volume pair gives the stable identity.
 *
 * Updates replace one member at a time (the groups depend on each other in order, and each
 * signals CloudFormation only once its member is healthy again), so quorum holds through an
 * update. Client and peer traffic is plain HTTP inside the VPC, limited by security groups
 * (docs/deploy.md names enabling TLS as a hardening step).
 */
import { Duration, Fn, RemovalPolicy, Stack, Tags } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { etcdDefaults } from '../defaults.js';
import { acknowledge } from '../nag.js';
import { etcdBootScript } from './etcdBoot.js';
import type { Wiring } from './wiring.js';

export const ETCD_MEMBER_TAG = 'streamheal:etcd-cluster';

export interface EtcdClusterOptions {
  /** @default etcdDefaults().members (3) */
  readonly members?: number;
  /** @default etcdDefaults().instanceType ('t4g.small') */
  readonly instanceType?: string;
  /** @default etcdDefaults().volumeSizeGiB (20) */
  readonly volumeSizeGiB?: number;
  /** etcd release tag. @default etcdDefaults().version */
  readonly version?: string;
  /** SHA-256 of the release tarball. @default checked against the release's SHA256SUMS */
  readonly sha256?: string;
  /** Key prefix of everything streamheal writes. @default etcdDefaults().prefix ('streamheal/') */
  readonly prefix?: string;
  /** What happens to the data volumes when the stack is deleted. @default RemovalPolicy.SNAPSHOT */
  readonly volumeRemovalPolicy?: RemovalPolicy;
}

export interface EtcdClusterProps extends EtcdClusterOptions {
  readonly vpc: ec2.IVpc;
  readonly securityGroup: ec2.ISecurityGroup;
}

export class EtcdCluster extends Construct {
  readonly endpoints: string[];
  readonly groups: autoscaling.AutoScalingGroup[] = [];
  readonly role: iam.Role;
  readonly prefix: string;

  constructor(scope: Construct, id: string, props: EtcdClusterProps) {
    super(scope, id);
    const defaults = etcdDefaults();
    const stack = Stack.of(this);
    const members = props.members ?? defaults.members;
    if (members < 1 || members % 2 === 0) throw new Error('etcd needs an odd number of members');
    const instanceType = new ec2.InstanceType(props.instanceType ?? defaults.instanceType);
    const arm = instanceType.architecture === ec2.InstanceArchitecture.ARM_64;
    const subnets = props.vpc.selectSubnets({
      subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS,
    }).subnets;
    const clusterTag = `${stack.stackName}-${this.node.addr.slice(0, 8)}`;
    this.prefix = props.prefix ?? defaults.prefix;

    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: 'streamheal etcd members: attach their own ENI and volume, Session Manager',
      managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore')],
    });
    this.role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['ec2:DescribeVolumes', 'ec2:DescribeNetworkInterfaces'],
        resources: ['*'],
      }),
    );
    this.role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['cloudformation:SignalResource'],
        resources: [stack.stackId],
      }),
    );

    const placements = Array.from({ length: members }, (_, index) => {
      const subnet = subnets[index % subnets.length];
      if (!subnet) throw new Error('the VPC has no private subnets for etcd');
      const name = `m${index}`;
      const eni = new ec2.CfnNetworkInterface(this, `Interface${index}`, {
        subnetId: subnet.subnetId,
        groupSet: [props.securityGroup.securityGroupId],
        description: `streamheal etcd ${name}`,
      });
      const volume = new ec2.CfnVolume(this, `Data${index}`, {
        availabilityZone: subnet.availabilityZone,
        size: props.volumeSizeGiB ?? defaults.volumeSizeGiB,
        volumeType: 'gp3',
        encrypted: true,
      });
      volume.applyRemovalPolicy(props.volumeRemovalPolicy ?? RemovalPolicy.SNAPSHOT);
      for (const resource of [eni, volume]) Tags.of(resource).add(ETCD_MEMBER_TAG, clusterTag);
      return { index, name, subnet, eni, volume, ip: eni.attrPrimaryPrivateIpAddress };
    });
    // Attach exactly the members' volumes and interfaces, to instances of this cluster only
    // (instance ids are unknown until the group launches one; the tag names the cluster).
    const tagged = { StringEquals: { [`aws:ResourceTag/${ETCD_MEMBER_TAG}`]: clusterTag } };
    this.role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['ec2:AttachVolume', 'ec2:AttachNetworkInterface'],
        resources: [
          ...placements.map((p) =>
            stack.formatArn({ service: 'ec2', resource: 'volume', resourceName: p.volume.ref }),
          ),
          ...placements.map((p) =>
            stack.formatArn({
              service: 'ec2',
              resource: 'network-interface',
              resourceName: p.eni.ref,
            }),
          ),
          stack.formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' }),
        ],
        conditions: tagged,
      }),
    );
    acknowledge(
      this.role,
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*]',
      'Instance ids are unknown until the Auto Scaling group launches one; the statement is ' +
        'limited by the cluster tag condition, which every member instance carries.',
    );
    acknowledge(
      this.role,
      'AwsSolutions-IAM5[Resource::*]',
      'ec2:DescribeVolumes and ec2:DescribeNetworkInterfaces have no resource-level permissions; ' +
        'the boot script uses them to see whether its volume and interface are attached.',
    );
    acknowledge(
      this.role,
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]',
      'Session Manager access for operators instead of SSH (no key pairs, no open port 22); the ' +
        'AWS-maintained policy follows what the SSM agent needs.',
    );
    const peerPort = defaults.peerPort;
    const clientPort = defaults.clientPort;
    const initialCluster = Fn.join(
      ',',
      placements.map((p) => Fn.join('', [p.name, '=http://', p.ip, `:${peerPort}`])),
    );
    this.endpoints = placements.map((p) => Fn.join('', ['http://', p.ip, `:${clientPort}`]));

    let previous: autoscaling.AutoScalingGroup | undefined;
    for (const placement of placements) {
      const userData = ec2.UserData.forLinux();
      const template = new ec2.LaunchTemplate(this, `Template${placement.index}`, {
        machineImage: ec2.MachineImage.latestAmazonLinux2023({
          cpuType: arm ? ec2.AmazonLinuxCpuType.ARM_64 : ec2.AmazonLinuxCpuType.X86_64,
        }),
        instanceType,
        role: this.role,
        securityGroup: props.securityGroup,
        userData,
        requireImdsv2: true,
        detailedMonitoring: true,
        blockDevices: [
          {
            deviceName: '/dev/xvda',
            volume: ec2.BlockDeviceVolume.ebs(8, {
              encrypted: true,
              volumeType: ec2.EbsDeviceVolumeType.GP3,
            }),
          },
        ],
      });
      const group = new autoscaling.AutoScalingGroup(this, `Member${placement.index}`, {
        vpc: props.vpc,
        vpcSubnets: { subnets: [placement.subnet] },
        launchTemplate: template,
        minCapacity: 1,
        maxCapacity: 1,
        healthChecks: autoscaling.HealthChecks.ec2({ gracePeriod: Duration.minutes(5) }),
        signals: autoscaling.Signals.waitForAll({ timeout: Duration.minutes(15) }),
        groupMetrics: [autoscaling.GroupMetrics.all()],
        updatePolicy: autoscaling.UpdatePolicy.rollingUpdate({
          minInstancesInService: 0,
          maxBatchSize: 1,
          pauseTime: Duration.minutes(15),
        }),
      });
      Tags.of(group).add(ETCD_MEMBER_TAG, clusterTag, { applyToLaunchedInstances: true });
      acknowledge(
        group,
        'AwsSolutions-AS3',
        'A group of exactly one pinned etcd member; its launches and replacements show in the ' +
          'group activity history and as CloudFormation signals; the Observability stack alarms ' +
          'on a member out of service or failing status checks rather than on scaling events.',
      );
      Tags.of(group).add('Name', `streamheal-etcd-${placement.name}`, {
        applyToLaunchedInstances: true,
      });
      const groupResource = group.node.defaultChild as autoscaling.CfnAutoScalingGroup;
      userData.addCommands(
        ...etcdBootScript({
          name: placement.name,
          ip: placement.ip,
          networkInterfaceId: placement.eni.ref,
          volumeId: placement.volume.ref,
          initialCluster,
          clusterToken: clusterTag,
          version: props.version ?? defaults.version,
          architecture: arm ? 'arm64' : 'amd64',
          clientPort,
          peerPort,
          ...(props.sha256 === undefined ? {} : { sha256: props.sha256 }),
          signal: {
            stack: stack.stackName,
            resource: stack.getLogicalId(groupResource),
            region: stack.region,
          },
        }),
      );
      // One member at a time: creation in order, and an update never takes two down at once.
      if (previous) group.node.addDependency(previous);
      previous = group;
      this.groups.push(group);
    }
  }

  /** The variables the etcd store and bus adapters read (no IAM: access is by network). */
  get wiring(): Wiring {
    return {
      environment: {
        STREAMHEAL_STORE: 'etcd',
        STREAMHEAL_BUS: 'etcd',
        STREAMHEAL_ETCD_ENDPOINTS: Fn.join(',', this.endpoints),
        STREAMHEAL_ETCD_PREFIX: this.prefix,
      },
      grant: () => undefined,
    };
  }
}
