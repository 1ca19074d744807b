import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { EVENT_BUS_ENV } from '../../../infra/constructs/ControlBus.js';
import { GATEWAY_CONTAINER } from '../../../infra/constructs/GatewayService.js';
import { TABLE_ENV } from '../../../infra/constructs/StreamhealTables.js';
import { drainDefaults, gatewayPorts, nlbHealthCheckDefaults } from '../../../infra/defaults.js';
import { resourcesOf, synthStreamheal, type Synthesized } from '../support/synth.js';

interface ContainerDefinition {
  Name: string;
  Environment?: Array<{ Name: string; Value: unknown }>;
  Secrets?: Array<{ Name: string; ValueFrom: unknown }>;
  StopTimeout?: number;
  PortMappings?: Array<{ ContainerPort: number }>;
  Essential?: boolean;
  Command?: string[];
}

function containers(synth: Synthesized): ContainerDefinition[] {
  const template = synth.template(synth.stacks.gateways);
  const [[, task]] = resourcesOf(template, 'AWS::ECS::TaskDefinition') as [
    [string, { Properties: { ContainerDefinitions: ContainerDefinition[] } }],
  ];
  return task.Properties.ContainerDefinitions;
}

function env(container: ContainerDefinition): Record<string, unknown> {
  return Object.fromEntries((container.Environment ?? []).map((e) => [e.Name, e.Value]));
}

describe('GatewayService', () => {
  let dynamo: Synthesized;
  let etcd: Synthesized;
  beforeAll(() => {
    dynamo = synthStreamheal('dynamodb');
    etcd = synthStreamheal('etcd');
  });

  it('health-checks /readyz over HTTP as fast as NLB allows, keeps connections through deregistration and unhealthiness', () => {
    const health = nlbHealthCheckDefaults();
    expect([health.interval.toSeconds(), health.timeout.toSeconds()]).toEqual([5, 2]);
    expect([health.healthyThresholdCount, health.unhealthyThresholdCount]).toEqual([2, 2]);
    const template = dynamo.template(dynamo.stacks.gateways);
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      Protocol: 'TCP',
      Port: gatewayPorts().http,
      TargetType: 'ip',
      HealthCheckProtocol: 'HTTP',
      HealthCheckPath: '/readyz',
      HealthCheckIntervalSeconds: 5,
      HealthCheckTimeoutSeconds: 2,
      HealthyThresholdCount: 2,
      UnhealthyThresholdCount: 2,
      TargetGroupAttributes: Match.arrayWith([
        { Key: 'deregistration_delay.timeout_seconds', Value: '15' },
        { Key: 'preserve_client_ip.enabled', Value: 'true' },
        { Key: 'deregistration_delay.connection_termination.enabled', Value: 'false' },
        { Key: 'target_health_state.unhealthy.connection_termination.enabled', Value: 'false' },
      ]),
    });
  });

  it('gives SIGTERM a drain budget that ends before the stop timeout, and the stop timeout Fargate allows', () => {
    const drain = drainDefaults();
    const [gateway] = containers(dynamo).filter((c) => c.Name === GATEWAY_CONTAINER);
    expect(gateway!.StopTimeout).toBe(120);
    const drainMs = Number(env(gateway!).STREAMHEAL_DRAIN_MS);
    expect(drainMs).toBe(drain.drainTimeout.toMilliseconds());
    expect(drainMs).toBeLessThan(gateway!.StopTimeout! * 1000);
    expect(drainMs).toBeGreaterThan(drain.deregistrationDelay.toMilliseconds());
  });

  it('runs on Fargate ARM64, deploys make-before-break with a rollback circuit breaker', () => {
    const template = dynamo.template(dynamo.stacks.gateways);
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      RequiresCompatibilities: ['FARGATE'],
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
      Cpu: '1024',
      Memory: '2048',
    });
    template.hasResourceProperties('AWS::ECS::Service', {
      LaunchType: 'FARGATE',
      ServiceName: 'streamheal-gateway',
      DesiredCount: 2,
      DeploymentConfiguration: {
        MinimumHealthyPercent: 100,
        MaximumPercent: 200,
        DeploymentCircuitBreaker: { Enable: true, Rollback: true },
      },
      NetworkConfiguration: {
        AwsvpcConfiguration: Match.objectLike({ AssignPublicIp: 'DISABLED' }),
      },
    });
  });

  it('listens with TCP on 80 by default and TLS on 443 with a certificate', () => {
    dynamo
      .template(dynamo.stacks.gateways)
      .hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
        Protocol: 'TCP',
        Port: 80,
      });
    const arn = 'arn:aws:acm:eu-west-1:111122223333:certificate/abc';
    const tls = synthStreamheal('dynamodb', { props: { gateway: { certificateArn: arn } } });
    tls
      .template(tls.stacks.gateways)
      .hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
        Protocol: 'TLS',
        Port: 443,
        Certificates: [{ CertificateArn: arn }],
      });
    const outputs = tls.template(tls.stacks.gateways).findOutputs('Url');
    expect(JSON.stringify(Object.values(outputs)[0]!.Value)).toContain('https://');
  });

  it('gives the gateways the public URL moves redirect to: the load balancer, in its listener’s scheme', () => {
    const publicUrl = (synth: Synthesized) => {
      const [gateway] = containers(synth).filter((c) => c.Name === GATEWAY_CONTAINER);
      return env(gateway!).STREAMHEAL_PUBLIC_URL;
    };
    const url = (synth: Synthesized) =>
      Object.values(synth.template(synth.stacks.gateways).findOutputs('Url'))[0]!.Value;
    const dnsName = { 'Fn::GetAtt': [expect.stringMatching(/LoadBalancer/), 'DNSName'] };
    // TCP listener on 80: http:// (ws://) and the load balancer's name, the same as the output.
    expect(publicUrl(dynamo)).toEqual({ 'Fn::Join': ['', ['http://', dnsName]] });
    expect(url(dynamo)).toEqual(publicUrl(dynamo));
    expect(publicUrl(etcd)).toEqual({ 'Fn::Join': ['', ['http://', dnsName]] });
    // TLS on another port: https:// (wss://) and the port.
    const arn = 'arn:aws:acm:eu-west-1:111122223333:certificate/abc';
    const tls = synthStreamheal('dynamodb', {
      props: { gateway: { certificateArn: arn, listenerPort: 8443 } },
    });
    expect(publicUrl(tls)).toEqual({ 'Fn::Join': ['', ['https://', dnsName, ':8443']] });
    tls
      .template(tls.stacks.gateways)
      .hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
        Protocol: 'TLS',
        Port: 8443,
      });
    // The name the certificate is for, when given (checked and normalised as the gateway does).
    const named = synthStreamheal('dynamodb', {
      props: { gateway: { certificateArn: arn, publicUrl: 'wss://push.example.com/' } },
    });
    expect(publicUrl(named)).toBe('wss://push.example.com');
    expect(url(named)).toBe('wss://push.example.com');
    expect(() =>
      synthStreamheal('dynamodb', { props: { gateway: { publicUrl: 'push.example.com' } } }),
    ).toThrow(/is not a URL/);
  });

  it('scales on CPU and on connections per task (active flows / healthy targets)', () => {
    const template = dynamo.template(dynamo.stacks.gateways);
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 2,
      MaxCapacity: 10,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: 60,
        PredefinedMetricSpecification: { PredefinedMetricType: 'ECSServiceAverageCPUUtilization' },
      }),
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: 5000,
        CustomizedMetricSpecification: {
          Metrics: Match.arrayWith([
            Match.objectLike({
              Id: 'flows',
              MetricStat: Match.objectLike({
                Metric: Match.objectLike({
                  MetricName: 'ActiveFlowCount',
                  Namespace: 'AWS/NetworkELB',
                }),
              }),
            }),
            Match.objectLike({
              Id: 'healthy',
              MetricStat: Match.objectLike({
                Metric: Match.objectLike({ MetricName: 'HealthyHostCount' }),
              }),
            }),
            Match.objectLike({ Id: 'perTask', Expression: 'flows / healthy', ReturnData: true }),
          ]),
        },
      }),
    });
  });

  it('wires the store and the bus into the environment, and the keys only as Secrets Manager secrets', () => {
    const [gateway] = containers(dynamo).filter((c) => c.Name === GATEWAY_CONTAINER);
    const variables = env(gateway!);
    expect(variables).toMatchObject({
      STREAMHEAL_HOST: '0.0.0.0',
      STREAMHEAL_PORT: String(gatewayPorts().http),
      STREAMHEAL_CONTROL_PORT: String(gatewayPorts().control),
      STREAMHEAL_STORE: 'dynamodb',
      STREAMHEAL_BUS: 'eventbridge',
    });
    for (const name of [...Object.values(TABLE_ENV), EVENT_BUS_ENV]) {
      expect(variables[name], name).toBeDefined();
    }
    expect(Object.keys(variables)).not.toContain('STREAMHEAL_CLUSTER_SECRET');
    expect(Object.keys(variables)).not.toContain('STREAMHEAL_PUBLISH_KEY');
    expect(gateway!.Secrets!.map((s) => s.Name).sort()).toEqual([
      'STREAMHEAL_CLUSTER_SECRET',
      'STREAMHEAL_PUBLISH_KEY',
    ]);
    expect(gateway!.PortMappings!.map((p) => p.ContainerPort).sort()).toEqual(
      [gatewayPorts().http, gatewayPorts().control].sort(),
    );

    const [etcdGateway] = containers(etcd).filter((c) => c.Name === GATEWAY_CONTAINER);
    const etcdVariables = env(etcdGateway!);
    expect(etcdVariables).toMatchObject({ STREAMHEAL_STORE: 'etcd', STREAMHEAL_BUS: 'etcd' });
    expect(JSON.stringify(etcdVariables.STREAMHEAL_ETCD_ENDPOINTS)).toContain(':2379');
    for (const name of Object.values(TABLE_ENV)) expect(etcdVariables[name]).toBeUndefined();
  });

  it('grants the task role table access with dynamodb and nothing of the tables with etcd', () => {
    const policies = (s: Synthesized) =>
      JSON.stringify(s.template(s.stacks.gateways).findResources('AWS::IAM::Policy'));
    expect(policies(dynamo)).toContain('dynamodb:PutItem');
    expect(policies(dynamo)).toContain('events:PutEvents');
    expect(policies(etcd)).not.toContain('dynamodb:');
  });

  it('runs an OpenTelemetry collector beside the gateway when asked, and not otherwise', () => {
    expect(containers(dynamo).map((c) => c.Name)).toEqual([GATEWAY_CONTAINER]);
    const withCollector = synthStreamheal('dynamodb', {
      props: { gateway: { otelCollector: true } },
    });
    const defs = containers(withCollector);
    const collector = defs.find((c) => c.Name === 'otel-collector');
    expect(collector?.Essential).toBe(false);
    const config = JSON.stringify(env(collector!).AOT_CONFIG_CONTENT);
    expect(config).toContain(`127.0.0.1:${gatewayPorts().http}`);
    expect(config).toContain('awsxray');
    const gateway = defs.find((c) => c.Name === GATEWAY_CONTAINER)!;
    expect(env(gateway).OTEL_EXPORTER_OTLP_ENDPOINT).toBe('http://127.0.0.1:4318');
  });

  it('keeps logs for the configured retention', () => {
    dynamo
      .template(dynamo.stacks.gateways)
      .allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: Match.anyValue() });
  });
});
