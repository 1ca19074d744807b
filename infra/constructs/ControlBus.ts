/**
 * The deployment's own EventBridge bus: gateways put health events on it, decide and nodeLost
 * put decisions and node-lost events, and the catalogue's rules and the alert destinations
 * listen on it. `wiring` is what the EventBridgeBus adapter reads (STREAMHEAL_EVENT_BUS_NAME)
 * with a PutEvents grant on this bus only.
 */
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import type { Wiring } from './wiring.js';

export const EVENT_BUS_ENV = 'STREAMHEAL_EVENT_BUS_NAME';

export interface ControlBusProps {
  /** @default 'streamheal' */
  readonly eventBusName?: string;
}

export class ControlBus extends Construct {
  readonly bus: events.EventBus;

  constructor(scope: Construct, id: string, props: ControlBusProps = {}) {
    super(scope, id);
    this.bus = new events.EventBus(this, 'Bus', {
      eventBusName: props.eventBusName ?? 'streamheal',
      description: 'streamheal health, node-lost and decision events',
    });
  }

  grantPut(grantee: iam.IGrantable): void {
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['events:PutEvents'],
      resourceArns: [this.bus.eventBusArn],
    });
  }

  /** For code that puts events on EventBridge (gateways, decide, nodeLost, the orchestrator). */
  get wiring(): Wiring {
    return {
      environment: { STREAMHEAL_BUS: 'eventbridge', [EVENT_BUS_ENV]: this.bus.eventBusName },
      grant: (grantee) => this.grantPut(grantee),
    };
  }
}
