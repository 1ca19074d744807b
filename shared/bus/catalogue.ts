/**
 * The one catalogue of event patterns: which events trigger which control-plane function.
 * infra/ turns each entry into an EventBridge rule whose target is the function's Lambda;
 * router.ts subscribes the same patterns on an in-process or etcd bus. So a pattern changed
 * here changes what runs, identically, in every way of running streamheal (docs/events.md).
 *
 * `catalogue(config)` is a pure function of configuration (the ECS cluster differs per
 * deployment) and validates every pattern with the same matcher the in-process router uses.
 */
import { StreamhealError } from '../errors.js';
import { HealthEvents, type HealthEventType } from '../health/events.js';
import { DecisionEvents, NodeLostEvents } from './controlEvents.js';
import type { EventPattern } from './EventBus.js';
import { validatePattern } from './eventPattern.js';
import { Sources } from './events.js';

/** The functions events are routed to (functions/*: Lambda handlers and their local twins). */
export const TargetFunctions = ['decide', 'nodeLost', 'alerts'] as const;
export type TargetFunction = (typeof TargetFunctions)[number];

export interface CatalogueEntry {
  /** Unique, and a valid EventBridge rule name (infra/ uses it as one). */
  name: string;
  description: string;
  /** An EventBridge event pattern, as JSON. */
  pattern: EventPattern;
  target: TargetFunction;
}

export interface CatalogueConfig {
  /**
   * ARN of the ECS cluster the gateways run in (a CDK token is fine). Without it there is no
   * ECS entry: the embedded and self-hosted shapes learn of lost gateways from the supervisor
   * and from lease expiry instead.
   */
  gatewayClusterArn?: string;
  /**
   * The ECS task group of gateway tasks (`service:<service name>`), when other tasks share the
   * cluster: the ECS entry then matches gateway tasks only.
   */
  gatewayTaskGroup?: string;
}

/** The gateway health events decide acts on: every transition of a health signal. */
export const DECISION_INPUTS: readonly HealthEventType[] = [
  HealthEvents.connectionsDegraded,
  HealthEvents.connectionsRecovered,
  HealthEvents.flashCuts,
  HealthEvents.writeBlocked,
  HealthEvents.nodeOverloaded,
  HealthEvents.nodeRecovered,
  HealthEvents.canaryFailing,
  HealthEvents.canaryRecovered,
];

/**
 * Gateway events no function receives: lifecycle. A stopping gateway drains its own sessions,
 * and one that dies without stopping is reported by ECS, the supervisor or its lease.
 */
export const UNROUTED_HEALTH_EVENTS: readonly HealthEventType[] = [
  HealthEvents.gatewayStarted,
  HealthEvents.gatewayStopped,
];

/** `detail-type` of the task events ECS sends to EventBridge (source `aws.ecs`). */
export const ECS_TASK_STATE_CHANGE = 'ECS Task State Change';

export class InvalidCatalogueConfigError extends StreamhealError {
  constructor(message: string) {
    super('invalid_catalogue_config', message);
  }
}

export function catalogue(config: CatalogueConfig = {}): CatalogueEntry[] {
  checkConfig(config);
  const entries: CatalogueEntry[] = [
    {
      name: 'streamheal-decide-gateway-health',
      description: 'Health signal transitions from gateways go to decide.',
      pattern: { source: [Sources.gateway], 'detail-type': [...DECISION_INPUTS] },
      target: 'decide',
    },
  ];
  if (config.gatewayClusterArn !== undefined) {
    entries.push({
      name: 'streamheal-node-lost-ecs-task-stopped',
      description: 'A gateway task of the cluster stopped (ECS Task State Change, STOPPED).',
      pattern: {
        source: ['aws.ecs'],
        'detail-type': [ECS_TASK_STATE_CHANGE],
        detail: {
          clusterArn: [config.gatewayClusterArn],
          lastStatus: ['STOPPED'],
          ...(config.gatewayTaskGroup === undefined ? {} : { group: [config.gatewayTaskGroup] }),
        },
      },
      target: 'nodeLost',
    });
  }
  entries.push(
    {
      name: 'streamheal-node-lost-control',
      description: 'The supervisor or lease expiry reports a gateway gone.',
      pattern: { source: [Sources.control], 'detail-type': Object.values(NodeLostEvents) },
      target: 'nodeLost',
    },
    {
      name: 'streamheal-alerts-decisions',
      description: 'Decisions the control plane took go to alerts.',
      pattern: { source: [Sources.control], 'detail-type': Object.values(DecisionEvents) },
      target: 'alerts',
    },
  );
  for (const entry of entries) validatePattern(entry.pattern);
  return entries;
}

function checkConfig(config: CatalogueConfig): void {
  for (const field of ['gatewayClusterArn', 'gatewayTaskGroup'] as const) {
    const value: unknown = config[field];
    if (value !== undefined && (typeof value !== 'string' || value === '')) {
      throw new InvalidCatalogueConfigError(`${field} must be a non-empty string when given`);
    }
  }
  if (config.gatewayTaskGroup !== undefined && config.gatewayClusterArn === undefined) {
    throw new InvalidCatalogueConfigError('gatewayTaskGroup needs gatewayClusterArn');
  }
}
