/**
 * DynamoStore on dynalite (the DynamoDB API, in this process on 127.0.0.1): the StateStore
 * contract, then what only this adapter has: expiry checked before DynamoDB TTL deletes
 * anything, holes left by appenders that died between the counter and the put, the endpoint
 * from the SDK's variables, and failure behaviour with the store cut off, silent or resetting
 * connections (a real TCP gate in front of dynalite).
 *
 * Not tested here: DynamoDB throttling. dynalite never throttles, and answering with a made-up
 * ProvisionedThroughputExceededException from a fake server would test the fake; retries on
 * real connection resets are tested instead (the same retry strategy handles both).
 */
import {
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LeaseExpiredError, StoreUnavailableError } from '../../../shared/errors.js';
import {
  DynamoStore,
  dynamoOptionsFromEnv,
  tableNames,
  type DynamoStoreOptions,
} from '../../../shared/store/DynamoStore.js';
import type { ChannelWatchEvent, RecordWatchEvent } from '../../../shared/store/StateStore.js';
import { startDynalite, type Dynalite } from '../../support/dynalite.js';
import { stateStoreContract } from './stateStoreContract.js';

/** Small bounds for the contract (it tests them for real). */
const limits = { maxCount: 5, maxAgeMs: 400 };
/** Bounds the adapter tests never reach, however slow the machine. */
const roomy = { maxCount: 1_000, maxAgeMs: 600_000 };
const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
const region = 'us-east-1';
const prefix = `t${process.pid}-`;
const names = tableNames(prefix);

let dynalite: Dynalite;
let raw: DynamoDBClient;
const stores: DynamoStore[] = [];
const gates: TcpGate[] = [];

/** A store on dynalite (or on `endpoint`), closed after the test. */
function open(options: DynamoStoreOptions = {}): DynamoStore {
  const store = new DynamoStore({
    endpoint: dynalite.endpoint,
    region,
    credentials,
    tables: prefix,
    limits: roomy,
    ...options,
  });
  stores.push(store);
  return store;
}

beforeAll(async () => {
  dynalite = await startDynalite();
  raw = new DynamoDBClient({ endpoint: dynalite.endpoint, region, credentials });
  const store = open();
  await store.createTables();
});

afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
  await Promise.all(gates.splice(0).map((gate) => gate.close()));
});

afterAll(async () => {
  raw?.destroy();
  await dynalite?.stop();
});

stateStoreContract(
  'DynamoStore',
  async () => {
    // dynalite shares this process's event loop; 220 concurrent appends can keep a request
    // waiting over a second on a busy machine. A timeout after DynamoDB applied an increment
    // has a documented effect of its own (tested below), so the contract run gives requests
    // room: it checks behaviour, not this machine's speed.
    const store = open({ limits, requestTimeoutMs: 5_000 });
    return { store, cleanup: () => store.close() };
  },
  { limits },
);

describe('DynamoStore specifics', () => {
  describe('tables', () => {
    it('creates its tables idempotently and says when the endpoint has no TTL API', async () => {
      const store = open({ tables: `${prefix}again-` });
      const first = await store.createTables();
      expect(first.created).toHaveLength(4);
      // dynalite has no UpdateTimeToLive: reported, not an error; the store never needs it.
      expect(first.ttl).toBe('unsupported');
      const second = await store.createTables();
      expect(second.created).toEqual([]);
      const { Table } = await raw.send(
        new DescribeTableCommand({ TableName: `${prefix}again-messages` }),
      );
      expect(Table?.KeySchema).toEqual([
        { AttributeName: 'channel', KeyType: 'HASH' },
        { AttributeName: 'pos', KeyType: 'RANGE' },
      ]);
      expect(Table?.BillingModeSummary?.BillingMode).toBe('PAY_PER_REQUEST');
      const records = await raw.send(
        new DescribeTableCommand({ TableName: `${prefix}again-records` }),
      );
      expect(records.Table?.GlobalSecondaryIndexes?.[0]?.IndexName).toBe('byLease');
    });

    it('names a missing table in a StoreUnavailableError', async () => {
      const store = open({ tables: `${prefix}missing-` });
      const error = await store.get('nodes/a').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect((error as Error).message).toMatch(/table missing/);
      expect((error as Error).cause).toBeDefined();
    });
  });

  describe('expiry before DynamoDB TTL', () => {
    it('hides a record once its lease expires, while DynamoDB still holds both items', async () => {
      const store = open();
      const key = `lease-${Date.now()}/node`;
      const lease = await store.grantLease(300);
      await store.put(key, 'up', { lease });
      const leaseItem = await rawGet(names.leases, { id: { S: lease } });
      // The TTL attribute (seconds) lies beyond the expiry: TTL only collects garbage.
      expect(Number(leaseItem?.ttl?.N) * 1000).toBeGreaterThan(Number(leaseItem?.exp?.N));
      await sleep(450);
      // Nobody has read since: both items are still stored, the lease past its `exp`.
      expect(await rawGet(names.records, recordKey(key))).toBeDefined();
      expect(Number((await rawGet(names.leases, { id: { S: lease } }))?.exp?.N)).toBeLessThan(
        Date.now(),
      );
      // A process that never saw the lease (no cache) hides the record too.
      const other = open();
      expect(await other.get(key)).toBeUndefined();
      expect(await other.list(key.slice(0, key.indexOf('/') + 1))).toEqual([]);
      await expect(other.keepAlive(lease)).rejects.toBeInstanceOf(LeaseExpiredError);
      // Creating the key again treats the dead record as absent.
      const version = await other.put(key, 'new', { ifVersion: 0 });
      expect(await store.get(key)).toEqual({ key, value: 'new', version });
    });

    it('hides a record past its TTL and lets ifVersion 0 create it again', async () => {
      const store = open();
      const key = `ttl-${Date.now()}/token`;
      // A single-use token id: the first use creates it, a replay within its lifetime is refused.
      await store.put(key, 'used', { ifVersion: 0, ttlMs: 150 });
      await expect(store.put(key, 'replay', { ifVersion: 0, ttlMs: 150 })).rejects.toMatchObject({
        code: 'condition_failed',
      });
      const item = await rawGet(names.records, recordKey(key));
      expect(Number(item?.ttl?.N)).toBe(Math.ceil(Number(item?.exp?.N) / 1000));
      await sleep(250);
      expect(await rawGet(names.records, recordKey(key))).toBeDefined();
      expect(await open().get(key)).toBeUndefined();
      await expect(store.put(key, 'again', { ifVersion: 0 })).resolves.toBeGreaterThan(0);
    });

    it('keeps trimmed messages for DynamoDB TTL and stamps it past the age bound', async () => {
      const store = open({ limits });
      const channel = unique('ttl');
      for (let i = 1; i <= limits.maxCount + 2; i++) await store.append(channel, i);
      const page = await store.read(channel, 0, 100);
      expect(page.oldest).toBe(3);
      const items = await rawMessages(channel);
      // Trimming is logical; the two oldest are still stored until TTL collects them.
      expect(items.map((i) => Number(i.pos?.N))).toEqual([1, 2, 3, 4, 5, 6, 7]);
      for (const item of items) {
        expect(Number(item.ttl?.N) * 1000).toBeGreaterThanOrEqual(
          Number(item.t?.N) + limits.maxAgeMs,
        );
      }
    });
  });

  describe('holes between the counter and the put', () => {
    it('gives up a position whose appender died, the same way for every reader', async () => {
      const store = open({ holeGraceMs: 300 });
      const channel = unique('hole');
      await store.append(channel, 'one');
      await store.append(channel, 'two');
      const events: ChannelWatchEvent[] = [];
      const watch = await store.watchChannel(channel, 2, (e) => events.push(e));
      // What an appender leaves when it dies after ADD and before its PutItem.
      await bumpCounter(channel);
      const started = Date.now();
      await store.append(channel, 'four');
      await waitFor(() => events.length === 2);
      const waited = Date.now() - started;
      watch.close();
      expect(events).toEqual([
        { type: 'lost', oldest: 4 },
        { type: 'message', message: expect.objectContaining({ position: 4, data: 'four' }) },
      ]);
      expect(waited).toBeGreaterThanOrEqual(250);
      // The position holds a tombstone now; the dead appender's put can no longer land.
      expect((await rawGet(names.messages, messageKey(channel, 3)))?.tomb?.BOOL).toBe(true);
      await expect(putMessage(channel, 3, 'three, too late')).rejects.toMatchObject({
        name: 'ConditionalCheckFailedException',
      });
      // Another process reads the same thing: history up to the hole, then oldest past it.
      const other = open();
      expect(positions((await other.read(channel, 0, 10)).messages)).toEqual([1, 2]);
      const past = await other.read(channel, 2, 10);
      expect(past.oldest).toBe(4);
      expect(positions(past.messages)).toEqual([4]);
    });

    it('waits for a slow appender instead of giving its position up', async () => {
      const store = open({ holeGraceMs: 1_500 });
      const channel = unique('slow');
      await store.append(channel, 'one');
      const events: ChannelWatchEvent[] = [];
      const watch = await store.watchChannel(channel, 1, (e) => events.push(e));
      await bumpCounter(channel);
      await store.append(channel, 'three');
      const reading = store.read(channel, 1, 10);
      await sleep(200);
      expect(events).toEqual([]);
      await putMessage(channel, 2, 'two, late');
      await waitFor(() => events.length === 2);
      watch.close();
      expect(events.map((e) => e.type)).toEqual(['message', 'message']);
      expect(positions((await reading).messages)).toEqual([2, 3]);
    });

    it('takes one position when the answer to its increment is lost and the SDK retries', async () => {
      const gate = await TcpGate.start(dynalite.port);
      const store = open({ endpoint: gate.endpoint, requestTimeoutMs: 300 });
      const channel = unique('answer');
      await store.append(channel, 1);
      gate.resetExisting();
      await sleep(20);
      gate.swallowNext = 1;
      const retries = store.stats().retries;
      // DynamoDB applies the ADD, its answer never arrives, the retry finds our append id.
      const message = await store.append(channel, 2);
      expect(gate.swallowed).toBe(1);
      expect(store.stats().retries).toBeGreaterThan(retries);
      expect(message.position).toBe(2);
      const page = await store.read(channel, 0, 10);
      expect(page.latest).toBe(2);
      expect(positions(page.messages)).toEqual([1, 2]);
    });

    it('gives up the extra position when appends got in between a lost answer and its retry', async () => {
      // The documented limit of counter-then-put without transactions: the retry can no longer
      // tell its own applied increment from another append's, takes a second position, and the
      // first becomes a hole that readers give up. Explicitly: no gap, no duplicate.
      const gate = await TcpGate.start(dynalite.port);
      const store = open({ endpoint: gate.endpoint, requestTimeoutMs: 300, holeGraceMs: 300 });
      const direct = open({ holeGraceMs: 300 });
      const channel = unique('answer');
      await store.append(channel, 'first');
      const events: ChannelWatchEvent[] = [];
      const watch = await direct.watchChannel(channel, 1, (e) => events.push(e));
      gate.resetExisting();
      await sleep(20);
      gate.swallowNext = 1;
      const mine = store.append(channel, 'mine');
      await sleep(100);
      expect((await direct.append(channel, 'other')).position).toBe(3);
      expect((await mine).position).toBe(4);
      await waitFor(() => events.length === 3);
      watch.close();
      expect(events).toEqual([
        { type: 'lost', oldest: 3 },
        { type: 'message', message: expect.objectContaining({ position: 3, data: 'other' }) },
        { type: 'message', message: expect.objectContaining({ position: 4, data: 'mine' }) },
      ]);
    });

    it('refuses a message that cannot fit in an item before it takes a position', async () => {
      const store = open();
      const channel = unique('big');
      await store.append(channel, 'small');
      const error = await store.append(channel, 'x'.repeat(410 * 1024)).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'message_too_large' });
      expect((await store.read(channel, 0, 10)).latest).toBe(1);
      expect((await store.append(channel, 'next')).position).toBe(2);
    });
  });

  describe('several processes', () => {
    it('delivers appends made by another process to a watch, in order', async () => {
      const watcher = open();
      const writer = open();
      const channel = unique('x');
      const received: Array<{ position: number; at: number }> = [];
      const sentAt = new Map<number, number>();
      const watch = await watcher.watchChannel(channel, undefined, (e) => {
        if (e.type === 'message') received.push({ position: e.message.position, at: Date.now() });
      });
      for (let i = 1; i <= 20; i++) {
        sentAt.set(i, Date.now());
        await writer.append(channel, i);
        await sleep(10);
      }
      await waitFor(() => received.length === 20);
      watch.close();
      expect(received.map((r) => r.position)).toEqual(range(1, 20));
      const delays = received.map((r) => r.at - (sentAt.get(r.position) as number));
      // One poll interval (50 ms) plus two reads, with slack for a loaded machine.
      expect(Math.max(...delays)).toBeLessThan(1_000);
    });

    it('reports puts, deletes and lease expiry made elsewhere to a record watch', async () => {
      const watcher = open({ recordPollIntervalMs: 50 });
      const writer = open();
      const group = `${unique('w')}/`;
      const events: RecordWatchEvent[] = [];
      const watch = await watcher.watch(group, (e) => events.push(e));
      const version = await writer.put(`${group}a`, { n: 1 });
      await waitFor(() => events.length === 1);
      expect(events[0]).toEqual({
        type: 'put',
        record: { key: `${group}a`, value: { n: 1 }, version },
      });
      await writer.delete(`${group}a`);
      await waitFor(() => events.length === 2);
      expect(events[1]).toEqual({ type: 'delete', key: `${group}a` });
      const lease = await writer.grantLease(200);
      await writer.put(`${group}node`, 'up', { lease });
      await waitFor(() => events.length === 3);
      // Nobody reads the record: the watch's own poll sees the lease expire.
      await waitFor(() => events.length === 4, 3_000);
      watch.close();
      expect(events[3]).toEqual({ type: 'delete', key: `${group}node` });
    });

    it('keeps versions growing across processes and across delete and re-create', async () => {
      const a = open();
      const b = open();
      const key = `${unique('v')}/k`;
      const v1 = await a.put(key, 1);
      const v2 = await b.put(key, 2);
      expect(v2).toBeGreaterThan(v1);
      await a.delete(key);
      const v3 = await b.put(key, 3, { ifVersion: 0 });
      expect(v3).toBeGreaterThan(v2);
      await expect(a.put(key, 'stale', { ifVersion: v2 })).rejects.toMatchObject({
        code: 'condition_failed',
      });
    });

    it('spreads a sharded key group over partitions and lists it in key order', async () => {
      const group = `${unique('tok')}/`;
      const store = open({ recordShards: { [group]: 4 } });
      const keys = Array.from({ length: 20 }, (_, i) => `${group}${String(i).padStart(2, '0')}`);
      for (const key of [...keys].reverse()) await store.put(key, key, { ttlMs: 60_000 });
      const listed = await store.list<string>(group);
      expect(listed.map((r) => r.key)).toEqual(keys);
      const scan = await raw.send(new ScanCommand({ TableName: names.records }));
      const partitions = new Set(
        (scan.Items ?? []).filter((i) => i.key?.S?.startsWith(group)).map((i) => i.grp?.S),
      );
      expect(partitions.size).toBeGreaterThan(1);
      expect((await store.get(keys[7] as string))?.value).toBe(keys[7]);
    });
  });

  describe('failures', () => {
    it('fails promptly with StoreUnavailableError when nothing listens', async () => {
      const port = await closedPort();
      const store = open({ endpoint: `http://127.0.0.1:${port}` });
      const started = Date.now();
      const error = await store.get('nodes/a').catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(error).toMatchObject({ code: 'store_unavailable' });
      expect((error as Error).message).toMatch(/ECONNREFUSED/);
      expect((error as Error).cause).toBeDefined();
      expect(elapsed).toBeLessThan(2_000);
      await expect(store.append('c', 1)).rejects.toBeInstanceOf(StoreUnavailableError);
    });

    it('gives up within the operation deadline when DynamoDB accepts but never answers', async () => {
      const gate = await TcpGate.start(dynalite.port);
      gate.mode = 'blackhole';
      const store = open({
        endpoint: gate.endpoint,
        requestTimeoutMs: 300,
        operationTimeoutMs: 1_200,
      });
      const started = Date.now();
      const error = await store.append('c', 1).catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(2_000);
    });

    it('retries connections that are reset, and succeeds', async () => {
      const gate = await TcpGate.start(dynalite.port);
      const store = open({ endpoint: gate.endpoint });
      const key = `${unique('r')}/a`;
      await store.put(key, 'before');
      gate.resetExisting();
      gate.resetNext = 2;
      const before = store.stats().retries;
      expect((await store.get(key))?.value).toBe('before');
      expect(store.stats().retries - before).toBeGreaterThanOrEqual(2);
      expect(gate.resets).toBeGreaterThanOrEqual(2);
    });

    it('recovers when the store is back, and a watch continues with no gap', async () => {
      const gate = await TcpGate.start(dynalite.port);
      const warnings: string[] = [];
      const logger = { warn: (_: unknown, message: string) => warnings.push(message) };
      const cutOff = open({ endpoint: gate.endpoint, logger: logger as never });
      const direct = open();
      const channel = unique('cut');
      const events: ChannelWatchEvent[] = [];
      const watch = await cutOff.watchChannel(channel, undefined, (e) => events.push(e));
      await cutOff.append(channel, 1);
      await cutOff.append(channel, 2);
      await waitFor(() => events.length === 2);
      await gate.stop();
      const started = Date.now();
      await expect(cutOff.append(channel, 'lost')).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - started).toBeLessThan(2_000);
      // Others keep writing while this process cannot reach DynamoDB.
      await direct.append(channel, 3);
      await direct.append(channel, 4);
      await sleep(300);
      expect(events).toHaveLength(2);
      // The watch's failing polls are reported (once per 10 s), not thrown at anyone.
      expect(warnings).toContain('DynamoDB watch poll failed; retrying');
      await gate.listen();
      await waitFor(() => events.length === 4, 10_000);
      expect((await cutOff.append(channel, 5)).position).toBe(5);
      await waitFor(() => events.length === 5);
      watch.close();
      expect(events.every((e) => e.type === 'message')).toBe(true);
      expect(events.map((e) => (e.type === 'message' ? e.message.position : 0))).toEqual(
        range(1, 5),
      );
    });

    it('refuses work after close and stops its watches', async () => {
      const store = open();
      const writer = open();
      const channel = unique('closed');
      const events: ChannelWatchEvent[] = [];
      await store.watchChannel(channel, undefined, (e) => events.push(e));
      await store.close();
      await writer.append(channel, 1);
      await sleep(150);
      expect(events).toEqual([]);
      await expect(store.get('nodes/a')).rejects.toMatchObject({ code: 'store_unavailable' });
      await expect(store.append(channel, 1)).rejects.toBeInstanceOf(StoreUnavailableError);
    });
  });

  describe('configuration', () => {
    const saved = { ...process.env };
    afterEach(() => {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    });

    function useSdkEnv(vars: Record<string, string>): void {
      delete process.env.AWS_ENDPOINT_URL;
      delete process.env.AWS_ENDPOINT_URL_DYNAMODB;
      delete process.env.AWS_PROFILE;
      Object.assign(process.env, {
        AWS_REGION: region,
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        ...vars,
      });
    }

    it('takes its endpoint from AWS_ENDPOINT_URL_DYNAMODB, before AWS_ENDPOINT_URL', async () => {
      const closed = `http://127.0.0.1:${await closedPort()}`;
      useSdkEnv({ AWS_ENDPOINT_URL_DYNAMODB: dynalite.endpoint, AWS_ENDPOINT_URL: closed });
      const store = DynamoStore.fromEnv({ STREAMHEAL_DYNAMODB_TABLE_PREFIX: prefix });
      stores.push(store);
      const channel = unique('env');
      expect((await store.append(channel, 'via env')).position).toBe(1);
      useSdkEnv({ AWS_ENDPOINT_URL_DYNAMODB: closed, AWS_ENDPOINT_URL: dynalite.endpoint });
      const wrong = DynamoStore.fromEnv({ STREAMHEAL_DYNAMODB_TABLE_PREFIX: prefix });
      stores.push(wrong);
      await expect(wrong.read(channel, 0, 1)).rejects.toBeInstanceOf(StoreUnavailableError);
    });

    it('takes its endpoint from AWS_ENDPOINT_URL', async () => {
      useSdkEnv({ AWS_ENDPOINT_URL: dynalite.endpoint });
      const store = DynamoStore.fromEnv({ STREAMHEAL_DYNAMODB_TABLE_PREFIX: prefix });
      stores.push(store);
      const channel = unique('env');
      await store.append(channel, 'via env');
      expect((await open().read(channel, 0, 10)).messages[0]?.data).toBe('via env');
    });

    it('reads its own settings from STREAMHEAL_* variables and refuses bad ones', () => {
      const options = dynamoOptionsFromEnv({
        STREAMHEAL_DYNAMODB_TABLE_PREFIX: 'prod-',
        STREAMHEAL_DYNAMODB_TABLE_MESSAGES: 'prod-history',
        STREAMHEAL_HISTORY_MAX_COUNT: '500',
        STREAMHEAL_DYNAMODB_POLL_MS: '100',
        STREAMHEAL_DYNAMODB_CONSISTENT_POLLS: 'false',
        STREAMHEAL_DYNAMODB_RECORD_SHARDS: 'tokens/=8, sessions/=2',
      });
      expect(options).toEqual({
        tables: {
          channels: 'prod-channels',
          messages: 'prod-history',
          records: 'prod-records',
          leases: 'prod-leases',
        },
        limits: { maxCount: 500, maxAgeMs: 600_000 },
        pollIntervalMs: 100,
        consistentPolls: false,
        recordShards: { 'tokens/': 8, 'sessions/': 2 },
      });
      expect(() => dynamoOptionsFromEnv({ STREAMHEAL_DYNAMODB_POLL_MS: 'fast' })).toThrow(
        /STREAMHEAL_DYNAMODB_POLL_MS/,
      );
      expect(() => dynamoOptionsFromEnv({ STREAMHEAL_DYNAMODB_RECORD_SHARDS: 'tokens' })).toThrow(
        /RECORD_SHARDS/,
      );
    });
  });
});

// ------------------------------------------------------------------ helpers

/**
 * A TCP gate in front of dynalite: forwards, holds connections without answering
 * ('blackhole'), resets the next connections, or stops listening altogether.
 */
class TcpGate {
  mode: 'forward' | 'blackhole' = 'forward';
  resetNext = 0;
  resets = 0;
  /** The next connections forward requests to dynalite but drop its answers. */
  swallowNext = 0;
  swallowed = 0;
  private server: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly target: number,
    readonly port: number,
    server: Server,
  ) {
    this.server = server;
  }

  static async start(target: number): Promise<TcpGate> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const gate = new TcpGate(target, (server.address() as AddressInfo).port, server);
    gate.attach(server);
    gates.push(gate);
    return gate;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private attach(server: Server): void {
    server.on('connection', (client: Socket) => {
      this.track(client);
      if (this.resetNext > 0) {
        this.resetNext--;
        this.resets++;
        client.resetAndDestroy();
        return;
      }
      if (this.mode === 'blackhole') return;
      const upstream = connect(this.target, '127.0.0.1');
      this.track(upstream);
      if (this.swallowNext > 0) {
        this.swallowNext--;
        this.swallowed++;
        client.pipe(upstream);
        upstream.resume();
      } else {
        client.pipe(upstream).pipe(client);
      }
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    });
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  /** Resets every open connection (clients see ECONNRESET on their kept-alive sockets). */
  resetExisting(): void {
    for (const socket of this.sockets) socket.resetAndDestroy();
  }

  /** Stops listening and drops every connection: the store is unreachable. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.resetExisting();
    await closed;
  }

  /** Listens again on the same port. */
  async listen(): Promise<void> {
    this.server = createServer();
    this.attach(this.server);
    await new Promise<void>((resolve) => this.server.listen(this.port, '127.0.0.1', resolve));
  }

  async close(): Promise<void> {
    if (this.server.listening) await this.stop();
    else this.resetExisting();
  }
}

let counter = 0;

function unique(kind: string): string {
  return `${kind}-${process.pid}-${++counter}`;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
}

function positions(messages: Array<{ position: number }>): number[] {
  return messages.map((m) => m.position);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(condition: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(5);
  }
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

type Key = Record<string, { S: string } | { N: string }>;

function recordKey(key: string): Key {
  return { grp: { S: `${key.slice(0, key.indexOf('/') + 1)}#0` }, key: { S: key } };
}

function messageKey(channel: string, position: number): Key {
  return { channel: { S: channel }, pos: { N: String(position) } };
}

async function rawGet(table: string, key: Key) {
  return (await raw.send(new GetItemCommand({ TableName: table, Key: key, ConsistentRead: true })))
    .Item;
}

async function rawMessages(channel: string) {
  const out = await raw.send(
    new QueryCommand({
      TableName: names.messages,
      KeyConditionExpression: 'channel = :c',
      ExpressionAttributeValues: { ':c': { S: channel } },
      ConsistentRead: true,
    }),
  );
  return out.Items ?? [];
}

/** The counter increment of an append (docs/dynamodb.md), with no put after it. */
async function bumpCounter(channel: string): Promise<void> {
  await raw.send(
    new UpdateItemCommand({
      TableName: names.channels,
      Key: { channel: { S: channel } },
      UpdateExpression: 'ADD latest :one SET aid = :aid',
      ExpressionAttributeValues: { ':one': { N: '1' }, ':aid': { S: `dead-${channel}` } },
    }),
  );
}

/** The message put of an append, as an appender that was slow would finally send it. */
async function putMessage(channel: string, position: number, data: unknown): Promise<void> {
  const aid = `late-${channel}-${position}`;
  await raw.send(
    new PutItemCommand({
      TableName: names.messages,
      Item: {
        ...messageKey(channel, position),
        t: { N: String(Date.now()) },
        d: { S: JSON.stringify(data) },
        aid: { S: aid },
        ttl: { N: String(Math.ceil(Date.now() / 1000) + 3_600) },
      },
      ConditionExpression: 'attribute_not_exists(pos) OR aid = :aid',
      ExpressionAttributeValues: { ':aid': { S: aid } },
    }),
  );
}
