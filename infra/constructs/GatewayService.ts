/**
 * The gateway fleet: the container image built from the repository's Dockerfile, an ECS Fargate
 * service (ARM64 by default) behind a Network Load Balancer, autoscaling on CPU and on
 * connections per task, and a stop sequence that drains by moving sessions:
 *
 * 1. ECS deregisters the task; NLB stops opening new flows to it within `deregistrationDelay`.
 *    Connection termination on deregistration stays off, so open WebSockets and SSE streams
 *    carry on past the delay.
 * 2. ECS sends SIGTERM. The gateway has `STREAMHEAL_DRAIN_MS` to move its sessions
 *    make-before-break (redirected to `STREAMHEAL_PUBLIC_URL`, clients open a new connection
 *    through the load balancer, which only picks registered targets, and resume before the old
 *    one closes), then exits.
 * 3. ECS sends SIGKILL at `stopTimeout` (Fargate's maximum, 120 s) if it is still running.
 *
 * Deployments start new tasks before stopping old ones (100 % / 200 %), and a circuit breaker
 * rolls a failing deployment back. An unhealthy target keeps its connections too (NLB only stops
 * sending it new ones): moving them is the control plane's job, not the load balancer's reset.
 */
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import {
  drainDefaults,
  gatewayDefaults,
  gatewayPorts,
  nlbHealthCheckDefaults,
  type CpuArchitectureName,
  type DrainDefaults,
  type GatewayPorts,
  type HealthCheckDefaults,
} from '../defaults.js';
import { parsePublicUrl } from '../../shared/redirectTokens.js';
import { REPO_ROOT } from '../paths.js';
import { logRetention } from './logRetention.js';
import { acknowledgeTaskDefinition, healthzCheck } from './nodeTask.js';
import { acknowledge } from '../nag.js';
import { collectorConfig, COLLECTOR_OTLP_HTTP } from './otelCollector.js';
import type { Wiring } from './wiring.js';

/** Name of the gateway container in the task definition. */
export const GATEWAY_CONTAINER = 'gateway';
export const COLLECTOR_CONTAINER = 'otel-collector';

export interface GatewayServiceOptions {
  /** Physical ECS service name (also what key rotation rolls). @default 'streamheal-gateway' */
  readonly serviceName?: string;
  /** ACM certificate for a TLS listener on 443. @default none: a TCP listener on 80 */
  readonly certificateArn?: string;
  /** @default 443 with a certificate, 80 without */
  readonly listenerPort?: number;
  /**
   * The URL clients reach the gateways at: the stack's `Url` output, and the gateways'
   * STREAMHEAL_PUBLIC_URL, where moved sessions are redirected (with tokens any other gateway
   * accepts) since clients cannot reach a task's private address. Set it to the domain name
   * the certificate is for (`https://push.example.com`) when there is one: the load balancer's
   * own name does not match the certificate. Checked like the gateway checks it.
   * @default `https://<load balancer DNS name>` with a certificate, `http://...` without, plus
   * `:<listenerPort>` when not 443 / 80
   */
  readonly publicUrl?: string;
  /** @default gatewayDefaults().cpu (1024) */
  readonly cpu?: number;
  /** @default gatewayDefaults().memoryMiB (2048) */
  readonly memoryMiB?: number;
  /** @default gatewayDefaults().cpuArchitecture ('arm64') */
  readonly cpuArchitecture?: CpuArchitectureName;
  /** @default gatewayDefaults().desiredCount (2) */
  readonly desiredCount?: number;
  /** @default gatewayDefaults().minCapacity (2) */
  readonly minCapacity?: number;
  /** @default gatewayDefaults().maxCapacity (10) */
  readonly maxCapacity?: number;
  /** @default gatewayDefaults().targetCpuPercent (60) */
  readonly targetCpuPercent?: number;
  /** @default gatewayDefaults().targetConnectionsPerTask (5000) */
  readonly targetConnectionsPerTask?: number;
  /** @default gatewayDefaults().scaleInCooldown (5 min) */
  readonly scaleInCooldown?: Duration;
  /** @default gatewayDefaults().scaleOutCooldown (1 min) */
  readonly scaleOutCooldown?: Duration;
  /** @default nlbHealthCheckDefaults() (/readyz every 5 s, 2 s timeout, 2 and 2) */
  readonly healthCheck?: Partial<HealthCheckDefaults>;
  /** @default drainDefaults() (15 s deregistration, 105 s drain, 120 s stop timeout) */
  readonly drain?: Partial<DrainDefaults>;
  /** Run an OpenTelemetry collector beside each gateway. @default gatewayDefaults().otelCollector (false) */
  readonly otelCollector?: boolean;
  /** @default gatewayDefaults().otelCollectorImage */
  readonly otelCollectorImage?: string;
  /** @default gatewayDefaults().logRetentionDays (30) */
  readonly logRetentionDays?: number;
  /** More plain variables for the gateway container. @default {} */
  readonly environment?: Record<string, string>;
}

export interface GatewayServiceProps extends GatewayServiceOptions {
  readonly vpc: ec2.IVpc;
  readonly cluster: ecs.ICluster;
  readonly gatewaySecurityGroup: ec2.ISecurityGroup;
  readonly loadBalancerSecurityGroup: ec2.ISecurityGroup;
  /** @default gatewayPorts() */
  readonly ports?: GatewayPorts;
  /** The state store and the event bus: their variables and grants. */
  readonly wiring: Wiring;
  readonly keyRing: secretsmanager.ISecret;
  readonly publishKey: secretsmanager.ISecret;
  /** @default built from the repository's Dockerfile for `cpuArchitecture` */
  readonly image?: ecs.ContainerImage;
}

export class GatewayService extends Construct {
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly container: ecs.ContainerDefinition;
  readonly loadBalancer: elbv2.NetworkLoadBalancer;
  readonly listener: elbv2.NetworkListener;
  readonly targetGroup: elbv2.NetworkTargetGroup;
  readonly scalableTarget: appscaling.ScalableTarget;
  readonly logGroup: logs.LogGroup;
  readonly serviceName: string;
  /**
   * The URL clients use (`<publicUrl>/v1/ws` and friends start here), also the gateways'
   * STREAMHEAL_PUBLIC_URL.
   */
  readonly publicUrl: string;
  readonly minCapacity: number;

  constructor(scope: Construct, id: string, props: GatewayServiceProps) {
    super(scope, id);
    const defaults = gatewayDefaults();
    const ports = props.ports ?? gatewayPorts();
    const drain = { ...drainDefaults(), ...props.drain };
    const health = { ...nlbHealthCheckDefaults(), ...props.healthCheck };
    const architecture = props.cpuArchitecture ?? defaults.cpuArchitecture;
    const tls = props.certificateArn !== undefined;
    const listenerPort = props.listenerPort ?? (tls ? 443 : 80);
    this.serviceName = props.serviceName ?? 'streamheal-gateway';
    this.minCapacity = props.minCapacity ?? defaults.minCapacity;
    if (drain.drainTimeout.toSeconds() >= drain.stopTimeout.toSeconds()) {
      throw new Error('the drain timeout must end before the stop timeout');
    }

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logRetention(props.logRetentionDays ?? defaults.logRetentionDays),
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu ?? defaults.cpu,
      memoryLimitMiB: props.memoryMiB ?? defaults.memoryMiB,
      runtimePlatform: {
        cpuArchitecture:
          architecture === 'arm64' ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    const image =
      props.image ??
      ecs.ContainerImage.fromAsset(REPO_ROOT, {
        file: 'Dockerfile',
        platform: architecture === 'arm64' ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
      });

    this.loadBalancer = new elbv2.NetworkLoadBalancer(this, 'LoadBalancer', {
      vpc: props.vpc,
      internetFacing: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      securityGroups: [props.loadBalancerSecurityGroup],
      crossZoneEnabled: true,
    });
    // The scheme follows the listener (TLS: https, so wss; TCP: http, so ws).
    const scheme = tls ? 'https' : 'http';
    const defaultPort = tls ? 443 : 80;
    this.publicUrl =
      props.publicUrl !== undefined
        ? parsePublicUrl(props.publicUrl)
        : `${scheme}://${this.loadBalancer.loadBalancerDnsName}${
            listenerPort === defaultPort ? '' : `:${listenerPort}`
          }`;

    const collector = props.otelCollector ?? defaults.otelCollector;
    const environment: Record<string, string> = {
      STREAMHEAL_HOST: '0.0.0.0',
      STREAMHEAL_PORT: String(ports.http),
      STREAMHEAL_CONTROL_PORT: String(ports.control),
      // Moves redirect clients here (through the load balancer), not to a task's private IPv4.
      // The control plane reads it from each gateway's node record: no copy for the functions.
      STREAMHEAL_PUBLIC_URL: this.publicUrl,
      STREAMHEAL_DRAIN_MS: String(drain.drainTimeout.toMilliseconds()),
      STREAMHEAL_LOG_LEVEL: 'info',
      OTEL_SERVICE_NAME: 'streamheal-gateway',
      ...(collector ? { OTEL_EXPORTER_OTLP_ENDPOINT: COLLECTOR_OTLP_HTTP } : {}),
      ...props.wiring.environment,
      ...props.environment,
    };
    this.container = this.taskDefinition.addContainer(GATEWAY_CONTAINER, {
      image,
      essential: true,
      environment,
      secrets: {
        STREAMHEAL_CLUSTER_SECRET: ecs.Secret.fromSecretsManager(props.keyRing),
        STREAMHEAL_PUBLISH_KEY: ecs.Secret.fromSecretsManager(props.publishKey),
      },
      portMappings: [
        { name: 'http', containerPort: ports.http, protocol: ecs.Protocol.TCP },
        { name: 'control', containerPort: ports.control, protocol: ecs.Protocol.TCP },
      ],
      stopTimeout: drain.stopTimeout,
      healthCheck: healthzCheck(ports.http),
      linuxParameters: new ecs.LinuxParameters(this, 'Linux', { initProcessEnabled: true }),
      ulimits: [{ name: ecs.UlimitName.NOFILE, softLimit: 65_535, hardLimit: 65_535 }],
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'gateway' }),
    });
    props.wiring.grant(this.taskDefinition.taskRole);
    acknowledgeTaskDefinition(
      this.taskDefinition,
      'Plain configuration only (ports, table and bus names, limits); the key ring and the ' +
        'publish key are injected from Secrets Manager through `secrets`.',
    );

    if (collector) this.addCollector(props, ports);

    this.service = new ecs.FargateService(this, 'Service', {
      cluster: props.cluster,
      serviceName: this.serviceName,
      taskDefinition: this.taskDefinition,
      desiredCount: props.desiredCount ?? defaults.desiredCount,
      securityGroups: [props.gatewaySecurityGroup],
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      assignPublicIp: false,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      healthCheckGracePeriod: defaults.healthCheckGracePeriod,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
      enableECSManagedTags: true,
    });

    const protocol = tls ? elbv2.Protocol.TLS : elbv2.Protocol.TCP;
    this.listener = this.loadBalancer.addListener('Listener', {
      port: listenerPort,
      protocol,
      ...(tls
        ? {
            certificates: [elbv2.ListenerCertificate.fromArn(props.certificateArn as string)],
            sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
          }
        : {}),
    });
    this.targetGroup = this.listener.addTargets('Gateways', {
      port: ports.http,
      protocol: elbv2.Protocol.TCP,
      targets: [
        this.service.loadBalancerTarget({
          containerName: GATEWAY_CONTAINER,
          containerPort: ports.http,
        }),
      ],
      healthCheck: {
        protocol: elbv2.Protocol.HTTP,
        path: health.path,
        interval: health.interval,
        timeout: health.timeout,
        healthyThresholdCount: health.healthyThresholdCount,
        unhealthyThresholdCount: health.unhealthyThresholdCount,
      },
      deregistrationDelay: drain.deregistrationDelay,
      preserveClientIp: true,
    });
    // Neither deregistration nor a failed health check resets open connections: sessions are
    // moved by the gateway (SIGTERM drain) and the control plane (Migrate), make-before-break.
    this.targetGroup.setAttribute('deregistration_delay.connection_termination.enabled', 'false');
    this.targetGroup.setAttribute(
      'target_health_state.unhealthy.connection_termination.enabled',
      'false',
    );

    this.enableAccessLogs(tls);
    this.scalableTarget = this.addScaling(props);
  }

  private addCollector(props: GatewayServiceProps, ports: GatewayPorts): void {
    const defaults = gatewayDefaults();
    const metrics = new logs.LogGroup(this, 'Metrics', {
      retention: logRetention(props.logRetentionDays ?? defaults.logRetentionDays),
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.taskDefinition.addContainer(COLLECTOR_CONTAINER, {
      image: ecs.ContainerImage.fromRegistry(
        props.otelCollectorImage ?? defaults.otelCollectorImage,
      ),
      // Telemetry must never take the gateway down with it.
      essential: false,
      memoryReservationMiB: 128,
      environment: {
        AOT_CONFIG_CONTENT: collectorConfig({
          gatewayHttpPort: ports.http,
          metricsLogGroupName: metrics.logGroupName,
        }),
      },
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'otel' }),
    });
    const role = this.taskDefinition.taskRole;
    acknowledge(
      role,
      'AwsSolutions-IAM5[Resource::*]',
      'X-Ray PutTraceSegments, PutTelemetryRecords and the sampling reads have no resource-level ' +
        'permissions; this statement holds nothing else.',
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: [
          'xray:PutTraceSegments',
          'xray:PutTelemetryRecords',
          'xray:GetSamplingRules',
          'xray:GetSamplingTargets',
        ],
        resources: ['*'],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
        resources: [metrics.logGroupArn, `${metrics.logGroupArn}:log-stream:*`],
      }),
    );
  }

  /**
   * NLB access logs (written for TLS listeners; a TCP listener has none to write) to a bucket of
   * their own: SSE-S3 (the only encryption log delivery supports), TLS only, 90 days. Network
   * Load Balancers deliver through the log delivery service, whose bucket policy needs no
   * region-specific ELB account, so this works in environment-agnostic stacks too.
   */
  private enableAccessLogs(tls: boolean): void {
    const stack = Stack.of(this);
    const prefix = tls ? 'tls' : 'tcp';
    const bucket = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    acknowledge(
      bucket,
      'AwsSolutions-S1',
      'This bucket is the access log destination itself; logging access to it would need another ' +
        'log bucket, and only the log delivery service writes here.',
    );
    const delivery = new iam.ServicePrincipal('delivery.logs.amazonaws.com');
    const fromThisAccount = { StringEquals: { 'aws:SourceAccount': stack.account } };
    const put = bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [delivery],
        actions: ['s3:PutObject'],
        resources: [bucket.arnForObjects(`${prefix}/AWSLogs/${stack.account}/*`)],
        conditions: {
          ...fromThisAccount,
          ArnLike: { 'aws:SourceArn': stack.formatArn({ service: 'logs', resource: '*' }) },
        },
      }),
    );
    bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [delivery],
        actions: ['s3:GetBucketAcl'],
        resources: [bucket.bucketArn],
        conditions: fromThisAccount,
      }),
    );
    this.loadBalancer.setAttribute('access_logs.s3.enabled', 'true');
    this.loadBalancer.setAttribute('access_logs.s3.bucket', bucket.bucketName);
    this.loadBalancer.setAttribute('access_logs.s3.prefix', prefix);
    if (put.policyDependable) this.loadBalancer.node.addDependency(put.policyDependable);
  }

  /**
   * Target tracking on average CPU, and on connections per task: the load balancer's active
   * flows divided by its healthy targets (metric math; NLB reports flows per load balancer only,
   * and this load balancer serves nothing else).
   */
  private addScaling(props: GatewayServiceProps): appscaling.ScalableTarget {
    const defaults = gatewayDefaults();
    const cluster = props.cluster.clusterName;
    const target = new appscaling.ScalableTarget(this, 'Scaling', {
      serviceNamespace: appscaling.ServiceNamespace.ECS,
      resourceId: `service/${cluster}/${this.service.serviceName}`,
      scalableDimension: 'ecs:service:DesiredCount',
      minCapacity: this.minCapacity,
      maxCapacity: props.maxCapacity ?? defaults.maxCapacity,
    });
    target.node.addDependency(this.service);
    const scaleIn = (props.scaleInCooldown ?? defaults.scaleInCooldown).toSeconds();
    const scaleOut = (props.scaleOutCooldown ?? defaults.scaleOutCooldown).toSeconds();
    target.scaleToTrackMetric('Cpu', {
      predefinedMetric: appscaling.PredefinedMetric.ECS_SERVICE_AVERAGE_CPU_UTILIZATION,
      targetValue: props.targetCpuPercent ?? defaults.targetCpuPercent,
      scaleInCooldown: Duration.seconds(scaleIn),
      scaleOutCooldown: Duration.seconds(scaleOut),
    });
    const lb = this.loadBalancer.loadBalancerFullName;
    const tg = this.targetGroup.targetGroupFullName;
    new appscaling.CfnScalingPolicy(this, 'ConnectionsPerTask', {
      policyName: `${Stack.of(this).stackName}-gateway-connections-per-task`,
      policyType: 'TargetTrackingScaling',
      scalingTargetId: target.scalableTargetId,
      targetTrackingScalingPolicyConfiguration: {
        targetValue: props.targetConnectionsPerTask ?? defaults.targetConnectionsPerTask,
        scaleInCooldown: scaleIn,
        scaleOutCooldown: scaleOut,
        customizedMetricSpecification: {
          metrics: [
            {
              id: 'flows',
              returnData: false,
              metricStat: {
                metric: {
                  namespace: 'AWS/NetworkELB',
                  metricName: 'ActiveFlowCount',
                  dimensions: [{ name: 'LoadBalancer', value: lb }],
                },
                stat: 'Average',
              },
            },
            {
              id: 'healthy',
              returnData: false,
              metricStat: {
                metric: {
                  namespace: 'AWS/NetworkELB',
                  metricName: 'HealthyHostCount',
                  dimensions: [
                    { name: 'LoadBalancer', value: lb },
                    { name: 'TargetGroup', value: tg },
                  ],
                },
                stat: 'Minimum',
              },
            },
            {
              id: 'perTask',
              label: 'connections per healthy gateway task',
              expression: 'flows / healthy',
              returnData: true,
            },
          ],
        },
      },
    });
    return target;
  }
}
