/**
 * The Lambdas' dependencies (`lambdaDeps`) move sessions for real: the decide handler, on
 * DynamoDB (dynalite) and EventBridge (the PutEvents emulator) with its key ring from
 * STREAMHEAL_TOKEN_KEYS, isolates an overloaded gateway and moves its SDK clients through the
 * gateway's gRPC control service to the others, make-before-break. Gateways run in this process
 * on loopback, registered in the same tables.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DecisionEvents } from '../../shared/bus/controlEvents.js';
import { InProcessBus } from '../../shared/bus/InProcessBus.js';
import { DynamoStore } from '../../shared/store/DynamoStore.js';
import { createLogger } from '../../shared/telemetry/logger.js';
import { keyRingFromSecret } from '../../shared/tokens.js';
import { handler as decide } from '../../functions/decide/handler.js';
import { closeLambdaDeps, lambdaDeps } from '../../functions/runtime.js';
import { GatewayMoveExecutor } from '../../shared/control/moves.js';
import { startGateway, type Gateway, type NodeRecord } from '../../workers/gateway/Gateway.js';
import { PUBLISH_KEY, RecordingClient, until } from '../shared/client/harness.js';
import { overloaded, recovered } from '../shared/control/helpers.js';
import { eventually } from '../support/processes.js';
import { asDelivered, startLambdaEnv, type LambdaEnv } from './lambdaEnv.js';

/** The ring the gateways verify with: the stack's key ring secret, `kid:secret` (current first). */
const RING = 'k2:' + 'n'.repeat(40) + ',k1:' + 'o'.repeat(40);

describe('lambdaDeps: decide moves sessions through the source gateway', () => {
  let env: LambdaEnv;
  const gateways: { gateway: Gateway; store: DynamoStore }[] = [];
  const clients: RecordingClient[] = [];

  beforeAll(async () => {
    env = await startLambdaEnv({ STREAMHEAL_TOKEN_KEYS: RING });
    for (const nodeId of ['gw-a', 'gw-b', 'gw-c']) {
      // Each gateway with its own client on the tables, as separate tasks would have.
      const store = DynamoStore.fromEnv(process.env);
      const gateway = await startGateway({
        nodeId,
        store,
        bus: new InProcessBus(),
        keyRing: keyRingFromSecret(RING),
        publishKey: PUBLISH_KEY,
        logger: createLogger(nodeId, 'silent'),
        port: 0,
        controlPort: 0,
        heartbeat: true,
        registrationMs: 300,
      });
      gateways.push({ gateway, store });
    }
  }, 30_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.client.close()));
    for (const { gateway, store } of gateways) {
      await gateway.close();
      await store.close();
    }
    await closeLambdaDeps();
    await env?.restore();
  });

  const connections = async (node: string) =>
    (await env.store.get<NodeRecord>(`nodes/${node}`))?.value.connections.ws;
  const published = (type: string) =>
    env.eventBridge.events().filter((e) => e['detail-type'] === type);

  it('uses GatewayMoveExecutor, with the ring of STREAMHEAL_TOKEN_KEYS', async () => {
    expect(lambdaDeps('decide').moves).toBeInstanceOf(GatewayMoveExecutor);
    // A ring the gateways do not hold: the control service refuses, the move fails loudly.
    await closeLambdaDeps();
    process.env.STREAMHEAL_TOKEN_KEYS = 'k9:' + 'w'.repeat(40);
    const c = gateways[2]!.gateway;
    const client = new RecordingClient({ urls: [c.url] });
    clients.push(client);
    await client.client.connect();
    await eventually(async () => (await connections('gw-c')) === 1, 10_000, 'registered');
    const t0 = Date.now();
    expect(await decide(asDelivered(overloaded('gw-c', t0)))).toMatchObject({
      outcome: 'applied',
      decisions: [{ kind: 'eject' }],
    });
    expect(published(DecisionEvents.migrationFailed)).toEqual([
      expect.objectContaining({
        detail: expect.objectContaining({
          moved: 0,
          error: expect.stringMatching(/UNAUTHENTICATED/),
        }),
      }),
    ]);
    expect(client.client.url).toBe(c.url);
    // Back in rotation (a target again) for the next test.
    await decide(asDelivered(recovered('gw-c', t0 + 1_000)));
    expect(published(DecisionEvents.nodeReinstated)).toHaveLength(1);
    await closeLambdaDeps();
    process.env.STREAMHEAL_TOKEN_KEYS = RING;
  }, 30_000);

  it('moves every client of an isolated gateway to the others, none disconnected, nothing lost', async () => {
    const [a, b, c] = gateways.map((g) => g.gateway);
    const moving: RecordingClient[] = [];
    for (let i = 0; i < 4; i++) {
      const client = new RecordingClient({ urls: [a!.url] });
      clients.push(client);
      moving.push(client);
      await client.client.connect();
      await client.client.subscribe('live');
    }
    await eventually(async () => (await connections('gw-a')) === 4, 10_000, 'four on gw-a');

    const started = performance.now();
    const result = await decide(asDelivered(overloaded('gw-a', Date.now())));
    // The seed's budget for the control path: event to completed move < 1 s locally.
    const tookMs = performance.now() - started;
    console.info(`decide Lambda: health event to 4 sessions moved in ${tookMs.toFixed(0)} ms`);
    expect(tookMs).toBeLessThan(1_000);
    expect(result).toMatchObject({ outcome: 'applied', decisions: [{ kind: 'eject' }] });
    const completed = published(DecisionEvents.migrationCompleted);
    expect(completed).toHaveLength(1);
    expect(completed[0]!.detail).toMatchObject({ from: 'gw-a', requested: 4, moved: 4 });

    const urls = moving.map((r) => r.client.url);
    expect(urls).not.toContain(a!.url);
    expect(new Set(urls)).toEqual(new Set([b!.url, c!.url]));
    const response = await fetch(`${b!.url}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PUBLISH_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'live', data: 'after the move' }),
    });
    const { position } = (await response.json()) as { position: number };
    for (const r of moving) {
      await until(() => r.positions('live').includes(position), 'delivered everywhere');
      expect(r.of('moved')).toHaveLength(1);
      expect(r.of('disconnected')).toEqual([]);
    }
  }, 30_000);
});
