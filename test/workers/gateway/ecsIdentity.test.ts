/**
 * Gateway identity on ECS. The task metadata endpoint is an emulator on 127.0.0.1 serving the
 * documented v4 `/task` shape (ecsMetadataEndpoint.ts); the store is DynamoDB (dynalite) and the
 * bus EventBridge (the PutEvents emulator), as on AWS. Gateway processes (dist/, run
 * `npm run build` first) started with ECS_CONTAINER_METADATA_URI_V4 register under their task
 * id with their task ARN and advertised addresses; the ECS Developer Guide's stopped-task event,
 * for their tasks, makes the nodeLost Lambda handler declare the right gateway lost.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DecisionEvents } from '../../../shared/bus/controlEvents.js';
import type { EventBridgeEvent } from '../../../shared/bus/eventBridgeEntry.js';
import { CONTROL_NODE_PREFIX, type NodeControlRecord } from '../../../shared/control/types.js';
import { handler as nodeLost } from '../../../functions/nodeLost/handler.js';
import { closeLambdaDeps } from '../../../functions/runtime.js';
import type { NodeRecord } from '../../../workers/gateway/Gateway.js';
import {
  EcsMetadataError,
  gatewayIdentity,
  parseTaskMetadata,
  readEcsTask,
} from '../../../workers/gateway/ecsIdentity.js';
import { ecsTaskStopped } from '../../shared/bus/catalogueExamples.js';
import { closedPort } from '../../shared/client/harness.js';
import { startLambdaEnv, type LambdaEnv } from '../../functions/lambdaEnv.js';
import { dist, eventually, killPids, spawnNode, type Spawned } from '../../support/processes.js';
import {
  CLUSTER_ARN,
  EcsMetadataEndpoint,
  taskArnFor,
  taskMetadata,
} from './ecsMetadataEndpoint.js';

const newTaskId = () => randomBytes(16).toString('hex');

describe('readEcsTask / gatewayIdentity against the metadata endpoint emulator', () => {
  let endpoint: EcsMetadataEndpoint;
  beforeAll(async () => {
    endpoint = await EcsMetadataEndpoint.start();
  });
  afterAll(() => endpoint.stop());

  it('reads task id, ARN, cluster, zone and the awsvpc IPv4 from the documented /task shape', async () => {
    const taskId = newTaskId();
    const uri = endpoint.add({ taskArn: taskArnFor(taskId), ipv4: '10.0.0.139' });
    expect(await readEcsTask(uri)).toEqual({
      taskArn: taskArnFor(taskId),
      taskId,
      cluster: CLUSTER_ARN,
      availabilityZone: 'us-west-2b',
      privateIpv4: '10.0.0.139',
    });
    expect(endpoint.requests.at(-1)).toBe(`${new URL(uri).pathname}/task`);
  });

  it('retries an endpoint that is not ready yet', async () => {
    const taskId = newTaskId();
    const uri = endpoint.add({ taskArn: taskArnFor(taskId), ipv4: '10.0.0.7', failFirst: 2 });
    const task = await readEcsTask(uri, { timeoutMs: 3_000, retryMs: 20 });
    expect(task.taskId).toBe(taskId);
    expect(endpoint.requests.filter((path) => path.includes(taskId))).toHaveLength(3);
  });

  it('gives up within its budget with an error naming the URL, for silence and for refusal', async () => {
    const uri = endpoint.add({ taskArn: taskArnFor(newTaskId()), ipv4: '10.0.0.8', hang: true });
    const started = performance.now();
    const silent = await readEcsTask(uri, { timeoutMs: 400 }).catch((e: unknown) => e);
    const took = performance.now() - started;
    expect(silent).toBeInstanceOf(EcsMetadataError);
    expect((silent as Error).message).toBe(
      `ECS task metadata not read from ${uri}/task within 400 ms (ECS_CONTAINER_METADATA_URI_V4): no answer`,
    );
    expect(took).toBeGreaterThanOrEqual(390);
    expect(took).toBeLessThan(2_000);

    const refused = `http://127.0.0.1:${await closedPort()}/v4/abc`;
    await expect(readEcsTask(refused, { timeoutMs: 300, retryMs: 50 })).rejects.toThrow(
      `ECS task metadata not read from ${refused}/task within 300 ms`,
    );
  });

  it('refuses a task without an ARN or without an IPv4 address', () => {
    const task = taskMetadata({ taskArn: taskArnFor('abc'), ipv4: '10.0.0.9' });
    expect(() => parseTaskMetadata({ ...task, TaskARN: undefined }, 'here')).toThrow(
      'here: no task ARN in TaskARN',
    );
    const noNetworks = {
      ...task,
      Containers: (task.Containers as object[]).map((c) => ({ ...c, Networks: [] })),
    };
    expect(() => parseTaskMetadata(noNetworks, 'here')).toThrow(
      'here: no IPv4 address in Containers[].Networks[].IPv4Addresses',
    );
  });

  it('off ECS: the configured node id, no task, no advertised address', async () => {
    expect(await gatewayIdentity({})).toEqual({ nodeId: 'gateway-1' });
    expect(await gatewayIdentity({ STREAMHEAL_NODE_ID: 'edge-3' })).toEqual({ nodeId: 'edge-3' });
    expect(await gatewayIdentity({ STREAMHEAL_ADVERTISE_HOST: '192.0.2.10' })).toEqual({
      nodeId: 'gateway-1',
      advertise: { host: '192.0.2.10' },
    });
  });

  it('advertises the public URL beside the addresses, on ECS and off it', async () => {
    const publicUrl = 'wss://push.example.com';
    expect(await gatewayIdentity({ STREAMHEAL_PUBLIC_URL: publicUrl })).toEqual({
      nodeId: 'gateway-1',
      advertise: { publicUrl },
    });
    const taskId = newTaskId();
    const uri = endpoint.add({ taskArn: taskArnFor(taskId), ipv4: '10.0.3.5' });
    expect(
      await gatewayIdentity({
        ECS_CONTAINER_METADATA_URI_V4: uri,
        STREAMHEAL_PUBLIC_URL: publicUrl,
      }),
    ).toMatchObject({ nodeId: taskId, advertise: { host: '10.0.3.5', publicUrl } });
  });

  it('on ECS: the task id, unless STREAMHEAL_NODE_ID / STREAMHEAL_ADVERTISE_HOST say otherwise', async () => {
    const taskId = newTaskId();
    const uri = endpoint.add({ taskArn: taskArnFor(taskId), ipv4: '10.0.3.4' });
    expect(await gatewayIdentity({ ECS_CONTAINER_METADATA_URI_V4: uri })).toMatchObject({
      nodeId: taskId,
      taskArn: taskArnFor(taskId),
      advertise: { host: '10.0.3.4' },
    });
    expect(
      await gatewayIdentity({
        ECS_CONTAINER_METADATA_URI_V4: uri,
        STREAMHEAL_NODE_ID: 'gateway-east',
        STREAMHEAL_ADVERTISE_HOST: 'gw.internal',
        STREAMHEAL_ADVERTISE_URL: 'https://gw.example.com',
      }),
    ).toMatchObject({
      nodeId: 'gateway-east',
      taskArn: taskArnFor(taskId),
      advertise: { host: 'gw.internal', url: 'https://gw.example.com' },
    });
  });
});

/** The documented STOPPED task event, for our task (its ARN, network interface and a fresh time). */
function taskStopped(taskArn: string, ipv4: string, id: string): EventBridgeEvent {
  const [container] = ecsTaskStopped.detail.containers;
  return {
    ...ecsTaskStopped,
    id,
    time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    resources: [taskArn],
    detail: {
      ...ecsTaskStopped.detail,
      clusterArn: CLUSTER_ARN,
      taskArn,
      containers: [
        {
          ...container!,
          name: 'gateway',
          taskArn,
          networkInterfaces: [{ ...container!.networkInterfaces[0]!, privateIpv4Address: ipv4 }],
        },
      ],
    },
  };
}

describe('gateway processes on ECS, and nodeLost for their stopped tasks', () => {
  let env: LambdaEnv;
  let endpoint: EcsMetadataEndpoint;
  const children: Spawned[] = [];
  beforeAll(async () => {
    env = await startLambdaEnv();
    endpoint = await EcsMetadataEndpoint.start();
  }, 30_000);
  afterEach(() => killPids(children.map((child) => child.pid)));
  afterAll(async () => {
    killPids(children.map((child) => child.pid));
    await closeLambdaDeps();
    await endpoint?.stop();
    await env?.restore();
  });

  /** A gateway as the stack starts it (0.0.0.0 there; 127.0.0.1 here), in the emulated task. */
  function startGateway(uri: string, extra: Record<string, string> = {}): Spawned {
    const child = spawnNode(dist('workers/gateway/main.js'), [], {
      ECS_CONTAINER_METADATA_URI_V4: uri,
      STREAMHEAL_STORE: 'dynamodb',
      STREAMHEAL_HOST: '127.0.0.1',
      STREAMHEAL_PORT: '0',
      STREAMHEAL_CONTROL_PORT: '0',
      STREAMHEAL_CLUSTER_SECRET: 'k1:' + 'c'.repeat(32),
      STREAMHEAL_PUBLISH_KEY: 'publish-key-1',
      STREAMHEAL_DRAIN_MS: '0',
      STREAMHEAL_CANARY_INTERVAL_MS: '0',
      STREAMHEAL_LOG_LEVEL: 'info',
      ...extra,
    });
    children.push(child);
    return child;
  }

  const registration = (node: string) =>
    eventually(async () => (await env.store.get<NodeRecord>(`nodes/${node}`))?.value, 20_000);

  /** The control service's real port, from its log line. */
  async function controlPort(child: Spawned): Promise<string> {
    const [, port] = await child.waitFor(
      /"address":"127\.0\.0\.1:(\d+)","msg":"control service listening"/,
    );
    return port!;
  }

  it('registers the task id, task ARN and advertised addresses; a crash is declared lost by taskArn', async () => {
    const taskId = newTaskId();
    const taskArn = taskArnFor(taskId);
    const gateway = startGateway(endpoint.add({ taskArn, ipv4: '10.0.1.23' }));
    const record = await registration(taskId);
    const port = await controlPort(gateway);
    expect(record).toMatchObject({
      id: taskId,
      taskArn,
      control: `10.0.1.23:${port}`,
      url: expect.stringMatching(/^http:\/\/10\.0\.1\.23:\d+$/),
      state: 'active',
    });
    await gateway.waitFor(/"msg":"gateway listening"/);
    expect(gateway.stdout()).toContain(`"url":"http://127.0.0.1:${new URL(record.url).port}"`);

    // The container dies; ECS reports the task stopped while its registration still lives.
    process.kill(gateway.pid, 'SIGKILL');
    await gateway.exited;
    expect(await env.store.get(`nodes/${taskId}`)).toBeDefined();
    const event = taskStopped(taskArn, '10.0.1.23', crypto.randomUUID());
    expect(await nodeLost(event)).toMatchObject({
      outcome: 'applied',
      node: taskId,
      decisions: [{ kind: 'lost' }],
    });
    // EventBridge delivers at least once: the copy changes nothing.
    expect(await nodeLost(event)).toMatchObject({ outcome: 'duplicate', node: taskId });
    const control = await env.store.get<NodeControlRecord>(CONTROL_NODE_PREFIX + taskId);
    expect(control?.value).toMatchObject({
      status: 'lost',
      lost: { cause: 'ecs_task_stopped', incarnation: `task:${taskArn}`, ecsVersion: 5 },
    });
    const lost = env.eventBridge
      .events()
      .filter(
        (e) => e['detail-type'] === DecisionEvents.nodeDeclaredLost && e.detail.node === taskId,
      );
    expect(lost).toHaveLength(1);
    expect(lost[0]!.detail).toMatchObject({ incarnation: `task:${taskArn}` });
  }, 60_000);

  it('a gateway named by STREAMHEAL_NODE_ID is found by its taskArn', async () => {
    const taskArn = taskArnFor(newTaskId());
    const gateway = startGateway(endpoint.add({ taskArn, ipv4: '10.0.2.5' }), {
      STREAMHEAL_NODE_ID: 'gateway-east',
    });
    expect(await registration('gateway-east')).toMatchObject({ id: 'gateway-east', taskArn });
    process.kill(gateway.pid, 'SIGKILL');
    await gateway.exited;
    expect(await nodeLost(taskStopped(taskArn, '10.0.2.5', crypto.randomUUID()))).toMatchObject({
      outcome: 'applied',
      node: 'gateway-east',
    });
  }, 60_000);

  it('a task that stopped cleanly (registration revoked) is declared lost under its task id', async () => {
    const taskId = newTaskId();
    const taskArn = taskArnFor(taskId);
    const gateway = startGateway(endpoint.add({ taskArn, ipv4: '10.0.1.24' }));
    await registration(taskId);
    process.kill(gateway.pid, 'SIGTERM');
    expect(await gateway.exited).toEqual({ code: 0, signal: null });
    // Revoked on the way out (a reader may trust the lease it saw alive for a second).
    await eventually(async () => (await env.store.get(`nodes/${taskId}`)) === undefined, 5_000);
    expect(await nodeLost(taskStopped(taskArn, '10.0.1.24', crypto.randomUUID()))).toMatchObject({
      outcome: 'applied',
      node: taskId,
      decisions: [{ kind: 'lost' }],
    });
  }, 60_000);

  it('a gateway whose metadata endpoint does not answer exits with the reason', async () => {
    const uri = endpoint.add({ taskArn: taskArnFor(newTaskId()), ipv4: '10.0.1.25', hang: true });
    const gateway = startGateway(uri, { STREAMHEAL_ECS_METADATA_TIMEOUT_MS: '500' });
    expect((await gateway.exited).code).toBe(1);
    expect(gateway.stdout()).toContain(
      `ECS task metadata not read from ${uri}/task within 500 ms (ECS_CONTAINER_METADATA_URI_V4): no answer`,
    );
  }, 30_000);
});
