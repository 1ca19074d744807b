import { describe, expect, it } from 'vitest';
import {
  catalogue,
  DECISION_INPUTS,
  InvalidCatalogueConfigError,
  TargetFunctions,
  UNROUTED_HEALTH_EVENTS,
  type CatalogueEntry,
} from '../../../shared/bus/catalogue.js';
import { DecisionEvents, NodeLostEvents } from '../../../shared/bus/controlEvents.js';
import { EVENT_ID_FIELD } from '../../../shared/bus/eventBridgeEntry.js';
import { matchesPattern, validatePattern } from '../../../shared/bus/eventPattern.js';
import { Sources } from '../../../shared/bus/events.js';
import { HealthEvents } from '../../../shared/health/events.js';
import { GATEWAY_PROCESS_EXITED } from '../../../workers/control/Supervisor.js';
import {
  controlEvent,
  decisionEvents,
  ec2StateChange,
  ecsServiceAction,
  ecsTaskRunning,
  ecsTaskStopped,
  EXAMPLE_CLUSTER_ARN,
  gatewayEvent,
  healthEvents,
  nodeLostEvents,
} from './catalogueExamples.js';

const onAws = catalogue({ gatewayClusterArn: EXAMPLE_CLUSTER_ARN });
const local = catalogue();

/** The entries an event triggers, by name, as EventBridge rules with these patterns would. */
function entriesFor(event: unknown, entries: CatalogueEntry[] = onAws): string[] {
  return entries.filter((entry) => matchesPattern(entry.pattern, event)).map((entry) => entry.name);
}

function targetsFor(event: unknown, entries: CatalogueEntry[] = onAws): string[] {
  return entries
    .filter((entry) => matchesPattern(entry.pattern, event))
    .map((entry) => entry.target);
}

describe('catalogue: shape', () => {
  it('has one entry per rule, each with a unique, valid EventBridge rule name', () => {
    expect(onAws.map((entry) => [entry.name, entry.target])).toEqual([
      ['streamheal-decide-gateway-health', 'decide'],
      ['streamheal-node-lost-ecs-task-stopped', 'nodeLost'],
      ['streamheal-node-lost-control', 'nodeLost'],
      ['streamheal-alerts-decisions', 'alerts'],
    ]);
    const names = onAws.map((entry) => entry.name);
    expect(new Set(names).size).toBe(names.length);
    for (const name of names) expect(name).toMatch(/^[.\-_A-Za-z0-9]{1,64}$/);
    for (const entry of onAws) {
      expect(TargetFunctions).toContain(entry.target);
      expect(entry.description).not.toBe('');
    }
  });

  it('holds valid patterns that survive JSON, as CDK and the router both need', () => {
    for (const entry of onAws) {
      const json: unknown = JSON.parse(JSON.stringify(entry.pattern));
      expect(json).toEqual(entry.pattern);
      expect(() => validatePattern(json)).not.toThrow();
    }
  });

  it('is a function of the cluster, and of the task group when other tasks share it', () => {
    const ecs = (entries: CatalogueEntry[]) =>
      entries.find((entry) => entry.name === 'streamheal-node-lost-ecs-task-stopped');
    expect(ecs(onAws)?.pattern).toEqual({
      source: ['aws.ecs'],
      'detail-type': ['ECS Task State Change'],
      detail: { clusterArn: [EXAMPLE_CLUSTER_ARN], lastStatus: ['STOPPED'] },
    });
    expect(ecs(local)).toBeUndefined();
    const grouped = catalogue({
      gatewayClusterArn: EXAMPLE_CLUSTER_ARN,
      gatewayTaskGroup: 'service:streamheal-gateway',
    });
    expect(ecs(grouped)?.pattern.detail).toEqual({
      clusterArn: [EXAMPLE_CLUSTER_ARN],
      lastStatus: ['STOPPED'],
      group: ['service:streamheal-gateway'],
    });
  });

  it('refuses a malformed configuration', () => {
    expect(() => catalogue({ gatewayClusterArn: '' })).toThrow(InvalidCatalogueConfigError);
    const notAString = { gatewayClusterArn: 42 } as unknown as { gatewayClusterArn: string };
    expect(() => catalogue(notAString)).toThrow(/gatewayClusterArn must be a non-empty string/);
    expect(() => catalogue({ gatewayTaskGroup: 'service:gw' })).toThrow(/needs gatewayClusterArn/);
  });

  it('decides on every health signal, and leaves out lifecycle events on purpose', () => {
    const classified = [...DECISION_INPUTS, ...UNROUTED_HEALTH_EVENTS].sort();
    // A new health event must be placed in one of the two lists.
    expect(classified).toEqual(Object.values(HealthEvents).sort());
    expect(new Set(classified).size).toBe(classified.length);
  });

  it('uses the detail-type the supervisor publishes', () => {
    expect(NodeLostEvents.gatewayProcessExited).toBe(GATEWAY_PROCESS_EXITED);
  });
});

describe('catalogue: which events trigger which entries', () => {
  it.each(DECISION_INPUTS)('routes the gateway health event "%s" to decide only', (type) => {
    expect(entriesFor(healthEvents[type])).toEqual(['streamheal-decide-gateway-health']);
  });

  it.each(UNROUTED_HEALTH_EVENTS)('routes the lifecycle event "%s" nowhere', (type) => {
    expect(entriesFor(healthEvents[type])).toEqual([]);
  });

  it('routes the documented ECS event of a stopped gateway task to nodeLost only', () => {
    expect(entriesFor(ecsTaskStopped)).toEqual(['streamheal-node-lost-ecs-task-stopped']);
  });

  it('ignores ECS tasks that run, stop in another cluster or belong to another group', () => {
    expect(entriesFor(ecsTaskRunning)).toEqual([]);
    const stopping = {
      ...ecsTaskRunning,
      detail: { ...ecsTaskRunning.detail, desiredStatus: 'STOPPED' },
    };
    expect(entriesFor(stopping)).toEqual([]);
    const otherCluster = {
      ...ecsTaskStopped,
      detail: {
        ...ecsTaskStopped.detail,
        clusterArn: 'arn:aws:ecs:us-west-2:111122223333:cluster/Batch',
      },
    };
    expect(entriesFor(otherCluster)).toEqual([]);
    const gatewaysOnly = catalogue({
      gatewayClusterArn: EXAMPLE_CLUSTER_ARN,
      gatewayTaskGroup: 'service:streamheal-gateway',
    });
    // The documented task belongs to `family:sample-fargate`, not to the gateway service.
    expect(entriesFor(ecsTaskStopped, gatewaysOnly)).toEqual([]);
    const gatewayTask = {
      ...ecsTaskStopped,
      detail: { ...ecsTaskStopped.detail, group: 'service:streamheal-gateway' },
    };
    expect(entriesFor(gatewayTask, gatewaysOnly)).toEqual([
      'streamheal-node-lost-ecs-task-stopped',
    ]);
  });

  it('ignores other AWS events, ECS service actions included', () => {
    expect(
      entriesFor(
        ecsServiceAction,
        catalogue({ gatewayClusterArn: ecsServiceAction.detail.clusterArn }),
      ),
    ).toEqual([]);
    expect(entriesFor(ec2StateChange)).toEqual([]);
  });

  it('without a cluster, routes no ECS event', () => {
    expect(entriesFor(ecsTaskStopped, local)).toEqual([]);
  });

  it.each(Object.values(NodeLostEvents))(
    'routes the control event "%s" to nodeLost only',
    (type) => {
      expect(entriesFor(nodeLostEvents[type])).toEqual(['streamheal-node-lost-control']);
      expect(entriesFor(nodeLostEvents[type], local)).toEqual(['streamheal-node-lost-control']);
    },
  );

  it.each(Object.values(DecisionEvents))('routes the decision "%s" to alerts only', (type) => {
    expect(entriesFor(decisionEvents[type])).toEqual(['streamheal-alerts-decisions']);
  });

  it('routes by source as well as detail-type, so no event loops back into decide', () => {
    // Decisions never reach decide or nodeLost: what decide emits cannot trigger it again.
    for (const event of Object.values(decisionEvents)) {
      expect(targetsFor(event)).not.toContain('decide');
      expect(targetsFor(event)).not.toContain('nodeLost');
    }
    expect(entriesFor(gatewayEvent(DecisionEvents.nodeIsolated))).toEqual([]);
    expect(entriesFor(gatewayEvent(NodeLostEvents.nodeLeaseExpired))).toEqual([]);
    expect(entriesFor(controlEvent(HealthEvents.nodeOverloaded))).toEqual([]);
    expect(
      entriesFor({
        ...healthEvents[HealthEvents.nodeOverloaded],
        source: 'streamheal.gateway.canary',
      }),
    ).toEqual([]);
    expect(
      entriesFor({
        ...healthEvents[HealthEvents.nodeOverloaded],
        source: Sources.gateway.toUpperCase(),
      }),
    ).toEqual([]);
  });

  it('routes our events the same after the trip through EventBridge', () => {
    const sent = healthEvents[HealthEvents.nodeOverloaded]!;
    const delivered = {
      version: '0',
      id: 'a6e3c0d2-1111-2222-3333-444455556666',
      'detail-type': sent['detail-type'],
      source: sent.source,
      account: '111122223333',
      time: sent.time.replace(/\.\d{3}Z$/, 'Z'),
      region: 'us-west-2',
      resources: sent.resources,
      detail: { ...sent.detail, [EVENT_ID_FIELD]: sent.id },
    };
    expect(entriesFor(delivered)).toEqual(entriesFor(sent));
    expect(entriesFor(delivered)).toEqual(['streamheal-decide-gateway-health']);
  });
});
