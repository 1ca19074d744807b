import { afterEach, describe, expect, it, vi } from 'vitest';
import { catalogue, DECISION_INPUTS, type CatalogueEntry } from '../../../shared/bus/catalogue.js';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { EventBridgeBus, SubscribeNotSupportedError } from '../../../shared/bus/EventBridgeBus.js';
import { InProcessBus } from '../../../shared/bus/InProcessBus.js';
import { routeCatalogue, RoutingError, type RouteHandler } from '../../../shared/bus/router.js';
import { HealthEvents } from '../../../shared/health/events.js';
import {
  decisionEvents,
  ec2StateChange,
  ecsTaskRunning,
  ecsTaskStopped,
  EXAMPLE_CLUSTER_ARN,
  gatewayEvent,
  healthEvents,
  nodeLostEvents,
} from './catalogueExamples.js';

/** Margin for "nothing else arrives", after the expected events did. */
const SETTLE_MS = 100;

const entries = catalogue({ gatewayClusterArn: EXAMPLE_CLUSTER_ARN });
let bus: InProcessBus;

afterEach(async () => {
  await bus.close();
});

interface Call {
  target: string;
  entry: string;
  id: string;
}

function recordingHandlers(calls: Call[]): Record<'decide' | 'nodeLost' | 'alerts', RouteHandler> {
  const handler =
    (target: string): RouteHandler =>
    (event, entry) => {
      calls.push({ target, entry: entry.name, id: event.id });
    };
  return { decide: handler('decide'), nodeLost: handler('nodeLost'), alerts: handler('alerts') };
}

/** The AWS examples carry no `id` of ours; they are BusEvents already in every other field. */
function asBusEvent(event: { id: string }): BusEvent {
  return event as unknown as BusEvent;
}

describe('routeCatalogue on InProcessBus', () => {
  it('delivers every example event to its function, once, in put order, and nothing else', async () => {
    bus = new InProcessBus();
    const calls: Call[] = [];
    routeCatalogue(bus, entries, recordingHandlers(calls));
    const health = Object.values(healthEvents);
    const lost = [asBusEvent(ecsTaskStopped), ...Object.values(nodeLostEvents)];
    const decisions = Object.values(decisionEvents);
    const unrelated = [asBusEvent(ecsTaskRunning), asBusEvent(ec2StateChange)];

    await bus.put([...health, ...lost, ...decisions, ...unrelated]);

    const expectedDecide = health.filter((event) =>
      DECISION_INPUTS.includes(event['detail-type'] as never),
    );
    const total = expectedDecide.length + lost.length + decisions.length;
    await vi.waitFor(() => expect(calls).toHaveLength(total));
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const idsOf = (target: string) =>
      calls.filter((call) => call.target === target).map((call) => call.id);
    expect(idsOf('decide')).toEqual(expectedDecide.map((event) => event.id));
    expect(idsOf('alerts')).toEqual(decisions.map((event) => event.id));
    expect(idsOf('nodeLost').sort()).toEqual(lost.map((event) => event.id).sort());
    expect(calls.find((call) => call.id === ecsTaskStopped.id)?.entry).toBe(
      'streamheal-node-lost-ecs-task-stopped',
    );
    expect(calls).toHaveLength(total);
  });

  it('passes the entry that matched, so one function can tell its triggers apart', async () => {
    bus = new InProcessBus();
    const seen: [string, CatalogueEntry['name']][] = [];
    const ignore = () => {};
    routeCatalogue(bus, entries, {
      decide: ignore,
      alerts: ignore,
      nodeLost: (event, entry) => {
        seen.push([event['detail-type'], entry.name]);
      },
    });

    await bus.put([asBusEvent(ecsTaskStopped)]);
    await bus.put([Object.values(nodeLostEvents)[0]!]);

    await vi.waitFor(() => expect(seen).toHaveLength(2));
    expect(seen.sort()).toEqual([
      ['ECS Task State Change', 'streamheal-node-lost-ecs-task-stopped'],
      ['Gateway Process Exited', 'streamheal-node-lost-control'],
    ]);
  });

  it('stops delivering once unrouted', async () => {
    bus = new InProcessBus();
    const calls: Call[] = [];
    const unroute = routeCatalogue(bus, entries, recordingHandlers(calls));

    await bus.put([healthEvents[HealthEvents.nodeOverloaded]!]);
    await vi.waitFor(() => expect(calls).toHaveLength(1));
    unroute();
    unroute();
    await bus.put([healthEvents[HealthEvents.nodeRecovered]!]);
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));

    expect(calls.map((call) => call.target)).toEqual(['decide']);
  });

  it('keeps routing to other functions when one handler fails', async () => {
    bus = new InProcessBus({ onHandlerError: () => {} });
    const calls: Call[] = [];
    routeCatalogue(bus, entries, {
      ...recordingHandlers(calls),
      decide: () => {
        throw new Error('decide bug');
      },
    });

    await bus.put([gatewayEvent(HealthEvents.nodeOverloaded), Object.values(decisionEvents)[0]!]);

    await vi.waitFor(() => expect(calls.map((call) => call.target)).toEqual(['alerts']));
  });

  it('refuses a missing handler and a handler without an entry', () => {
    bus = new InProcessBus();
    const ignore = () => {};
    expect(() => routeCatalogue(bus, entries, { decide: ignore, alerts: ignore })).toThrow(
      RoutingError,
    );
    expect(() => routeCatalogue(bus, entries, { decide: ignore, alerts: ignore })).toThrow(
      /no handler for nodeLost/,
    );
    const typo = { decide: ignore, nodeLost: ignore, alerts: ignore, alert: ignore };
    expect(() => routeCatalogue(bus, entries, typo as never)).toThrow(
      /no catalogue entry targets alert/,
    );
    const decideOnly = entries.filter((entry) => entry.target === 'decide');
    expect(() =>
      routeCatalogue(bus, decideOnly, { decide: ignore, nodeLost: ignore, alerts: ignore }),
    ).toThrow(/no catalogue entry targets nodeLost, alerts/);
  });
});

describe('routeCatalogue on EventBridgeBus', () => {
  it('fails with the reason: on AWS, rules route the catalogue', async () => {
    bus = new InProcessBus();
    const eventBridge = new EventBridgeBus({
      clientConfig: {
        region: 'us-east-1',
        endpoint: 'http://127.0.0.1:9',
        credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
      },
    });
    try {
      const ignore = () => {};
      expect(() =>
        routeCatalogue(eventBridge, entries, { decide: ignore, nodeLost: ignore, alerts: ignore }),
      ).toThrow(SubscribeNotSupportedError);
    } finally {
      await eventBridge.close();
    }
  });
});
