import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { StreamhealNetwork } from '../../../infra/constructs/Network.js';
import { gatewayPorts } from '../../../infra/defaults.js';

interface Rule {
  IpProtocol: string;
  FromPort?: number;
  ToPort?: number;
  CidrIp?: string;
  SourceSecurityGroupId?: unknown;
  DestinationSecurityGroupId?: unknown;
  GroupId?: unknown;
}

function build(props: Partial<ConstructorParameters<typeof StreamhealNetwork>[2]> = {}) {
  const stack = new Stack(new App(), 'Net');
  const network = new StreamhealNetwork(stack, 'Network', { listenerPort: 443, ...props });
  const template = Template.fromStack(stack);
  const ref = (group: { securityGroupId: string }) =>
    stack.resolve(group.securityGroupId) as unknown;
  const groupLogicalId = (group: { node: { defaultChild?: unknown } }) =>
    stack.getLogicalId(group.node.defaultChild as never);
  /** Every ingress rule of a group: inline ones and separate AWS::EC2::SecurityGroupIngress. */
  const ingress = (group: Parameters<typeof groupLogicalId>[0] & { securityGroupId: string }) => {
    const json = template.toJSON().Resources;
    const inline = (json[groupLogicalId(group)].Properties.SecurityGroupIngress ?? []) as Rule[];
    const separate = Object.values(json)
      .filter((r: unknown) => (r as { Type: string }).Type === 'AWS::EC2::SecurityGroupIngress')
      .map((r: unknown) => (r as { Properties: Rule }).Properties)
      .filter((rule) => JSON.stringify(rule.GroupId) === JSON.stringify(ref(group)));
    return [...inline, ...separate];
  };
  return { stack, network, template, ingress, ref };
}

describe('StreamhealNetwork', () => {
  let built: ReturnType<typeof build>;
  beforeAll(() => {
    built = build();
  });

  it('lets only the control security group reach the gateway control port, and only the load balancer reach HTTP', () => {
    const { network, ingress, ref } = built;
    const ports = gatewayPorts();
    const rules = ingress(network.gatewaySecurityGroup);
    expect(rules).toHaveLength(2);
    const control = rules.filter((rule) => rule.FromPort === ports.control);
    expect(control).toEqual([
      expect.objectContaining({
        IpProtocol: 'tcp',
        FromPort: ports.control,
        ToPort: ports.control,
        SourceSecurityGroupId: ref(network.controlSecurityGroup),
      }),
    ]);
    const http = rules.filter((rule) => rule.FromPort === ports.http);
    expect(http).toEqual([
      expect.objectContaining({
        IpProtocol: 'tcp',
        ToPort: ports.http,
        SourceSecurityGroupId: ref(network.loadBalancerSecurityGroup),
      }),
    ]);
    for (const rule of rules) expect(rule.CidrIp).toBeUndefined();
  });

  it('opens the load balancer on the listener port only, and lets it out to gateway HTTP only', () => {
    const { network, ingress, template, stack } = built;
    expect(ingress(network.loadBalancerSecurityGroup)).toEqual([
      expect.objectContaining({
        IpProtocol: 'tcp',
        FromPort: 443,
        ToPort: 443,
        CidrIp: '0.0.0.0/0',
      }),
    ]);
    const group =
      template.toJSON().Resources[
        stack.getLogicalId(network.loadBalancerSecurityGroup.node.defaultChild as never)
      ].Properties;
    const egress = [
      ...(group.SecurityGroupEgress ?? []),
      ...Object.values(template.findResources('AWS::EC2::SecurityGroupEgress')).map(
        (r) => (r as { Properties: Rule }).Properties,
      ),
    ].filter((rule: Rule) => rule.CidrIp !== '255.255.255.255/32');
    expect(egress).toEqual([
      expect.objectContaining({ FromPort: gatewayPorts().http, ToPort: gatewayPorts().http }),
    ]);
  });

  it('narrows the listener to the given client CIDRs', () => {
    const { network, ingress } = build({ clientCidrs: ['203.0.113.0/24', '198.51.100.7/32'] });
    expect(
      ingress(network.loadBalancerSecurityGroup)
        .map((rule) => rule.CidrIp)
        .sort(),
    ).toEqual(['198.51.100.7/32', '203.0.113.0/24']);
  });

  it('has no etcd group unless asked; with etcd, clients from gateways and control, peers from itself', () => {
    expect(built.network.etcdSecurityGroup).toBeUndefined();
    const { network, ingress, ref } = build({ etcd: { clientPort: 2379, peerPort: 2380 } });
    const etcd = network.etcdSecurityGroup!;
    const rules = ingress(etcd);
    expect(rules).toHaveLength(3);
    expect(rules.filter((r) => r.FromPort === 2379).map((r) => r.SourceSecurityGroupId)).toEqual(
      expect.arrayContaining([
        ref(network.gatewaySecurityGroup),
        ref(network.controlSecurityGroup),
      ]),
    );
    expect(rules.filter((r) => r.FromPort === 2380).map((r) => r.SourceSecurityGroupId)).toEqual([
      ref(etcd),
    ]);
  });

  it('builds private subnets with egress, gateway endpoints for DynamoDB and S3, and REJECT flow logs', () => {
    const { template } = built;
    template.resourceCountIs('AWS::EC2::NatGateway', 1);
    template.resourceCountIs('AWS::EC2::VPCEndpoint', 2);
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'REJECT' });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
  });
});
