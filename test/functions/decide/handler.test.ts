/**
 * The decide Lambda handler, unchanged, on DynamoDB (dynalite) and EventBridge (the PutEvents
 * emulator) through the real AWS SDK; and its in-process twin routed by the catalogue on the
 * local bus over the real MemoryStore.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogue } from '../../../shared/bus/catalogue.js';
import { DecisionEvents } from '../../../shared/bus/controlEvents.js';
import { EVENT_ID_FIELD } from '../../../shared/bus/eventBridgeEntry.js';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { Sources } from '../../../shared/bus/events.js';
import { InProcessBus } from '../../../shared/bus/InProcessBus.js';
import { routeCatalogue } from '../../../shared/bus/router.js';
import { CONTROL_NODE_PREFIX, type NodeControlRecord } from '../../../shared/control/types.js';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';
import { decideRunner, handler } from '../../../functions/decide/handler.js';
import { nodeLostRunner } from '../../../functions/nodeLost/handler.js';
import { closeLambdaDeps } from '../../../functions/runtime.js';
import {
  T0,
  captureLogs,
  overloaded,
  recovered,
  register,
  sleep,
} from '../../shared/control/helpers.js';
import { asDelivered, startLambdaEnv, type LambdaEnv } from '../lambdaEnv.js';

describe('decide: Lambda handler on DynamoDB and EventBridge', () => {
  let env: LambdaEnv;
  beforeAll(async () => {
    env = await startLambdaEnv();
    for (const id of ['gateway-1', 'gateway-2', 'gateway-3']) await register(env.store, id, 40);
  }, 30_000);
  afterAll(async () => {
    await closeLambdaDeps();
    await env.restore();
  });

  it('isolates on an EventBridge-delivered health event, once for two copies of it', async () => {
    const event = overloaded('gateway-1', T0);
    const first = await handler(asDelivered(event));
    // EventBridge gives a retried PutEvents a second id; our id in the detail is the same.
    const copy = await handler(asDelivered(event));

    expect(first).toMatchObject({
      eventId: event.id,
      outcome: 'applied',
      decisions: [{ kind: 'eject' }],
    });
    expect(copy).toMatchObject({ eventId: event.id, outcome: 'duplicate', decisions: [] });
    // The handler returned only after EventBridge accepted its decision events.
    const published = env.eventBridge.events();
    // The Lambda moves through the source gateway's control service (test/functions/runtime.test.ts);
    // these registrations have none, so the move fails and says why.
    expect(published.map((e) => e['detail-type'])).toEqual([
      DecisionEvents.nodeIsolated,
      DecisionEvents.migrationStarted,
      DecisionEvents.migrationFailed,
    ]);
    expect(published[2]!.detail).toMatchObject({
      from: 'gateway-1',
      requested: 40,
      moved: 0,
      targets: [
        { node: 'gateway-2', count: 20 },
        { node: 'gateway-3', count: 20 },
      ],
      error: 'gateway gateway-1 has no control service in its node record; cannot move',
    });
    expect(published[0]).toMatchObject({
      source: Sources.control,
      resources: ['gateway-1'],
      detail: { node: 'gateway-1', message: 'isolating gateway-1 due to CPU > 95% for 30s' },
    });
    expect(typeof published[0]!.detail[EVENT_ID_FIELD]).toBe('string');
    expect((await env.store.get(`decisions/${event.id}`))?.value).toMatchObject({
      status: 'completed',
    });
    const record = await env.store.get<NodeControlRecord>(CONTROL_NODE_PREFIX + 'gateway-1');
    expect(record?.value.status).toBe('isolated');
  });

  it('ignores a late copy of an older event once a newer one moved the node on', async () => {
    const back = recovered('gateway-1', T0 + 10_000);
    await handler(asDelivered(back));
    // An event older than the reorder window (60 s before the newest), delivered now.
    const early = overloaded('gateway-1', T0 - 100_000);
    expect(await handler(asDelivered(early))).toMatchObject({ outcome: 'stale' });
    const record = await env.store.get<NodeControlRecord>(CONTROL_NODE_PREFIX + 'gateway-1');
    expect(record?.value.status).toBe('active');
    expect(env.eventBridge.events().at(-1)!['detail-type']).toBe(DecisionEvents.nodeReinstated);
  });
});

describe('decide: in-process runner routed by the catalogue', () => {
  it('runs the same function for events put on the local bus', async () => {
    const store = new MemoryStore();
    const bus = new InProcessBus();
    const logs = captureLogs();
    try {
      for (const id of ['gateway-1', 'gateway-2', 'gateway-3']) await register(store, id, 12);
      const deps = { store, bus, logger: logs.logger };
      const alerted: BusEvent[] = [];
      const unroute = routeCatalogue(bus, catalogue(), {
        decide: decideRunner(deps),
        nodeLost: nodeLostRunner(deps),
        alerts: (event) => {
          alerted.push(event);
        },
      });
      const event = overloaded('gateway-2', T0);
      await bus.put([event, event]);
      for (let i = 0; i < 50 && alerted.length < 3; i++) await sleep(10);
      unroute();
      expect(logs.messages()).toEqual(
        expect.arrayContaining([
          'isolating gateway-2 due to CPU > 95% for 30s',
          'rebalanced 12 connections to gateway-1,3',
        ]),
      );
      expect(alerted.map((e) => e['detail-type'])).toEqual([
        DecisionEvents.nodeIsolated,
        DecisionEvents.migrationStarted,
        DecisionEvents.migrationCompleted,
      ]);
    } finally {
      await bus.close();
      await store.close();
    }
  });
});
