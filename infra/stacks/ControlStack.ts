/**
 * The decision path. store=dynamodb: the control functions (decide, nodeLost, tokens, alerts)
 * and one EventBridge rule per catalogue entry, including the ECS task-stopped rule for the
 * gateway cluster. store=etcd: the orchestrator service, which runs the same handlers on the
 * etcd bus. Either way the alert receivers secret (output `AlertReceiversSecret`).
 */
import { CfnOutput, Stack, type Duration, type StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { AlertReceivers } from '../constructs/AlertReceivers.js';
import { CatalogueRules } from '../constructs/CatalogueRules.js';
import type { ControlFunctionOptions } from '../constructs/ControlFunction.js';
import { ControlFunctions } from '../constructs/ControlFunctions.js';
import type { StreamhealNetwork } from '../constructs/Network.js';
import {
  OrchestratorService,
  type OrchestratorOptions,
} from '../constructs/OrchestratorService.js';
import { combine } from '../constructs/wiring.js';
import {
  functionsDefaults,
  type ControlFunctionName,
  type CpuArchitectureName,
  type StoreKind,
} from '../defaults.js';
import type { GatewayStack } from './GatewayStack.js';
import type { StateStack } from './StateStack.js';

export interface ControlStackProps extends StackProps {
  readonly store: StoreKind;
  readonly network: StreamhealNetwork;
  readonly state: StateStack;
  readonly gateways: GatewayStack;
  /** The orchestrator runs on the gateway image. */
  readonly image: ecs.ContainerImage;
  readonly cpuArchitecture: CpuArchitectureName;
  /** Per-function settings (store=dynamodb). @default controlFunctionDefaults(name) */
  readonly functions?: Partial<Record<ControlFunctionName, ControlFunctionOptions>>;
  /** @default functionBundling() */
  readonly bundling?: nodejs.BundlingOptions;
  /** How often alerts sends its dead letters again. @default functionsDefaults().alertsRedeliveryInterval (10 min) */
  readonly alertsRedeliveryInterval?: Duration;
  /** (store=etcd) @default OrchestratorService defaults */
  readonly orchestrator?: OrchestratorOptions;
}

export class ControlStack extends Stack {
  readonly functions: ControlFunctions | undefined;
  readonly rules: CatalogueRules | undefined;
  /** The schedule that makes alerts redeliver its dead letters (store=dynamodb). */
  readonly redelivery: events.Rule | undefined;
  readonly orchestrator: OrchestratorService | undefined;
  /** Where alerts are delivered (AlertReceivers.ts): read by the alerts function or the orchestrator. */
  readonly alertReceivers: secretsmanager.ISecret;

  constructor(scope: Construct, id: string, props: ControlStackProps) {
    super(scope, id, props);
    const { network, state, gateways } = props;
    if (props.store === 'dynamodb') {
      this.functions = new ControlFunctions(this, 'Functions', {
        vpc: network.vpc,
        securityGroup: network.controlSecurityGroup,
        store: state.storeWiring,
        bus: state.bus.wiring,
        keys: gateways.keys,
        ...(props.functions === undefined ? {} : { functions: props.functions }),
        ...(props.bundling === undefined ? {} : { bundling: props.bundling }),
      });
      const { decide, nodeLost, alerts } = this.functions.functions;
      this.alertReceivers = this.functions.alertReceivers.secret;
      this.rules = new CatalogueRules(this, 'Rules', {
        bus: state.bus.bus,
        functions: { decide, nodeLost, alerts },
        catalogueConfig: {
          gatewayClusterArn: gateways.cluster.clusterArn,
          gatewayTaskGroup: `service:${gateways.gateway.serviceName}`,
        },
      });
      // A scheduled event makes alerts send what it dead-lettered again (functions/alerts).
      this.redelivery = new events.Rule(this, 'AlertsRedelivery', {
        description: 'streamheal alerts: send dead-lettered alerts again',
        schedule: events.Schedule.rate(
          props.alertsRedeliveryInterval ?? functionsDefaults().alertsRedeliveryInterval,
        ),
      });
      this.redelivery.addTarget(alerts.eventTarget());
      this.orchestrator = undefined;
    } else {
      this.alertReceivers = new AlertReceivers(this, 'AlertReceivers').secret;
      this.orchestrator = new OrchestratorService(this, 'Orchestrator', {
        ...props.orchestrator,
        cluster: gateways.cluster,
        securityGroup: network.controlSecurityGroup,
        image: props.image,
        cpuArchitecture: props.cpuArchitecture,
        // The etcd store and bus; the EventBridge bus only to forward decisions to alerting.
        wiring: combine(state.bus.wiring, state.storeWiring),
        keyRing: gateways.keys.keyRing,
        alertReceivers: this.alertReceivers,
      });
      this.functions = undefined;
      this.rules = undefined;
      this.redelivery = undefined;
    }
    new CfnOutput(this, 'AlertReceiversSecret', {
      value: this.alertReceivers.secretName,
      description:
        'Secrets Manager secret holding the alert receivers (JSON list; docs/deploy.md, "Alert receivers")',
    });
  }
}
