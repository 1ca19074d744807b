/**
 * The store and bus selection every process shares (workers/backends.ts): settings from the
 * environment with errors that name the variable, the variables handed to child processes, and
 * every AWS client streamheal builds (DynamoDB store, EventBridge bus, Secrets Manager key ring)
 * reaching its endpoint through AWS_ENDPOINT_URL alone (LocalStack's one port; here a router
 * in front of dynalite, the EventBridge emulator and the Secrets Manager stand-in) and through
 * AWS_ENDPOINT_URL_<SERVICE>, which wins over it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KeyRingSource } from '../../functions/tokens/keyRing.js';
import type { EventBridgeBus } from '../../shared/bus/EventBridgeBus.js';
import { makeEvent } from '../../shared/bus/events.js';
import {
  BackendConfigError,
  backendConfigFromEnv,
  backendEnv,
  childBackendEnv,
  etcdConnectionOptions,
  openBackends,
  type Backends,
} from '../../workers/backends.js';
import { SecretsManagerEndpoint } from '../support/secretsManagerEndpoint.js';
import { startDynalite, type Dynalite } from '../support/dynalite.js';
import { EventBridgeEndpoint } from '../support/eventBridgeEndpoint.js';

const SECRET = 'a-cluster-secret-of-32-characters';

describe('backendConfigFromEnv', () => {
  const fails = (env: Record<string, string>, message: RegExp) => {
    expect(() => backendConfigFromEnv(env)).toThrow(BackendConfigError);
    expect(() => backendConfigFromEnv(env)).toThrow(message);
  };

  it('defaults to the embedded store and bus, and lets the bus follow the store', () => {
    expect(backendConfigFromEnv({})).toMatchObject({ store: 'memory', bus: 'inprocess' });
    const linked = backendConfigFromEnv({
      STREAMHEAL_STORE: 'link',
      STREAMHEAL_CLUSTER_SECRET: SECRET,
    });
    expect(linked).toMatchObject({
      store: 'link',
      bus: 'link',
      link: { url: 'ws://127.0.0.1:7070/v1/link', secret: SECRET },
    });
    expect(
      backendConfigFromEnv({
        STREAMHEAL_STORE: 'etcd',
        STREAMHEAL_ETCD_ENDPOINTS: 'http://a:2379',
      }),
    ).toMatchObject({ bus: 'etcd', etcd: { endpoints: ['http://a:2379'], prefix: 'streamheal/' } });
    expect(backendConfigFromEnv({ STREAMHEAL_STORE: 'dynamodb' })).toMatchObject({
      bus: 'eventbridge',
      eventBridge: { eventBusName: 'default', ordering: 'strict' },
    });
  });

  it('names the variable at fault', () => {
    fails(
      { STREAMHEAL_STORE: 'redis' },
      /STREAMHEAL_STORE must be one of memory, link, etcd, dynamodb, got "redis"/,
    );
    fails(
      { STREAMHEAL_BUS: 'kafka' },
      /STREAMHEAL_BUS must be one of inprocess, link, etcd, eventbridge/,
    );
    fails(
      { STREAMHEAL_STORE: 'link' },
      /STREAMHEAL_CLUSTER_SECRET is required with STREAMHEAL_STORE=link/,
    );
    fails({ STREAMHEAL_BUS: 'link', STREAMHEAL_CLUSTER_SECRET: 'short' }, /at least 16 characters/);
    fails(
      {
        STREAMHEAL_STORE: 'link',
        STREAMHEAL_CLUSTER_SECRET: SECRET,
        STREAMHEAL_CONTROL_URL: 'http://x:7070',
      },
      /STREAMHEAL_CONTROL_URL must be a ws:\/\/ or wss:\/\/ URL/,
    );
    fails({ STREAMHEAL_STORE: 'etcd' }, /STREAMHEAL_ETCD_ENDPOINTS is required with etcd/);
    fails(
      { STREAMHEAL_STORE: 'etcd', STREAMHEAL_ETCD_ENDPOINTS: '127.0.0.1:2379' },
      /"127.0.0.1:2379" is not a URL/,
    );
    fails(
      { STREAMHEAL_STORE: 'etcd', STREAMHEAL_ETCD_ENDPOINTS: 'http://a:2379,grpc://b:2379' },
      /"grpc:\/\/b:2379" must start with http:\/\/ or https:\/\//,
    );
    fails(
      { STREAMHEAL_BUS: 'etcd', STREAMHEAL_ETCD_ENDPOINTS: 'http://a' },
      /"http:\/\/a" must be scheme:\/\/host:port/,
    );
    const etcd = { STREAMHEAL_STORE: 'etcd', STREAMHEAL_ETCD_ENDPOINTS: 'http://a:2379' };
    fails(
      { ...etcd, STREAMHEAL_ETCD_TIMEOUT_MS: '3s' },
      /STREAMHEAL_ETCD_TIMEOUT_MS must be a whole number, got "3s"/,
    );
    fails(
      { ...etcd, STREAMHEAL_ETCD_USERNAME: 'root' },
      /_USERNAME and STREAMHEAL_ETCD_PASSWORD go together/,
    );
    fails({ ...etcd, STREAMHEAL_ETCD_CERT_FILE: '/c' }, /STREAMHEAL_ETCD_CA_FILE is required/);
    fails(
      { ...etcd, STREAMHEAL_ETCD_CA_FILE: '/ca', STREAMHEAL_ETCD_KEY_FILE: '/k' },
      /_CERT_FILE and STREAMHEAL_ETCD_KEY_FILE go together/,
    );
    fails(
      { STREAMHEAL_STORE: 'dynamodb', STREAMHEAL_EVENTBRIDGE_ORDERING: 'fifo' },
      /STREAMHEAL_EVENTBRIDGE_ORDERING must be strict or batched/,
    );
    fails(
      { STREAMHEAL_STORE: 'dynamodb', STREAMHEAL_DYNAMODB_CREATE_TABLES: 'yes' },
      /STREAMHEAL_DYNAMODB_CREATE_TABLES must be true or false/,
    );
  });

  it('refuses what a process cannot use, saying why', () => {
    const orchestrator = {
      store: 'etcd' as const,
      allowedStores: ['etcd' as const],
      allowedBuses: ['etcd' as const],
      purpose: 'by the orchestrator',
    };
    expect(() => backendConfigFromEnv({ STREAMHEAL_STORE: 'memory' }, orchestrator)).toThrow(
      'STREAMHEAL_STORE=memory is not supported by the orchestrator: use etcd',
    );
    expect(() =>
      backendConfigFromEnv(
        { STREAMHEAL_ETCD_ENDPOINTS: 'http://a:2379', STREAMHEAL_BUS: 'inprocess' },
        orchestrator,
      ),
    ).toThrow('STREAMHEAL_BUS=inprocess is not supported by the orchestrator: use etcd');
  });

  it('reads etcd TLS files when the clients are built, and names an unreadable one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'streamheal-backends-'));
    try {
      writeFileSync(join(dir, 'ca.pem'), 'CA');
      const config = backendConfigFromEnv({
        STREAMHEAL_STORE: 'etcd',
        STREAMHEAL_ETCD_ENDPOINTS: 'https://a:2379',
        STREAMHEAL_ETCD_CA_FILE: join(dir, 'ca.pem'),
        STREAMHEAL_ETCD_USERNAME: 'root',
        STREAMHEAL_ETCD_PASSWORD: 'pw',
      });
      expect(etcdConnectionOptions(config.etcd!)).toMatchObject({
        endpoints: ['https://a:2379'],
        auth: { username: 'root', password: 'pw' },
        tls: { ca: Buffer.from('CA') },
      });
      config.etcd!.tls!.caFile = join(dir, 'missing.pem');
      expect(() => etcdConnectionOptions(config.etcd!)).toThrow(
        /STREAMHEAL_ETCD_CA_FILE: cannot read .*missing\.pem/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('hands child processes the same settings', () => {
    const env = {
      STREAMHEAL_STORE: 'etcd',
      STREAMHEAL_ETCD_ENDPOINTS: 'http://a:2379, http://b:2379',
      STREAMHEAL_ETCD_PREFIX: 'prod/',
      STREAMHEAL_ETCD_TIMEOUT_MS: '5000',
      STREAMHEAL_ETCD_COMPACTION_RETENTION_MS: '0',
      STREAMHEAL_HISTORY_MAX_COUNT: '500',
    };
    const config = backendConfigFromEnv(env);
    const again = backendConfigFromEnv(backendEnv(config));
    expect({ ...again, env: undefined }).toEqual({ ...config, env: undefined });
    expect(again.etcd).toEqual({
      endpoints: ['http://a:2379', 'http://b:2379'],
      prefix: 'prod/',
      timeoutMs: 5_000,
      compactionRetentionMs: 0,
    });

    const link = { url: 'ws://127.0.0.1:7000/v1/link', secret: SECRET };
    expect(childBackendEnv(config, link)).toMatchObject({
      STREAMHEAL_STORE: 'etcd',
      STREAMHEAL_BUS: 'etcd',
    });
    expect(childBackendEnv(backendConfigFromEnv({}), link)).toMatchObject({
      STREAMHEAL_STORE: 'link',
      STREAMHEAL_BUS: 'link',
      STREAMHEAL_CONTROL_URL: link.url,
    });
    const dynamo = backendConfigFromEnv({
      STREAMHEAL_STORE: 'dynamodb',
      STREAMHEAL_BUS: 'inprocess',
    });
    expect(childBackendEnv(dynamo, link)).toMatchObject({
      STREAMHEAL_STORE: 'dynamodb',
      STREAMHEAL_BUS: 'link',
      STREAMHEAL_CLUSTER_SECRET: SECRET,
    });
  });
});

/** LocalStack's edge port in miniature: one port, requests routed by their X-Amz-Target. */
async function startRouter(
  routes: Record<string, string>,
): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const target = String(req.headers['x-amz-target'] ?? '');
    const upstream = Object.entries(routes).find(([prefix]) => target.startsWith(prefix))?.[1];
    if (!upstream) {
      res.writeHead(404).end();
      return;
    }
    const forward = request(
      new URL(req.url ?? '/', upstream),
      { method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', () => res.writeHead(502).end());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe('AWS clients and the SDK endpoint variables', () => {
  const AWS_VARS = [
    'AWS_ENDPOINT_URL',
    'AWS_ENDPOINT_URL_DYNAMODB',
    'AWS_ENDPOINT_URL_EVENTBRIDGE',
    'AWS_ENDPOINT_URL_SECRETS_MANAGER',
    'AWS_REGION',
    'AWS_ACCESS_KEY_ID',
    'AWS_SECRET_ACCESS_KEY',
    'AWS_PROFILE',
  ];
  const saved = Object.fromEntries(AWS_VARS.map((name) => [name, process.env[name]]));
  let dynalite: Dynalite;
  let eventBridge: EventBridgeEndpoint;
  let secrets: SecretsManagerEndpoint;
  let router: { url: string; server: Server };
  const opened: Backends[] = [];
  let tables = 0;
  const arn = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:streamheal-keys';

  beforeAll(async () => {
    dynalite = await startDynalite();
    eventBridge = await EventBridgeEndpoint.start();
    secrets = await SecretsManagerEndpoint.start();
    secrets.secrets.set(arn, 'k1:a-token-key-of-32-characters-long');
    router = await startRouter({
      DynamoDB_20120810: dynalite.endpoint,
      AWSEvents: eventBridge.url,
      secretsmanager: secrets.url,
    });
  });
  afterEach(async () => {
    for (const backends of opened.splice(0)) await backends.close();
    for (const name of AWS_VARS) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });
  afterAll(async () => {
    router?.server.closeAllConnections();
    router?.server.close();
    await Promise.all([dynalite?.stop(), eventBridge?.stop(), secrets?.stop()]);
  });

  /** Sets the SDK's variables (and nothing else of AWS's) for clients built from now on. */
  function useAws(vars: Record<string, string>): void {
    for (const name of AWS_VARS) delete process.env[name];
    Object.assign(process.env, {
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      ...vars,
    });
  }

  /** Every client: the DynamoDB store and EventBridge bus of workers/backends.ts, the key ring. */
  async function useEveryClient(): Promise<void> {
    const accepted = eventBridge.accepted.length;
    const calls = secrets.calls;
    const config = backendConfigFromEnv({
      STREAMHEAL_STORE: 'dynamodb',
      STREAMHEAL_DYNAMODB_TABLE_PREFIX: `endpoints-${++tables}-`,
      STREAMHEAL_DYNAMODB_CREATE_TABLES: 'true',
      STREAMHEAL_EVENT_BUS_NAME: 'streamheal',
    });
    const backends = openBackends(config, { logger: pino({ level: 'silent' }) });
    opened.push(backends);
    await backends.ready();
    expect((await backends.store.append('news', 'hello')).position).toBe(1);
    await backends.bus.put([makeEvent('streamheal.test', 'Endpoint Check', { n: 1 })]);
    expect(await (backends.bus as EventBridgeBus).flush(5_000)).toBe(true);
    expect(eventBridge.accepted.length).toBe(accepted + 1);
    expect(eventBridge.accepted.at(-1)!.eventBusName).toBe('streamheal');
    const ring = await new KeyRingSource({
      env: { STREAMHEAL_TOKEN_KEYS_SECRET_ARN: arn },
    }).get();
    expect(ring).toBeDefined();
    expect(secrets.calls).toBe(calls + 1);
  }

  it('reach everything through AWS_ENDPOINT_URL alone (one port, as on LocalStack)', async () => {
    useAws({ AWS_ENDPOINT_URL: router.url });
    await useEveryClient();
  });

  it('prefer AWS_ENDPOINT_URL_<SERVICE> over AWS_ENDPOINT_URL', async () => {
    useAws({
      AWS_ENDPOINT_URL: 'http://127.0.0.1:9', // nothing listens there
      AWS_ENDPOINT_URL_DYNAMODB: dynalite.endpoint,
      AWS_ENDPOINT_URL_EVENTBRIDGE: eventBridge.url,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.url,
    });
    await useEveryClient();
  });
});
