/**
 * EventBridge rules generated from the one catalogue of event patterns (shared/bus/catalogue.ts),
 * the same list the in-process router subscribes locally: one rule per entry, its pattern copied
 * as is, its target the entry's function (with that function's retry policy and DLQ).
 *
 * Entries matching AWS service events (source `aws.*`, e.g. ECS Task State Change) go on the
 * account's default bus, the only one AWS services deliver to; the others on the deployment's
 * own bus, where gateways and functions put their events.
 */
import * as events from 'aws-cdk-lib/aws-events';
import { Construct } from 'constructs';
import {
  catalogue,
  type CatalogueConfig,
  type CatalogueEntry,
  type TargetFunction,
} from '../../shared/bus/catalogue.js';
import type { EventPattern as BusPattern } from '../../shared/bus/EventBus.js';
import type { ControlFunction } from './ControlFunction.js';

export interface CatalogueRulesProps {
  /** The deployment's bus (streamheal.* events). */
  readonly bus: events.IEventBus;
  /** The function behind each catalogue target. */
  readonly functions: Record<TargetFunction, ControlFunction>;
  /** The deployment's ECS cluster and gateway task group, for the node-lost entry. @default {} */
  readonly catalogueConfig?: CatalogueConfig;
}

/** Whether an entry matches events AWS services send (which arrive on the default bus only). */
export function isAwsServiceEntry(entry: CatalogueEntry): boolean {
  const sources = (entry.pattern as { source?: unknown }).source;
  return (
    Array.isArray(sources) && sources.every((s) => typeof s === 'string' && s.startsWith('aws.'))
  );
}

/** A catalogue pattern as CDK's EventPattern (camelCase field names, same content). */
export function toCdkPattern(pattern: BusPattern): events.EventPattern {
  const fields: Record<string, string> = {
    source: 'source',
    'detail-type': 'detailType',
    detail: 'detail',
    resources: 'resources',
    account: 'account',
    region: 'region',
    time: 'time',
    id: 'id',
    version: 'version',
  };
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(pattern as Record<string, unknown>)) {
    const field = fields[key];
    if (field === undefined) throw new Error(`event pattern field "${key}" has no CDK equivalent`);
    result[field] = value;
  }
  return result as events.EventPattern;
}

export class CatalogueRules extends Construct {
  readonly entries: CatalogueEntry[];
  /** Rule per entry name. */
  readonly rules: Record<string, events.Rule>;

  constructor(scope: Construct, id: string, props: CatalogueRulesProps) {
    super(scope, id);
    this.entries = catalogue(props.catalogueConfig ?? {});
    this.rules = {};
    const defaultBus = events.EventBus.fromEventBusName(this, 'DefaultBus', 'default');
    for (const entry of this.entries) {
      const onDefaultBus = isAwsServiceEntry(entry);
      const rule = new events.Rule(this, entry.name, {
        eventBus: onDefaultBus ? defaultBus : props.bus,
        // Rule names are unique per bus: the deployment's bus is its own, the default bus is
        // shared by every deployment in the account, so there CloudFormation picks the name.
        ...(onDefaultBus ? {} : { ruleName: entry.name }),
        description: `${entry.name}: ${entry.description}`.slice(0, 512),
        eventPattern: toCdkPattern(entry.pattern),
      });
      rule.addTarget(props.functions[entry.target].eventTarget());
      this.rules[entry.name] = rule;
    }
  }
}
