/**
 * The orchestrator for `store=etcd`: the decision path as long-lived processes
 * (workers/orchestrator/main.ts) on the gateway image, instead of EventBridge rules and Lambda.
 * They elect a leader on etcd (one decides, the other stands by), subscribe the same catalogue on
 * the etcd bus, and reach the gateways' control port from the control security group. The
 * deployment's EventBridge bus is named to them (STREAMHEAL_EVENT_BUS_NAME, PutEvents granted)
 * for forwarding decision events to the alert topic and webhook destinations. Their own alert
 * receivers come from the alert receivers secret, injected as STREAMHEAL_ALERT_TARGETS when a
 * task starts (an edit of the secret takes effect with the next deployment of the service).
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { gatewayDefaults, orchestratorDefaults, type CpuArchitectureName } from '../defaults.js';
import { logRetention } from './logRetention.js';
import { acknowledgeTaskDefinition, healthzCheck } from './nodeTask.js';
import type { Wiring } from './wiring.js';

/** The orchestrator's entry in the image (compiled from workers/orchestrator/main.ts). */
export const ORCHESTRATOR_COMMAND = ['node', 'dist/workers/orchestrator/main.js'];
/** Its status server (GET /healthz, /readyz, /v1/status), on loopback: only the health check asks. */
export const ORCHESTRATOR_STATUS_PORT = 7071;

export interface OrchestratorOptions {
  /** Physical ECS service name (also what key rotation rolls). @default 'streamheal-orchestrator' */
  readonly serviceName?: string;
  /** @default orchestratorDefaults().cpu (512) */
  readonly cpu?: number;
  /** @default orchestratorDefaults().memoryMiB (1024) */
  readonly memoryMiB?: number;
  /** @default orchestratorDefaults().desiredCount (2: a leader and a standby) */
  readonly desiredCount?: number;
  /** @default gatewayDefaults().logRetentionDays (30) */
  readonly logRetentionDays?: number;
}

export interface OrchestratorServiceProps extends OrchestratorOptions {
  readonly cluster: ecs.ICluster;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly image: ecs.ContainerImage;
  readonly cpuArchitecture: CpuArchitectureName;
  /** Store and bus (etcd) plus the EventBridge bus decisions are forwarded to. */
  readonly wiring: Wiring;
  readonly keyRing: secretsmanager.ISecret;
  /** The alert receivers (AlertReceivers.ts). */
  readonly alertReceivers: secretsmanager.ISecret;
}

export class OrchestratorService extends Construct {
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly logGroup: logs.LogGroup;
  readonly serviceName: string;

  constructor(scope: Construct, id: string, props: OrchestratorServiceProps) {
    super(scope, id);
    const defaults = orchestratorDefaults();
    this.serviceName = props.serviceName ?? 'streamheal-orchestrator';
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: logRetention(props.logRetentionDays ?? gatewayDefaults().logRetentionDays),
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu ?? defaults.cpu,
      memoryLimitMiB: props.memoryMiB ?? defaults.memoryMiB,
      runtimePlatform: {
        cpuArchitecture:
          props.cpuArchitecture === 'arm64'
            ? ecs.CpuArchitecture.ARM64
            : ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    this.taskDefinition.addContainer('orchestrator', {
      image: props.image,
      command: ORCHESTRATOR_COMMAND,
      essential: true,
      environment: {
        STREAMHEAL_HOST: '127.0.0.1',
        STREAMHEAL_PORT: String(ORCHESTRATOR_STATUS_PORT),
        STREAMHEAL_LOG_LEVEL: 'info',
        OTEL_SERVICE_NAME: 'streamheal-orchestrator',
        ...props.wiring.environment,
      },
      secrets: {
        STREAMHEAL_CLUSTER_SECRET: ecs.Secret.fromSecretsManager(props.keyRing),
        STREAMHEAL_ALERT_TARGETS: ecs.Secret.fromSecretsManager(props.alertReceivers),
      },
      // SIGTERM resigns the leadership at once; a standby takes over.
      stopTimeout: Duration.seconds(30),
      healthCheck: healthzCheck(ORCHESTRATOR_STATUS_PORT),
      linuxParameters: new ecs.LinuxParameters(this, 'Linux', { initProcessEnabled: true }),
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'orchestrator' }),
    });
    props.wiring.grant(this.taskDefinition.taskRole);
    acknowledgeTaskDefinition(
      this.taskDefinition,
      'Plain configuration only (etcd endpoints, bus and topic names, ports); the key ring and ' +
        'the alert receivers are injected from Secrets Manager through `secrets`.',
    );
    this.service = new ecs.FargateService(this, 'Service', {
      cluster: props.cluster,
      serviceName: this.serviceName,
      taskDefinition: this.taskDefinition,
      desiredCount: props.desiredCount ?? defaults.desiredCount,
      securityGroups: [props.securityGroup],
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      assignPublicIp: false,
      // Leader election keeps one decision maker at a time, so deployments can start the new
      // tasks (as standbys) before stopping the old ones.
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });
  }
}
