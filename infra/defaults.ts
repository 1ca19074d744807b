/**
 * Defaults of every construct and stack, as plain functions of the few choices they depend on.
 * Constructs merge their props over these, so a default is written down once, the docs
 * (docs/deploy.md) can quote it, and tests can compare a synthesized template with it.
 */
import { Duration } from 'aws-cdk-lib';

/** The two state stores a deployment can run on. */
export const StoreKinds = ['dynamodb', 'etcd'] as const;
export type StoreKind = (typeof StoreKinds)[number];

export const CpuArchitectures = ['arm64', 'x86_64'] as const;
export type CpuArchitectureName = (typeof CpuArchitectures)[number];

/** Ports inside the gateway task. */
export interface GatewayPorts {
  /** HTTP: WebSocket, SSE, publish, /metrics, /healthz, /readyz. */
  http: number;
  /** gRPC control service (Reload, Drain, Migrate, Status); reachable from the control plane only. */
  control: number;
}

export function gatewayPorts(): GatewayPorts {
  return { http: 8080, control: 9090 };
}

export interface HistoryDefaults {
  maxCount: number;
  maxAgeMs: number;
}

/**
 * Channel history bounds. Every process on the same store must use the same ones (the DynamoDB
 * store computes trims from them), so they travel with the store's variables to gateways,
 * functions and the orchestrator alike.
 */
export function historyDefaults(): HistoryDefaults {
  return { maxCount: 10_000, maxAgeMs: 10 * 60_000 };
}

export interface NetworkDefaults {
  cidr: string;
  maxAzs: number;
  natGateways: number;
  flowLogRetentionDays: number;
}

/**
 * Two AZs when the stack is environment-agnostic (CloudFormation picks them with Fn::GetAZs),
 * three when account and region are known. One NAT gateway: the cheapest shape that lets
 * private tasks and functions reach AWS APIs; raise it to one per AZ for AZ-independent egress.
 */
export function networkDefaults(environmentKnown: boolean): NetworkDefaults {
  return {
    cidr: '10.40.0.0/16',
    maxAzs: environmentKnown ? 3 : 2,
    natGateways: 1,
    flowLogRetentionDays: 30,
  };
}

export type TableEncryptionName = 'aws-owned' | 'aws-managed';

export interface TableDefaults {
  deletionProtection: boolean;
  pointInTimeRecovery: boolean;
  encryption: TableEncryptionName;
}

/** Tables hold every channel's history and every record: protected and recoverable by default. */
export function tableDefaults(): TableDefaults {
  return { deletionProtection: true, pointInTimeRecovery: true, encryption: 'aws-managed' };
}

export interface HealthCheckDefaults {
  path: string;
  interval: Duration;
  timeout: Duration;
  healthyThresholdCount: number;
  unhealthyThresholdCount: number;
}

/**
 * As fast as a Network Load Balancer allows: every 5 s (the minimum), 2 s timeout (the minimum),
 * 2 results to change state (the minimum). A failing gateway leaves the target group in about
 * 10 s; `/readyz` turns red on its own when the store or the delivery canary fails.
 */
export function nlbHealthCheckDefaults(): HealthCheckDefaults {
  return {
    path: '/readyz',
    interval: Duration.seconds(5),
    timeout: Duration.seconds(2),
    healthyThresholdCount: 2,
    unhealthyThresholdCount: 2,
  };
}

export interface DrainDefaults {
  /** Target group deregistration delay: the time NLB nodes take to stop sending new flows. */
  deregistrationDelay: Duration;
  /** ECS waits this long after SIGTERM before SIGKILL (Fargate allows at most 120 s). */
  stopTimeout: Duration;
  /** The gateway's own budget for moving its sessions (STREAMHEAL_DRAIN_MS). */
  drainTimeout: Duration;
}

/**
 * The stop sequence of a gateway task: ECS deregisters it and waits `deregistrationDelay`
 * (connection termination stays off, so open WebSockets survive it), then sends SIGTERM; the
 * gateway moves its sessions make-before-break within `drainTimeout`, and exits; ECS kills it
 * at `stopTimeout` at the latest. The drain budget leaves 15 s for closing and flushing.
 */
export function drainDefaults(): DrainDefaults {
  return {
    deregistrationDelay: Duration.seconds(15),
    stopTimeout: Duration.seconds(120),
    drainTimeout: Duration.seconds(105),
  };
}

export interface GatewayDefaults {
  cpu: number;
  memoryMiB: number;
  cpuArchitecture: CpuArchitectureName;
  desiredCount: number;
  minCapacity: number;
  maxCapacity: number;
  targetCpuPercent: number;
  targetConnectionsPerTask: number;
  scaleInCooldown: Duration;
  scaleOutCooldown: Duration;
  healthCheckGracePeriod: Duration;
  logRetentionDays: number;
  otelCollector: boolean;
  otelCollectorImage: string;
}

/**
 * 1 vCPU / 2 GiB on Graviton (ARM64: about 20 % cheaper per vCPU-hour than x86 on Fargate, and
 * the native probe addon builds for either). Two tasks at least, so one can drain into the
 * other; scale out at 60 % CPU or 5,000 connections per task, whichever comes first.
 */
export function gatewayDefaults(): GatewayDefaults {
  return {
    cpu: 1024,
    memoryMiB: 2048,
    cpuArchitecture: 'arm64',
    desiredCount: 2,
    minCapacity: 2,
    maxCapacity: 10,
    targetCpuPercent: 60,
    targetConnectionsPerTask: 5_000,
    scaleInCooldown: Duration.minutes(5),
    scaleOutCooldown: Duration.minutes(1),
    healthCheckGracePeriod: Duration.seconds(30),
    logRetentionDays: 30,
    otelCollector: false,
    otelCollectorImage: 'public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0',
  };
}

/** The control-plane functions (functions/<name>/handler.ts). */
export const ControlFunctionNames = ['decide', 'nodeLost', 'tokens', 'alerts'] as const;
export type ControlFunctionName = (typeof ControlFunctionNames)[number];

export interface ControlFunctionDefaults {
  memoryMiB: number;
  timeout: Duration;
  /** Concurrent executions reserved (and capped); undefined leaves the function unreserved. */
  reservedConcurrency: number | undefined;
  /** In the VPC, with the control security group: it calls the gateways' control port. */
  inVpc: boolean;
  /** EventBridge target: retries of a failed delivery, and the age after which it gives up. */
  targetRetryAttempts: number;
  targetMaxEventAge: Duration;
  /** Lambda asynchronous invocation: retries of a failed execution, and the age limit. */
  asyncRetryAttempts: number;
  asyncMaxEventAge: Duration;
}

/**
 * Per function. decide acts on fresh health only (a minute-old event is better dropped to the
 * DLQ than acted on) and is capped at 10 concurrent runs, so a storm of health events from a
 * sick fleet cannot fan out into conflicting isolations or flood the gateways with Migrate
 * calls. nodeLost must not lose a stopped task: many retries over an hour. alerts is capped low
 * because webhook receivers rate-limit. tokens answers callers synchronously and is not reserved.
 */
export function controlFunctionDefaults(name: ControlFunctionName): ControlFunctionDefaults {
  switch (name) {
    case 'decide':
      return {
        memoryMiB: 512,
        timeout: Duration.seconds(10),
        reservedConcurrency: 10,
        inVpc: true,
        targetRetryAttempts: 2,
        targetMaxEventAge: Duration.minutes(1),
        asyncRetryAttempts: 1,
        asyncMaxEventAge: Duration.minutes(1),
      };
    case 'nodeLost':
      return {
        memoryMiB: 512,
        timeout: Duration.seconds(30),
        reservedConcurrency: 5,
        inVpc: true,
        targetRetryAttempts: 8,
        targetMaxEventAge: Duration.hours(1),
        asyncRetryAttempts: 2,
        asyncMaxEventAge: Duration.hours(1),
      };
    case 'tokens':
      return {
        memoryMiB: 256,
        timeout: Duration.seconds(5),
        reservedConcurrency: undefined,
        inVpc: false,
        targetRetryAttempts: 0,
        targetMaxEventAge: Duration.minutes(1),
        asyncRetryAttempts: 0,
        asyncMaxEventAge: Duration.minutes(1),
      };
    case 'alerts':
      return {
        memoryMiB: 256,
        timeout: Duration.seconds(10),
        reservedConcurrency: 2,
        inVpc: false,
        targetRetryAttempts: 4,
        targetMaxEventAge: Duration.hours(1),
        asyncRetryAttempts: 2,
        asyncMaxEventAge: Duration.hours(1),
      };
  }
}

export interface FunctionsDefaults {
  logRetentionDays: number;
  /** How long a dead-lettered event is kept for inspection and redrive. */
  dlqRetention: Duration;
  /** How often the alerts function sends its dead-lettered alerts again. */
  alertsRedeliveryInterval: Duration;
}

export function functionsDefaults(): FunctionsDefaults {
  return {
    logRetentionDays: 30,
    dlqRetention: Duration.days(14),
    alertsRedeliveryInterval: Duration.minutes(10),
  };
}

export interface KeyRingDefaults {
  rotationInterval: Duration;
  /** Roll the gateway (and orchestrator) services after a rotation, so every task holds the new ring. */
  restartServicesOnRotation: boolean;
}

export function keyRingDefaults(): KeyRingDefaults {
  return { rotationInterval: Duration.days(30), restartServicesOnRotation: true };
}

export interface AlertingDefaults {
  /** Requests per second EventBridge sends to one webhook receiver at most. */
  invocationRateLimitPerSecond: number;
  retryAttempts: number;
  maxEventAge: Duration;
}

export function alertingDefaults(): AlertingDefaults {
  return { invocationRateLimitPerSecond: 5, retryAttempts: 8, maxEventAge: Duration.hours(2) };
}

export interface EtcdDefaults {
  members: number;
  instanceType: string;
  volumeSizeGiB: number;
  version: string;
  clientPort: number;
  peerPort: number;
  prefix: string;
}

/**
 * Three members (a quorum survives one loss), each a t4g.small with its own 20 GiB gp3 volume.
 * etcd wants low fsync latency more than size; gp3's 3,000 IOPS baseline is plenty for the
 * control-plane records and channel history of a few gateways.
 */
export function etcdDefaults(): EtcdDefaults {
  return {
    members: 3,
    instanceType: 't4g.small',
    volumeSizeGiB: 20,
    version: 'v3.5.17',
    clientPort: 2379,
    peerPort: 2380,
    prefix: 'streamheal/',
  };
}

export interface OrchestratorDefaults {
  cpu: number;
  memoryMiB: number;
  desiredCount: number;
}

/**
 * Two tasks: orchestrators elect a leader on etcd, so the second is a standby that takes over
 * within the election lease (2 s) when the leader dies or resigns on SIGTERM.
 */
export function orchestratorDefaults(): OrchestratorDefaults {
  return { cpu: 512, memoryMiB: 1024, desiredCount: 2 };
}

export interface ObservabilityDefaults {
  /** decide's p99 duration above which the sub-second control budget is at risk. */
  decideP99Threshold: Duration;
  gatewayCpuAlarmPercent: number;
  gatewayMemoryAlarmPercent: number;
}

export function observabilityDefaults(): ObservabilityDefaults {
  return {
    decideP99Threshold: Duration.millis(800),
    gatewayCpuAlarmPercent: 85,
    gatewayMemoryAlarmPercent: 85,
  };
}

/** Log retention as the closest value CloudWatch Logs accepts (it takes a fixed list). */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288,
  3653,
] as const;
