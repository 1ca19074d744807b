/**
 * The whole deployment as stacks, for one store option:
 *
 *   <prefix>-Network        VPC, security groups
 *   <prefix>-State          DynamoDB tables | etcd cluster; EventBridge bus
 *   <prefix>-Gateway        ECS cluster, key ring + rotation, gateway service + NLB
 *   <prefix>-Alerting       alert topic, webhook API destinations
 *   <prefix>-Control        functions + catalogue rules | orchestrator service
 *   <prefix>-Observability  dashboard, alarms
 *
 * `buildStreamheal(app, props)` is what infra/app.ts runs (props from context) and what the
 * tests synthesize (props given directly).
 */
import type { Environment } from 'aws-cdk-lib';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import type { Construct } from 'constructs';
import type { AlertingOptions } from './constructs/Alerting.js';
import type { ControlFunctionOptions } from './constructs/ControlFunction.js';
import type { EtcdClusterOptions } from './constructs/EtcdCluster.js';
import type { GatewayServiceOptions } from './constructs/GatewayService.js';
import type { MonitoringOptions } from './constructs/Monitoring.js';
import type { StreamhealNetworkProps } from './constructs/Network.js';
import type { OrchestratorOptions } from './constructs/OrchestratorService.js';
import type { StreamhealTablesProps } from './constructs/StreamhealTables.js';
import type { TokenKeysProps } from './constructs/TokenKeys.js';
import {
  etcdDefaults,
  gatewayDefaults,
  gatewayPorts,
  type ControlFunctionName,
  type CpuArchitectureName,
  type StoreKind,
} from './defaults.js';
import { REPO_ROOT } from './paths.js';
import { AlertingStack } from './stacks/AlertingStack.js';
import { ControlStack } from './stacks/ControlStack.js';
import { GatewayStack } from './stacks/GatewayStack.js';
import { NetworkStack } from './stacks/NetworkStack.js';
import { ObservabilityStack } from './stacks/ObservabilityStack.js';
import { StateStack } from './stacks/StateStack.js';

export interface StreamhealAppProps {
  /** @default 'dynamodb' */
  readonly store?: StoreKind;
  /** Stack names start with it; lower-cased, it names the bus and the ECS services. @default 'Streamheal' */
  readonly stackPrefix?: string;
  /** Account and region. @default environment-agnostic (2 AZs, resolved at deploy time) */
  readonly env?: Environment;
  /** @default StreamhealNetwork defaults */
  readonly network?: Omit<StreamhealNetworkProps, 'listenerPort' | 'ports' | 'etcd'>;
  /** (store=dynamodb) @default StreamhealTables defaults */
  readonly tables?: StreamhealTablesProps;
  /** (store=etcd) @default EtcdCluster defaults */
  readonly etcd?: EtcdClusterOptions;
  /** @default GatewayService defaults */
  readonly gateway?: Omit<GatewayServiceOptions, 'serviceName'>;
  /** @default TokenKeys defaults */
  readonly keys?: Omit<TokenKeysProps, 'rollServices'>;
  /** @default no e-mail, no webhook receivers */
  readonly alerting?: AlertingOptions;
  /** (store=dynamodb) @default controlFunctionDefaults(name) */
  readonly functions?: Partial<Record<ControlFunctionName, ControlFunctionOptions>>;
  /** (store=etcd) @default OrchestratorService defaults */
  readonly orchestrator?: Omit<OrchestratorOptions, 'serviceName'>;
  /** @default Monitoring defaults */
  readonly monitoring?: Omit<MonitoringOptions, 'dashboardName'>;
  /** The gateway (and orchestrator) image. @default built from the repository's Dockerfile */
  readonly image?: ecs.ContainerImage;
  /** Lambda bundling (tests make it cheaper). @default functionBundling() */
  readonly bundling?: nodejs.BundlingOptions;
}

export interface StreamhealStacks {
  readonly store: StoreKind;
  readonly network: NetworkStack;
  readonly state: StateStack;
  readonly gateways: GatewayStack;
  readonly alerting: AlertingStack;
  readonly control: ControlStack;
  readonly observability: ObservabilityStack;
}

/** The gateway image, built by `cdk deploy` from the repository's Dockerfile. */
export function gatewayImage(architecture: CpuArchitectureName): ecs.ContainerImage {
  return ecs.ContainerImage.fromAsset(REPO_ROOT, {
    file: 'Dockerfile',
    platform: architecture === 'arm64' ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
  });
}

export function buildStreamheal(
  scope: Construct,
  props: StreamhealAppProps = {},
): StreamhealStacks {
  const store = props.store ?? 'dynamodb';
  const prefix = props.stackPrefix ?? 'Streamheal';
  const lower = prefix.toLowerCase();
  const common = props.env ? { env: props.env } : {};
  const architecture = props.gateway?.cpuArchitecture ?? gatewayDefaults().cpuArchitecture;
  const image = props.image ?? gatewayImage(architecture);
  const listenerPort =
    props.gateway?.listenerPort ?? (props.gateway?.certificateArn !== undefined ? 443 : 80);
  const etcd = etcdDefaults();
  const tags = { application: 'streamheal', 'streamheal:store': store };

  const network = new NetworkStack(scope, `${prefix}-Network`, {
    ...common,
    tags,
    description: 'streamheal network: VPC, subnets, security groups',
    ...props.network,
    listenerPort,
    ports: gatewayPorts(),
    ...(store === 'etcd' ? { etcd: { clientPort: etcd.clientPort, peerPort: etcd.peerPort } } : {}),
  });
  const state = new StateStack(scope, `${prefix}-State`, {
    ...common,
    tags,
    description: `streamheal state (${store}) and event bus`,
    store,
    network: network.network,
    eventBusName: lower,
    ...(props.tables ? { tables: props.tables } : {}),
    ...(props.etcd ? { etcd: props.etcd } : {}),
  });
  const orchestratorName = `${lower}-orchestrator`;
  const gateways = new GatewayStack(scope, `${prefix}-Gateway`, {
    ...common,
    tags,
    description: 'streamheal gateways: ECS Fargate service, Network Load Balancer, token keys',
    store,
    network: network.network,
    state,
    image,
    gateway: { ...props.gateway, serviceName: `${lower}-gateway` },
    keys: { ...props.keys, ...(props.bundling ? { bundling: props.bundling } : {}) },
    ...(store === 'etcd' ? { alsoRollServices: [orchestratorName] } : {}),
  });
  const alerting = new AlertingStack(scope, `${prefix}-Alerting`, {
    ...common,
    tags,
    description: 'streamheal alerting: SNS topic, webhook API destinations',
    state,
    ...(props.alerting ? { alerting: props.alerting } : {}),
  });
  const control = new ControlStack(scope, `${prefix}-Control`, {
    ...common,
    tags,
    description:
      store === 'dynamodb'
        ? 'streamheal control: Lambda functions and catalogue rules'
        : 'streamheal control: orchestrator service',
    store,
    network: network.network,
    state,
    gateways,
    image,
    cpuArchitecture: architecture,
    ...(props.functions ? { functions: props.functions } : {}),
    ...(props.bundling ? { bundling: props.bundling } : {}),
    orchestrator: { ...props.orchestrator, serviceName: orchestratorName },
  });
  const observability = new ObservabilityStack(scope, `${prefix}-Observability`, {
    ...common,
    tags,
    description: 'streamheal observability: dashboard and alarms',
    state,
    gateways,
    control,
    alerting,
    monitoring: { ...props.monitoring, dashboardName: prefix },
  });
  return { store, network, state, gateways, alerting, control, observability };
}
