/**
 * The gateway control service over real gRPC on loopback, with real gateways and SDK clients:
 * authentication, Status and Reload, Migrate (make-before-break: the client resumes on the
 * target before its old connection closes, every position exactly once), roll back when a
 * client does not move, a replayed token, and Drain.
 */
import { Metadata, credentials, makeClientConstructor, status as grpcStatus } from '@grpc/grpc-js';
import { WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import {
  GatewayControlClient,
  gatewayControlService,
  type MigrateResult,
} from '../../../../shared/protocol/gatewayControl.js';
import { signRedirectToken } from '../../../../shared/redirectTokens.js';
import { keyRingFromSecret } from '../../../../shared/tokens.js';
import { eventually } from '../../../support/processes.js';
import {
  Cluster,
  keyRing,
  range,
  until,
  type TestGateway,
} from '../../../shared/client/harness.js';

const metric = (text: string, pattern: RegExp): number => Number(text.match(pattern)?.[1] ?? NaN);

describe('gateway control service', () => {
  let cluster: Cluster;
  const clients: GatewayControlClient[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await cluster.close();
  });

  function control(gateway: TestGateway, ring = keyRing): GatewayControlClient {
    const client = new GatewayControlClient(gateway.gateway.controlAddress!, ring);
    clients.push(client);
    return client;
  }

  async function redirectToken(session: string, from: TestGateway, to: TestGateway) {
    const { token } = await signRedirectToken(keyRing, {
      sessionId: session,
      sourceNode: from.gateway.nodeId,
      targetNode: to.gateway.nodeId,
    });
    return token;
  }

  it('refuses calls without a token or with a token of another key ring', async () => {
    cluster = new Cluster();
    const a = await cluster.gateway({ controlPort: 0 });
    const forged = control(a, keyRingFromSecret('not-the-cluster-secret-at-all'));
    await expect(forged.status()).rejects.toMatchObject({ code: grpcStatus.UNAUTHENTICATED });
    await expect(forged.reload({ version: 9, routes: [] })).rejects.toMatchObject({
      code: grpcStatus.UNAUTHENTICATED,
    });
    await expect(forged.migrate([])).rejects.toMatchObject({ code: grpcStatus.UNAUTHENTICATED });
    const Raw = makeClientConstructor(gatewayControlService(), 'GatewayControl');
    const raw = new Raw(a.gateway.controlAddress!, credentials.createInsecure()) as unknown as {
      status(request: object, metadata: Metadata, callback: (error: unknown) => void): void;
      close(): void;
    };
    const error = await new Promise<{ code: number; details: string }>((resolve) =>
      raw.status({}, new Metadata(), (e) => resolve(e as { code: number; details: string })),
    );
    raw.close();
    expect(error.code).toBe(grpcStatus.UNAUTHENTICATED);
    expect(error.details).toMatch(/control call refused/);
    expect(a.gateway.status(0).routeTableVersion).toBe(0); // the forged reload changed nothing
  });

  it('reports status and takes newer route tables only', async () => {
    cluster = new Cluster();
    const a = await cluster.gateway({ controlPort: 0 });
    const recording = cluster.client([a.url]);
    await recording.client.connect();
    const client = control(a);
    const routes = [{ node: 'gw-9', url: 'http://127.0.0.1:9', state: 'active' }];
    expect(await client.reload({ version: 2, routes })).toEqual({ version: 2 });
    await expect(client.reload({ version: 1, routes: [] })).rejects.toMatchObject({
      code: grpcStatus.FAILED_PRECONDITION,
    });
    expect(await client.status(10)).toEqual({
      node: a.gateway.nodeId,
      url: a.url,
      state: 'active',
      websocketConnections: 1,
      sseConnections: 0,
      sessions: [recording.client.session],
      routeTableVersion: 2,
    });
    const record = await cluster.store.get<{ control: string; state: string }>(
      `nodes/${a.gateway.nodeId}`,
    );
    expect(record?.value).toMatchObject({ control: a.gateway.controlAddress, state: 'active' });
  });

  it('moves a session make-before-break: resumed on the target before the old connection closes, every position once', async () => {
    cluster = new Cluster();
    const a = await cluster.gateway({ controlPort: 0 });
    const b = await cluster.gateway();
    // The client only knows A: it learns B from the redirect.
    const recording = cluster.client([a.url]);
    const { client } = recording;
    await client.connect();
    await client.subscribe('live');
    const publisher = cluster.keepPublishing(b, 'live');
    await until(() => recording.positions('live').length >= 20, '20 messages on A');
    const results: MigrateResult[] = [];
    const token = await redirectToken(client.session!, a, b);
    await control(a).migrate(
      [{ session: client.session!, targetNode: b.gateway.nodeId, targetUrl: b.url, token }],
      { ttlMs: 5_000 },
      (result) => results.push(result),
    );
    expect(results).toEqual([
      {
        session: client.session,
        targetNode: 'gw-2',
        outcome: 'MOVED',
        durationMs: expect.any(Number),
      },
    ]);
    expect(client.url).toBe(b.url);
    const moved = recording.positions('live').length;
    await until(() => recording.positions('live').length >= moved + 20, '20 more messages on B');
    const published = await publisher.stop();
    await until(
      () => recording.positions('live').length === published,
      `all ${published} messages`,
    );
    expect(recording.positions('live')).toEqual(range(1, published));
    expect(recording.of('moved')).toEqual([{ from: a.url, to: b.url, node: 'gw-2' }]);
    // Make-before-break: the connection was never lost.
    expect(recording.of('disconnected')).toEqual([]);
    expect(recording.of('error')).toEqual([]);
    expect(client.stats).toMatchObject({ duplicates: 0, gaps: 0, moves: 1, reconnects: 0 });
    expect(a.gateway.status(0).websocketConnections).toBe(0);
    expect(b.gateway.status(5).sessions).toEqual([client.session]);
    const text = await (await fetch(`${a.url}/metrics`)).text();
    expect(metric(text, /streamheal_migrations_total\{outcome="moved"[^}]*\} (\S+)/)).toBe(1);
    expect(metric(text, /streamheal_migration_duration_seconds_count\{[^}]*\} (\S+)/)).toBe(1);
  });

  it('rolls back a session whose client does not move within the TTL, and reports unknown ones', async () => {
    cluster = new Cluster();
    const a = await cluster.gateway({ controlPort: 0 });
    const b = await cluster.gateway();
    // A raw client that ignores redirects (it predates them).
    const ws = new WebSocket(`${a.url.replace('http', 'ws')}/v1/ws`);
    const frames: Record<string, unknown>[] = [];
    ws.on('message', (data, isBinary) => {
      if (!isBinary) frames.push(JSON.parse(data.toString()) as Record<string, unknown>);
    });
    const welcome = await eventually(
      () => frames.find((f) => f.type === 'welcome'),
      5_000,
      'welcome',
    );
    ws.send(JSON.stringify({ type: 'subscribe', channel: 'news' }));
    await until(() => frames.some((f) => f.type === 'subscribed'), 'subscribed');
    const session = String(welcome.session);
    const results = await control(a).migrate(
      [
        {
          session,
          targetNode: 'gw-2',
          targetUrl: b.url,
          token: await redirectToken(session, a, b),
        },
        { session: 'no-such-session', targetNode: 'gw-2', targetUrl: b.url, token: 'x' },
      ],
      { ttlMs: 300 },
    );
    expect(results.map((r) => [r.session, r.outcome])).toEqual([
      ['no-such-session', 'NOT_FOUND'],
      [session, 'ROLLED_BACK'],
    ]);
    expect(frames.find((f) => f.type === 'redirect')).toMatchObject({
      url: b.url,
      node: 'gw-2',
      ttlMs: 300,
    });
    // Still served where it was.
    await cluster.publish(a, 'news', 'after');
    await until(() => frames.some((f) => f.type === 'message' && f.data === 'after'), 'a message');
    ws.terminate();
  });

  it('a replayed redirect token is refused by the target: the client stays and says why', async () => {
    cluster = new Cluster();
    const a = await cluster.gateway({ controlPort: 0 });
    const b = await cluster.gateway({ controlPort: 0 });
    const recording = cluster.client([a.url]);
    const { client } = recording;
    await client.connect();
    await client.subscribe('live');
    const token = await redirectToken(client.session!, a, b);
    const move = { session: client.session!, targetNode: 'gw-2', targetUrl: b.url, token };
    expect((await control(a).migrate([move], { ttlMs: 5_000 }))[0]!.outcome).toBe('MOVED');
    // Back to A with a fresh token, then B again with the used one.
    const back = await redirectToken(client.session!, b, a);
    const home = { session: client.session!, targetNode: 'gw-1', targetUrl: a.url, token: back };
    expect((await control(b).migrate([home], { ttlMs: 5_000 }))[0]!.outcome).toBe('MOVED');
    const replay = await control(a).migrate([move], { ttlMs: 500 });
    expect(replay[0]!.outcome).toBe('ROLLED_BACK');
    expect(recording.of('error')).toEqual([
      { code: 'move_failed', message: expect.stringMatching(/token_replayed/) },
    ]);
    expect(client.url).toBe(a.url);
    const position = await cluster.publish(a, 'live', 'still here');
    await until(() => recording.positions('live').includes(position), 'delivered on A');
    expect(client.stats).toMatchObject({ moves: 2, duplicates: 0, gaps: 0 });
  });

  it('drains: every session moves to the other active gateways, new connections are refused', async () => {
    cluster = new Cluster();
    const a = await cluster.gateway({ controlPort: 0 });
    const b = await cluster.gateway();
    const c = await cluster.gateway();
    const recordings = Array.from({ length: 6 }, () => cluster.client([a.url]));
    for (const { client } of recordings) {
      await client.connect();
      await client.subscribe('live');
    }
    const publisher = cluster.keepPublishing(b, 'live');
    await until(() => recordings.every((r) => r.positions('live').length >= 5), 'messages');
    const reply = await control(a).drain(5_000);
    expect(reply).toEqual({ moved: 6, closed: 0 });
    expect(recordings.map((r) => r.client.url).sort()).toEqual(
      [b.url, b.url, b.url, c.url, c.url, c.url].sort(),
    );
    expect((await fetch(`${a.url}/readyz`)).status).toBe(503);
    const refused = new WebSocket(`${a.url.replace('http', 'ws')}/v1/ws`);
    const status = await new Promise<number>((resolve) =>
      refused.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)),
    );
    expect(status).toBe(503);
    expect((await cluster.store.get<{ state: string }>('nodes/gw-1'))?.value.state).toBe(
      'draining',
    );
    const published = await publisher.stop();
    for (const r of recordings) {
      await until(() => r.positions('live').at(-1) === published, 'every message');
      expect(r.positions('live')).toEqual(range(r.positions('live')[0]!, published));
      expect(r.of('disconnected')).toEqual([]);
      expect(r.client.stats).toMatchObject({ duplicates: 0, gaps: 0, moves: 1 });
    }
  });
});
