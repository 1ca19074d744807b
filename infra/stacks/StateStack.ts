/**
 * State and events: the DynamoDB tables (store=dynamodb) or the etcd cluster (store=etcd), and
 * the deployment's EventBridge bus (both shapes: gateways' health events with DynamoDB, decision
 * events for the alert destinations with either).
 */
import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { ControlBus } from '../constructs/ControlBus.js';
import { EtcdCluster, type EtcdClusterOptions } from '../constructs/EtcdCluster.js';
import type { StreamhealNetwork } from '../constructs/Network.js';
import { StreamhealTables, type StreamhealTablesProps } from '../constructs/StreamhealTables.js';
import type { Wiring } from '../constructs/wiring.js';
import { historyDefaults, type HistoryDefaults, type StoreKind } from '../defaults.js';

export interface StateStackProps extends StackProps {
  readonly store: StoreKind;
  readonly network: StreamhealNetwork;
  /** @default StreamhealTables defaults */
  readonly tables?: StreamhealTablesProps;
  /** @default EtcdCluster defaults */
  readonly etcd?: EtcdClusterOptions;
  /** @default 'streamheal' */
  readonly eventBusName?: string;
  /** Channel history bounds, the same for every process. @default historyDefaults() */
  readonly history?: Partial<HistoryDefaults>;
}

export class StateStack extends Stack {
  readonly bus: ControlBus;
  readonly tables: StreamhealTables | undefined;
  readonly etcd: EtcdCluster | undefined;
  /** Store variables (history bounds included) and grants for gateways and the decision path. */
  readonly storeWiring: Wiring;

  constructor(scope: Construct, id: string, props: StateStackProps) {
    super(scope, id, props);
    this.bus = new ControlBus(this, 'Events', {
      ...(props.eventBusName === undefined ? {} : { eventBusName: props.eventBusName }),
    });
    const history = { ...historyDefaults(), ...props.history };
    const limits = {
      STREAMHEAL_HISTORY_MAX_COUNT: String(history.maxCount),
      STREAMHEAL_HISTORY_MAX_AGE_MS: String(history.maxAgeMs),
    };
    if (props.store === 'dynamodb') {
      const tables = new StreamhealTables(this, 'Tables', props.tables);
      this.tables = tables;
      this.etcd = undefined;
      this.storeWiring = {
        environment: { STREAMHEAL_STORE: 'dynamodb', ...tables.environment, ...limits },
        grant: (grantee) => tables.grantReadWrite(grantee),
      };
    } else {
      const securityGroup = props.network.etcdSecurityGroup;
      if (!securityGroup)
        throw new Error('store=etcd needs the network stack built with etcd ports');
      this.etcd = new EtcdCluster(this, 'Etcd', {
        vpc: props.network.vpc,
        securityGroup,
        ...props.etcd,
      });
      this.tables = undefined;
      const etcd = this.etcd.wiring;
      this.storeWiring = { environment: { ...etcd.environment, ...limits }, grant: etcd.grant };
    }
  }
}
