import { spawnSync } from 'node:child_process';
import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { etcdBootScript } from '../../../infra/constructs/etcdBoot.js';
import { ETCD_MEMBER_TAG } from '../../../infra/constructs/EtcdCluster.js';
import { resourcesOf, synthStreamheal, type Synthesized } from '../support/synth.js';

const boot = {
  name: 'm1',
  ip: '10.40.32.11',
  networkInterfaceId: 'eni-0123456789abcdef0',
  volumeId: 'vol-0123456789abcdef0',
  initialCluster:
    'm0=http://10.40.32.10:2380,m1=http://10.40.32.11:2380,m2=http://10.40.48.12:2380',
  clusterToken: 'Streamheal-State-abc',
  version: 'v3.5.17',
  architecture: 'arm64' as const,
  clientPort: 2379,
  peerPort: 2380,
  signal: { stack: 'Streamheal-State', resource: 'EtcdMember1ASG', region: 'eu-west-1' },
};

describe('EtcdCluster', () => {
  let synth: Synthesized;
  beforeAll(() => {
    synth = synthStreamheal('etcd');
  });

  it('runs three members, each an Auto Scaling group of exactly one instance in its own subnet', () => {
    const template = synth.template(synth.stacks.state);
    const groups = resourcesOf(template, 'AWS::AutoScaling::AutoScalingGroup');
    expect(groups).toHaveLength(3);
    for (const [, group] of groups) {
      expect(group.Properties).toMatchObject({ MinSize: '1', MaxSize: '1' });
      expect((group.Properties!.VPCZoneIdentifier as unknown[]).length).toBe(1);
      expect(group).toMatchObject({
        CreationPolicy: { ResourceSignal: { Count: 1 } },
        UpdatePolicy: {
          AutoScalingRollingUpdate: {
            MinInstancesInService: 0,
            MaxBatchSize: 1,
            WaitOnResourceSignals: true,
          },
        },
      });
    }
    const subnets = groups.map(([, g]) => JSON.stringify(g.Properties!.VPCZoneIdentifier));
    // Environment-agnostic: two AZs, so members 0 and 2 share one; distinct from member 1.
    expect(subnets[0]).not.toEqual(subnets[1]);
  });

  it('replaces one member at a time: each group waits for the previous one', () => {
    const template = synth.template(synth.stacks.state).toJSON();
    const groups = synth.stacks.state.etcd!.groups.map((g) =>
      synth.stacks.state.getLogicalId(g.node.defaultChild as never),
    );
    expect(template.Resources[groups[1]!].DependsOn).toEqual(expect.arrayContaining([groups[0]]));
    expect(template.Resources[groups[2]!].DependsOn).toEqual(expect.arrayContaining([groups[1]]));
  });

  it('keeps each member identity outside the instance: an encrypted gp3 volume and a network interface', () => {
    const template = synth.template(synth.stacks.state);
    template.resourceCountIs('AWS::EC2::Volume', 3);
    template.allResourcesProperties('AWS::EC2::Volume', {
      VolumeType: 'gp3',
      Encrypted: true,
      Size: 20,
      Tags: Match.arrayWith([Match.objectLike({ Key: ETCD_MEMBER_TAG })]),
    });
    template.allResources('AWS::EC2::Volume', { DeletionPolicy: 'Snapshot' });
    template.resourceCountIs('AWS::EC2::NetworkInterface', 3);
    template.allResourcesProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        MetadataOptions: { HttpTokens: 'required' },
        Monitoring: { Enabled: true },
        BlockDeviceMappings: [Match.objectLike({ Ebs: Match.objectLike({ Encrypted: true }) })],
      }),
    });
  });

  it('lets members attach only their own volumes and interfaces, to instances of this cluster', () => {
    const role = synth.stacks.state.etcd!.role;
    const policy = JSON.stringify(
      synth.template(synth.stacks.state).findResources('AWS::IAM::Policy'),
    );
    expect(policy).toContain('ec2:AttachVolume');
    expect(policy).toContain(`aws:ResourceTag/${ETCD_MEMBER_TAG}`);
    expect(policy).not.toMatch(/volume\/\*/);
    expect(policy).not.toMatch(/network-interface\/\*/);
    expect(role).toBeDefined();
  });

  it('hands gateways and the orchestrator the three client endpoints', () => {
    const environment = synth.stacks.state.resolve(
      synth.stacks.state.etcd!.wiring.environment,
    ) as Record<string, unknown>;
    expect(environment).toMatchObject({
      STREAMHEAL_STORE: 'etcd',
      STREAMHEAL_ETCD_PREFIX: 'streamheal/',
    });
    expect(JSON.stringify(environment.STREAMHEAL_ETCD_ENDPOINTS).match(/:2379/g)).toHaveLength(3);
  });

  it('boots with a script bash accepts, binding etcd to the member address and verifying the release', () => {
    const script = ['#!/bin/bash', ...etcdBootScript(boot)].join('\n');
    const checked = spawnSync('bash', ['-n'], { input: script, encoding: 'utf8' });
    expect(checked.stderr).toBe('');
    expect(checked.status).toBe(0);
    expect(script).toContain('--listen-peer-urls http://10.40.32.11:2380');
    expect(script).toContain('--advertise-client-urls http://10.40.32.11:2379');
    expect(script).toContain(`--initial-cluster ${boot.initialCluster}`);
    expect(script).toContain('sha256sum -c -');
    expect(script).toContain('etcd-v3.5.17-linux-arm64.tar.gz');
    expect(script).toContain('systemctl start --no-block etcd');
    const pinned = etcdBootScript({ ...boot, sha256: 'a'.repeat(64) }).join('\n');
    expect(pinned).toContain(`${'a'.repeat(64)}  /tmp/etcd-v3.5.17-linux-arm64.tar.gz`);
    expect(pinned).not.toContain('SHA256SUMS');
  });

  it('puts the boot script into every launch template', () => {
    const templates = resourcesOf(synth.template(synth.stacks.state), 'AWS::EC2::LaunchTemplate');
    for (const [, template] of templates) {
      const userData = JSON.stringify(template.Properties);
      expect(userData).toContain('attach-network-interface');
      expect(userData).toContain('cfn-signal');
    }
  });
});
