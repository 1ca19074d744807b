/**
 * Gateways: the ECS cluster, the token key ring and publish key (with rotation), the container
 * image (built from the repository's Dockerfile by `cdk deploy`), and the gateway service behind
 * its Network Load Balancer (constructs/GatewayService.ts).
 */
import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type { Construct } from 'constructs';
import { GatewayService, type GatewayServiceOptions } from '../constructs/GatewayService.js';
import type { StreamhealNetwork } from '../constructs/Network.js';
import { TokenKeys, type TokenKeysProps } from '../constructs/TokenKeys.js';
import { combine } from '../constructs/wiring.js';
import type { StoreKind } from '../defaults.js';
import type { StateStack } from './StateStack.js';

export interface GatewayStackProps extends StackProps {
  readonly store: StoreKind;
  readonly network: StreamhealNetwork;
  readonly state: StateStack;
  /** The container image. @default built from the repository's Dockerfile */
  readonly image: ecs.ContainerImage;
  /** @default GatewayService defaults */
  readonly gateway?: GatewayServiceOptions;
  /** @default TokenKeys defaults */
  readonly keys?: Omit<TokenKeysProps, 'rollServices'>;
  /** Other services of the cluster to roll after a key rotation (the orchestrator). @default none */
  readonly alsoRollServices?: string[];
}

export class GatewayStack extends Stack {
  readonly cluster: ecs.Cluster;
  readonly keys: TokenKeys;
  readonly gateway: GatewayService;

  constructor(scope: Construct, id: string, props: GatewayStackProps) {
    super(scope, id, props);
    const { network, state } = props;
    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: network.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    const serviceName = props.gateway?.serviceName ?? 'streamheal-gateway';
    this.keys = new TokenKeys(this, 'Keys', {
      ...props.keys,
      rollServices: [serviceName, ...(props.alsoRollServices ?? [])].map((name) => ({
        cluster: this.cluster,
        serviceName: name,
      })),
    });
    const wiring =
      props.store === 'dynamodb' ? combine(state.storeWiring, state.bus.wiring) : state.storeWiring;
    this.gateway = new GatewayService(this, 'Gateway', {
      ...props.gateway,
      serviceName,
      vpc: network.vpc,
      cluster: this.cluster,
      gatewaySecurityGroup: network.gatewaySecurityGroup,
      loadBalancerSecurityGroup: network.loadBalancerSecurityGroup,
      ports: network.ports,
      wiring,
      keyRing: this.keys.keyRing,
      publishKey: this.keys.publishKey,
      image: props.image,
    });
    new CfnOutput(this, 'Url', {
      value: this.gateway.publicUrl,
      description: 'Gateway entry (append /v1/ws, /v1/sse, /v1/publish)',
    });
    new CfnOutput(this, 'PublishKeySecret', {
      value: this.keys.publishKey.secretName,
      description: 'Secrets Manager secret holding the publish key',
    });
  }
}
