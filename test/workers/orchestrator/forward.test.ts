/**
 * ForwardingBus: every event on the etcd bus, and decision events also on EventBridge (the
 * EventBridge emulator on 127.0.0.1, reached by the real SDK client).
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionEvents, NodeLostEvents } from '../../../shared/bus/controlEvents.js';
import { EtcdBus } from '../../../shared/bus/EtcdBus.js';
import { EventBridgeBus } from '../../../shared/bus/EventBridgeBus.js';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import { ForwardingBus } from '../../../workers/orchestrator/forward.js';
import { EtcdCluster } from '../../support/etcd.js';
import { EventBridgeEndpoint } from '../../support/eventBridgeEndpoint.js';
import { eventually } from '../../support/processes.js';

describe('ForwardingBus', () => {
  let etcd: EtcdCluster;
  let endpoint: EventBridgeEndpoint;
  beforeAll(async () => {
    etcd = await EtcdCluster.start();
    endpoint = await EventBridgeEndpoint.start();
  });
  afterAll(async () => {
    await endpoint?.stop();
    await etcd?.stop();
  });

  it('puts every event on the etcd bus and decision events on EventBridge too', async () => {
    // Arrange
    const etcdBus = await EtcdBus.connect({ endpoints: etcd.endpoints, prefix: 'forward/' });
    const eventBridge = new EventBridgeBus({
      eventBusName: 'streamheal',
      clientConfig: {
        endpoint: endpoint.url,
        region: 'us-east-1',
        credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      },
    });
    const bus = new ForwardingBus(etcdBus, eventBridge, pino({ level: 'silent' }));
    const onEtcd: BusEvent[] = [];
    bus.subscribe({ source: [Sources.control] }, (event) => {
      onEtcd.push(event);
    });
    const decision = makeEvent(Sources.control, DecisionEvents.nodeDeclaredLost, { node: 'g-1' });
    const lost = makeEvent(Sources.control, NodeLostEvents.gatewayProcessExited, { node: 'g-1' });

    // Act
    await bus.put([lost, decision]);
    await eventBridge.flush(5_000);

    // Assess
    await eventually(() => onEtcd.length === 2, 5_000);
    expect(onEtcd.map((e) => e.id)).toEqual([lost.id, decision.id]);
    expect(endpoint.events().map((e) => [e['detail-type'], e.detail.streamhealEventId])).toEqual([
      [DecisionEvents.nodeDeclaredLost, decision.id],
    ]);
    expect(endpoint.accepted[0]!.eventBusName).toBe('streamheal');
    await bus.close();
  });
});
