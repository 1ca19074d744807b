/**
 * Records and leases on DynamoDB.
 *
 * - Records live in the `records` table under (grp, key): `grp` is the key's first segment up to
 *   and including its first '/' (`nodes/`, `sessions/`, …) plus a shard number, so a prefix
 *   list is one Query per shard, not a Scan. Groups written at a high rate (single-use token
 *   ids) can be spread over several shards (`recordShards`); a prefix without '/' needs a Scan.
 * - Versions: a hybrid clock (max(previous + 1, now in µs)), written with a condition that the
 *   stored version is lower, so a key's version grows on every write and a key deleted and
 *   written again does not reuse an old version. `ifVersion` writes read the record first and
 *   write conditionally on the version read; 0 means "absent", which includes a record whose
 *   TTL passed or whose lease expired even though DynamoDB has not deleted it yet.
 * - Leases live in the `leases` table with their expiry (`exp`, ms). A record attached to a
 *   lease carries the lease id; every read checks the lease (BatchGetItem, with a short cache)
 *   and hides the record when the lease is gone or expired, then deletes it conditionally.
 *   revokeLease deletes the lease item (which alone makes its records dead) and then the records
 *   it finds through the sparse `byLease` index.
 * - Watches poll `list(prefix)` every `recordPollIntervalMs` and report the difference as put
 *   and delete events (level-triggered, like a Kubernetes informer: two writes by another
 *   process between two polls arrive as one). Writes made through this store instance are
 *   reported at once and exactly.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BatchGetItemCommand,
  DeleteItemCommand,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
  UpdateItemCommand,
  type AttributeValue,
  type BatchGetItemCommandOutput,
  type DeleteItemCommandOutput,
  type GetItemCommandOutput,
  type QueryCommandOutput,
  type ScanCommandOutput,
} from '@aws-sdk/client-dynamodb';
import { fullJitterBackoff } from '../../backoff.js';
import {
  ConditionFailedError,
  LeaseExpiredError,
  StoreUnavailableError,
  StreamhealError,
} from '../../errors.js';
import { checkKey, checkPositive } from '../checks.js';
import { Mailbox } from '../Mailbox.js';
import {
  byKey,
  type PutOptions,
  type RecordWatchEvent,
  type StoredRecord,
  type Watch,
} from '../StateStore.js';
import { isConditionFailure, type DynamoCaller } from './client.js';
import { A, LEASE_INDEX, type DynamoTableNames } from './schema.js';
import { encodeJson, type StorePartOptions } from './storePart.js';

export interface RecordsOptions extends StorePartOptions {
  tables: Pick<DynamoTableNames, 'records' | 'leases'>;
  recordPollIntervalMs: number;
  /** Shards per key group, e.g. `{ 'tokens/': 8 }`; other groups use one. Fixed per table. */
  recordShards: Record<string, number>;
  /** How long a lease seen alive is trusted without reading it again. */
  leaseCacheMs: number;
}

type Item = Record<string, AttributeValue>;

/** DynamoDB allows 1024 bytes for a sort key. */
const MAX_KEY_BYTES = 1024;
/** Lease items outlive their expiry by this much before DynamoDB TTL may collect them. */
const LEASE_TTL_MARGIN_S = 3_600;
const BATCH_GET_MAX = 100;
const DELETE_CONCURRENCY = 16;
const UNCONDITIONAL_PUT_ATTEMPTS = 5;

interface LeaseState {
  expiresAt: number;
  checkedAt: number;
  ttlMs?: number;
}

export class DynamoRecords {
  private readonly caller: DynamoCaller;
  private readonly leases = new Map<string, LeaseState>();
  private readonly deadLeases = new Set<string>();
  private readonly pollers = new Set<RecordPoller>();
  private lastVersion = 0;

  constructor(readonly options: RecordsOptions) {
    this.caller = options.caller;
  }

  // ---------------------------------------------------------------- records

  async get<T = unknown>(key: string): Promise<StoredRecord<T> | undefined> {
    checkKey(key, MAX_KEY_BYTES);
    const item = await this.getItem(key);
    if (item === undefined) return undefined;
    if (!(await this.isLive(item))) {
      this.cleanup(item);
      return undefined;
    }
    return toRecord<T>(item);
  }

  async put(key: string, value: unknown, options: PutOptions = {}): Promise<number> {
    checkKey(key, MAX_KEY_BYTES);
    if (options.ttlMs !== undefined) checkPositive(options.ttlMs, 'ttlMs');
    if (
      options.ifVersion !== undefined &&
      (!Number.isSafeInteger(options.ifVersion) || options.ifVersion < 0)
    ) {
      throw new StreamhealError('invalid_argument', 'ifVersion must be a whole number >= 0');
    }
    const encoded = value === undefined ? undefined : encodeJson(value, 'record value');
    if (options.lease !== undefined) {
      const alive = await this.liveLeases([options.lease]);
      if (!alive.has(options.lease)) throw new LeaseExpiredError(options.lease);
    }
    const writeId = randomUUID();
    const build = (version: number): Item => {
      const now = this.options.now();
      const item: Item = {
        [A.group]: { S: this.partition(key) },
        [A.key]: { S: key },
        [A.version]: { N: String(version) },
        [A.writeId]: { S: writeId },
      };
      if (encoded !== undefined) item[A.value] = { S: encoded };
      if (options.lease !== undefined) item[A.lease] = { S: options.lease };
      if (options.ttlMs !== undefined) {
        const expiresAt = now + options.ttlMs;
        item[A.expires] = { N: String(expiresAt) };
        item[A.ttl] = { N: String(Math.ceil(expiresAt / 1000)) };
      }
      return item;
    };
    let written: Item;
    if (options.ifVersion === undefined) written = await this.putAnyway(key, build, writeId);
    else if (options.ifVersion === 0) written = await this.putIfAbsent(key, build, writeId);
    else written = await this.putIfVersion(key, options.ifVersion, build, writeId);
    const record = toRecord(written);
    this.notify(key, { type: 'put', record });
    return record.version;
  }

  /** No condition from the caller: only that the stored version is lower than ours. */
  private async putAnyway(key: string, build: (v: number) => Item, writeId: string) {
    let floor = 0;
    for (let attempt = 0; attempt < UNCONDITIONAL_PUT_ATTEMPTS; attempt++) {
      const item = build(this.nextVersion(floor));
      try {
        await this.send(
          new PutItemCommand({
            TableName: this.options.tables.records,
            Item: item,
            ConditionExpression: 'attribute_not_exists(#key) OR #ver < :ver',
            ExpressionAttributeNames: { '#key': A.key, '#ver': A.version },
            ExpressionAttributeValues: { ':ver': item[A.version] as AttributeValue },
          }),
          `put ${key}`,
        );
        return item;
      } catch (error) {
        if (!isConditionFailure(error)) throw error;
        const current = await this.getItem(key);
        if (current?.[A.writeId]?.S === writeId) return current;
        // Another writer's clock runs ahead of ours: go past its version.
        floor = Number(current?.[A.version]?.N ?? 0) + 1;
      }
    }
    throw new StoreUnavailableError(`put ${key}: other writers kept winning; try again`);
  }

  private async putIfAbsent(key: string, build: (v: number) => Item, writeId: string) {
    const item = build(this.nextVersion(0));
    try {
      await this.send(
        new PutItemCommand({
          TableName: this.options.tables.records,
          Item: item,
          // Absent includes a record whose TTL passed but which DynamoDB still holds.
          ConditionExpression: 'attribute_not_exists(#key) OR #exp <= :now',
          ExpressionAttributeNames: { '#key': A.key, '#exp': A.expires },
          ExpressionAttributeValues: { ':now': { N: String(this.options.now()) } },
        }),
        `create ${key}`,
      );
      return item;
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
    }
    const current = await this.getItem(key);
    if (current === undefined) throw new ConditionFailedError(key);
    if (current[A.writeId]?.S === writeId) return current;
    // Still there, but perhaps only on an expired lease: then it is absent and we may replace it.
    if (await this.isLive(current)) throw new ConditionFailedError(key);
    return this.replace(key, current, build, writeId);
  }

  private async putIfVersion(
    key: string,
    ifVersion: number,
    build: (v: number) => Item,
    writeId: string,
  ) {
    const current = await this.getItem(key);
    const live = current !== undefined && (await this.isLive(current));
    if (!live || Number(current[A.version]?.N) !== ifVersion) throw new ConditionFailedError(key);
    return this.replace(key, current, build, writeId);
  }

  /** Writes over exactly the item read (same version), or fails with ConditionFailedError. */
  private async replace(key: string, current: Item, build: (v: number) => Item, writeId: string) {
    const currentVersion = Number(current[A.version]?.N);
    const item = build(this.nextVersion(currentVersion + 1));
    try {
      await this.send(
        new PutItemCommand({
          TableName: this.options.tables.records,
          Item: item,
          ConditionExpression: '#ver = :current',
          ExpressionAttributeNames: { '#ver': A.version },
          ExpressionAttributeValues: { ':current': { N: String(currentVersion) } },
        }),
        `put ${key}`,
      );
      return item;
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      const now = await this.getItem(key);
      if (now?.[A.writeId]?.S === writeId) return now;
      throw new ConditionFailedError(key);
    }
  }

  async delete(key: string, options: { ifVersion?: number } = {}): Promise<boolean> {
    checkKey(key, MAX_KEY_BYTES);
    if (options.ifVersion === undefined) {
      const out = await this.send<DeleteItemCommandOutput>(
        new DeleteItemCommand({
          TableName: this.options.tables.records,
          Key: this.keyOf(key),
          ReturnValues: 'ALL_OLD',
        }),
        `delete ${key}`,
      );
      const old = out.Attributes;
      if (old === undefined) return false;
      this.notify(key, { type: 'delete', key });
      return this.isLive(old);
    }
    const current = await this.getItem(key);
    const live = current !== undefined && (await this.isLive(current));
    const version = live ? Number(current[A.version]?.N) : 0;
    if (version !== options.ifVersion) throw new ConditionFailedError(key);
    if (!live) {
      if (current !== undefined) this.cleanup(current);
      return false;
    }
    try {
      await this.send(
        new DeleteItemCommand({
          TableName: this.options.tables.records,
          Key: this.keyOf(key),
          ConditionExpression: '#ver = :ver',
          ExpressionAttributeNames: { '#ver': A.version },
          ExpressionAttributeValues: { ':ver': { N: String(version) } },
        }),
        `delete ${key}`,
      );
    } catch (error) {
      if (isConditionFailure(error)) throw new ConditionFailedError(key);
      throw error;
    }
    this.notify(key, { type: 'delete', key });
    return true;
  }

  async list<T = unknown>(prefix: string): Promise<StoredRecord<T>[]> {
    if (typeof prefix !== 'string') {
      throw new StreamhealError('invalid_argument', 'prefix must be a string');
    }
    const items = prefix.includes('/') ? await this.queryGroup(prefix) : await this.scan(prefix);
    const leaseIds = new Set<string>();
    for (const item of items) {
      const lease = item[A.lease]?.S;
      if (lease !== undefined) leaseIds.add(lease);
    }
    const alive = leaseIds.size > 0 ? await this.liveLeases(leaseIds) : new Set<string>();
    const records: StoredRecord<T>[] = [];
    for (const item of items) {
      const lease = item[A.lease]?.S;
      if (lease !== undefined && !alive.has(lease)) {
        this.cleanup(item);
        continue;
      }
      records.push(toRecord<T>(item));
    }
    return records.sort(byKey);
  }

  private async queryGroup(prefix: string): Promise<Item[]> {
    const group = groupOf(prefix);
    const shards = this.shardsOf(group);
    const now = String(this.options.now());
    const pages = await Promise.all(
      Array.from({ length: shards }, async (_, shard) => {
        const items: Item[] = [];
        let start: Item | undefined;
        do {
          const out: QueryCommandOutput = await this.send<QueryCommandOutput>(
            new QueryCommand({
              TableName: this.options.tables.records,
              KeyConditionExpression: '#grp = :grp AND begins_with(#key, :prefix)',
              // Expired by TTL but not yet deleted by DynamoDB: filtered on the server.
              FilterExpression: 'attribute_not_exists(#exp) OR #exp > :now',
              ExpressionAttributeNames: { '#grp': A.group, '#key': A.key, '#exp': A.expires },
              ExpressionAttributeValues: {
                ':grp': { S: `${group}#${shard}` },
                ':prefix': { S: prefix },
                ':now': { N: now },
              },
              ConsistentRead: true,
              ExclusiveStartKey: start,
            }),
            `list ${prefix}`,
          );
          items.push(...(out.Items ?? []));
          start = out.LastEvaluatedKey;
        } while (start !== undefined);
        return items;
      }),
    );
    return pages.flat();
  }

  /** A prefix without '/' can span groups: a full Scan (avoid on large tables). */
  private async scan(prefix: string): Promise<Item[]> {
    const items: Item[] = [];
    const values: Item = { ':now': { N: String(this.options.now()) } };
    let filter = '(attribute_not_exists(#exp) OR #exp > :now)';
    const names: Record<string, string> = { '#exp': A.expires };
    if (prefix.length > 0) {
      filter = `begins_with(#key, :prefix) AND ${filter}`;
      names['#key'] = A.key;
      values[':prefix'] = { S: prefix };
    }
    let start: Item | undefined;
    do {
      const out: ScanCommandOutput = await this.send<ScanCommandOutput>(
        new ScanCommand({
          TableName: this.options.tables.records,
          FilterExpression: filter,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
        `list ${prefix || 'all records'}`,
      );
      items.push(...(out.Items ?? []));
      start = out.LastEvaluatedKey;
    } while (start !== undefined);
    return items;
  }

  async watch(prefix: string, listener: (event: RecordWatchEvent) => void): Promise<Watch> {
    const poller = new RecordPoller(
      this,
      prefix,
      new Mailbox(listener, this.options.onListenerError),
    );
    await poller.start();
    this.pollers.add(poller);
    return {
      close: () => {
        poller.stop();
        this.pollers.delete(poller);
      },
    };
  }

  // ---------------------------------------------------------------- leases

  async grantLease(ttlMs: number): Promise<string> {
    checkPositive(ttlMs, 'ttlMs');
    const id = randomUUID();
    const now = this.options.now();
    const expiresAt = now + ttlMs;
    await this.send(
      new PutItemCommand({
        TableName: this.options.tables.leases,
        Item: {
          [A.id]: { S: id },
          [A.ttlMs]: { N: String(ttlMs) },
          [A.expires]: { N: String(expiresAt) },
          [A.ttl]: { N: String(Math.ceil(expiresAt / 1000) + LEASE_TTL_MARGIN_S) },
        },
        ConditionExpression: 'attribute_not_exists(#id)',
        ExpressionAttributeNames: { '#id': A.id },
      }),
      'grant a lease',
    );
    this.leases.set(id, { expiresAt, checkedAt: now, ttlMs });
    return id;
  }

  async keepAlive(lease: string): Promise<void> {
    if (typeof lease !== 'string' || lease.length === 0 || this.deadLeases.has(lease)) {
      throw new LeaseExpiredError(String(lease));
    }
    let ttlMs = this.leases.get(lease)?.ttlMs;
    if (ttlMs === undefined) {
      const out = await this.send<GetItemCommandOutput>(
        new GetItemCommand({
          TableName: this.options.tables.leases,
          Key: { [A.id]: { S: lease } },
          ConsistentRead: true,
        }),
        `renew lease ${lease}`,
      );
      const found = Number(out.Item?.[A.ttlMs]?.N);
      if (!Number.isFinite(found)) throw this.leaseGone(lease);
      ttlMs = found;
    }
    const now = this.options.now();
    const expiresAt = now + ttlMs;
    try {
      await this.send(
        new UpdateItemCommand({
          TableName: this.options.tables.leases,
          Key: { [A.id]: { S: lease } },
          UpdateExpression: 'SET #exp = :exp, #ttl = :ttl',
          // The server refuses to revive a lease that has already expired.
          ConditionExpression: 'attribute_exists(#id) AND #exp > :now',
          ExpressionAttributeNames: { '#id': A.id, '#exp': A.expires, '#ttl': A.ttl },
          ExpressionAttributeValues: {
            ':exp': { N: String(expiresAt) },
            ':ttl': { N: String(Math.ceil(expiresAt / 1000) + LEASE_TTL_MARGIN_S) },
            ':now': { N: String(now) },
          },
        }),
        `renew lease ${lease}`,
      );
    } catch (error) {
      if (isConditionFailure(error)) throw this.leaseGone(lease);
      throw error;
    }
    this.leases.set(lease, { expiresAt, checkedAt: now, ttlMs });
  }

  async revokeLease(lease: string): Promise<void> {
    if (typeof lease !== 'string' || lease.length === 0) return;
    this.markDead(lease);
    // Gone from the leases table, every record on it is dead to every reader.
    await this.send(
      new DeleteItemCommand({
        TableName: this.options.tables.leases,
        Key: { [A.id]: { S: lease } },
      }),
      `revoke lease ${lease}`,
    );
    const keys: string[] = [];
    let start: Item | undefined;
    do {
      const out: QueryCommandOutput = await this.send<QueryCommandOutput>(
        new QueryCommand({
          TableName: this.options.tables.records,
          IndexName: LEASE_INDEX,
          KeyConditionExpression: '#lease = :lease',
          ExpressionAttributeNames: { '#lease': A.lease },
          ExpressionAttributeValues: { ':lease': { S: lease } },
          ExclusiveStartKey: start,
        }),
        `revoke lease ${lease}`,
      );
      for (const item of out.Items ?? []) {
        const key = item[A.key]?.S;
        if (key !== undefined) keys.push(key);
      }
      start = out.LastEvaluatedKey;
    } while (start !== undefined);
    let next = 0;
    const worker = async () => {
      while (next < keys.length) {
        const key = keys[next++] as string;
        try {
          await this.send(
            new DeleteItemCommand({
              TableName: this.options.tables.records,
              Key: this.keyOf(key),
              // Only if still on this lease: it may have been rewritten since the index saw it.
              ConditionExpression: '#lease = :lease',
              ExpressionAttributeNames: { '#lease': A.lease },
              ExpressionAttributeValues: { ':lease': { S: lease } },
            }),
            `revoke lease ${lease}`,
          );
          this.notify(key, { type: 'delete', key });
        } catch (error) {
          if (!isConditionFailure(error)) throw error;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, keys.length) }, worker));
  }

  /** Which of these leases exist and have not expired (cached briefly; one BatchGet otherwise). */
  async liveLeases(ids: Iterable<string>): Promise<Set<string>> {
    const now = this.options.now();
    const alive = new Set<string>();
    const unknown: string[] = [];
    for (const id of ids) {
      if (this.deadLeases.has(id)) continue;
      const state = this.leases.get(id);
      if (
        state !== undefined &&
        state.expiresAt > now &&
        now - state.checkedAt <= this.options.leaseCacheMs
      ) {
        alive.add(id);
      } else {
        unknown.push(id);
      }
    }
    for (let i = 0; i < unknown.length; i += BATCH_GET_MAX) {
      const chunk = unknown.slice(i, i + BATCH_GET_MAX);
      const found = await this.batchGetLeases(chunk);
      const checkedAt = this.options.now();
      for (const id of chunk) {
        const item = found.get(id);
        const expiresAt = Number(item?.[A.expires]?.N);
        if (item !== undefined && expiresAt > checkedAt) {
          alive.add(id);
          this.leases.set(id, { expiresAt, checkedAt, ttlMs: Number(item[A.ttlMs]?.N) });
        } else {
          this.markDead(id);
          if (item !== undefined) this.deleteExpiredLease(id, checkedAt);
        }
      }
    }
    return alive;
  }

  private async batchGetLeases(ids: string[]): Promise<Map<string, Item>> {
    const found = new Map<string, Item>();
    let keys: Item[] = ids.map((id) => ({ [A.id]: { S: id } }));
    for (let attempt = 0; keys.length > 0; attempt++) {
      if (attempt > 0) {
        if (attempt >= 5) {
          throw new StoreUnavailableError('DynamoDB kept leaving lease reads unprocessed');
        }
        await sleep(
          fullJitterBackoff(attempt - 1, { baseMs: 25, capMs: 500, jitter: 0, floorMs: 5 }),
        );
      }
      const table = this.options.tables.leases;
      const out = await this.send<BatchGetItemCommandOutput>(
        new BatchGetItemCommand({
          RequestItems: { [table]: { Keys: keys, ConsistentRead: true } },
        }),
        'check leases',
      );
      for (const item of out.Responses?.[table] ?? []) {
        const id = item[A.id]?.S;
        if (id !== undefined) found.set(id, item);
      }
      keys = out.UnprocessedKeys?.[table]?.Keys ?? [];
    }
    return found;
  }

  private leaseGone(lease: string): LeaseExpiredError {
    this.markDead(lease);
    return new LeaseExpiredError(lease);
  }

  private markDead(lease: string): void {
    this.leases.delete(lease);
    if (this.deadLeases.size >= 10_000) this.deadLeases.clear();
    this.deadLeases.add(lease);
  }

  private deleteExpiredLease(id: string, now: number): void {
    const task = this.send(
      new DeleteItemCommand({
        TableName: this.options.tables.leases,
        Key: { [A.id]: { S: id } },
        ConditionExpression: '#exp <= :now',
        ExpressionAttributeNames: { '#exp': A.expires },
        ExpressionAttributeValues: { ':now': { N: String(now) } },
      }),
      `delete expired lease ${id}`,
    ).catch(() => undefined);
    this.options.background(task);
  }

  close(): void {
    for (const poller of this.pollers) poller.stop();
    this.pollers.clear();
  }

  // ---------------------------------------------------------------- internals

  private send<T>(command: { input: object }, what: string): Promise<T> {
    return this.caller.send<T>(command, what);
  }

  private async getItem(key: string): Promise<Item | undefined> {
    const out = await this.send<GetItemCommandOutput>(
      new GetItemCommand({
        TableName: this.options.tables.records,
        Key: this.keyOf(key),
        ConsistentRead: true,
      }),
      `get ${key}`,
    );
    return out.Item;
  }

  private async isLive(item: Item): Promise<boolean> {
    const expiresAt = item[A.expires]?.N;
    if (expiresAt !== undefined && Number(expiresAt) <= this.options.now()) return false;
    const lease = item[A.lease]?.S;
    return lease === undefined || (await this.liveLeases([lease])).has(lease);
  }

  /** Deletes a dead record (expired TTL or lease) unless it was rewritten meanwhile. */
  private cleanup(item: Item): void {
    const key = item[A.key]?.S;
    const version = item[A.version]?.N;
    if (key === undefined || version === undefined) return;
    this.notify(key, { type: 'delete', key });
    const task = this.send(
      new DeleteItemCommand({
        TableName: this.options.tables.records,
        Key: this.keyOf(key),
        ConditionExpression: '#ver = :ver',
        ExpressionAttributeNames: { '#ver': A.version },
        ExpressionAttributeValues: { ':ver': { N: version } },
      }),
      `delete dead record ${key}`,
    ).catch(() => undefined);
    this.options.background(task);
  }

  private notify(key: string, event: RecordWatchEvent): void {
    for (const poller of this.pollers) poller.local(key, event);
  }

  private nextVersion(floor: number): number {
    const version = Math.max(this.lastVersion + 1, this.options.now() * 1000, floor);
    this.lastVersion = version;
    return version;
  }

  private keyOf(key: string): Item {
    return { [A.group]: { S: this.partition(key) }, [A.key]: { S: key } };
  }

  private shardsOf(group: string): number {
    const shards = this.options.recordShards[group] ?? 1;
    return Number.isInteger(shards) && shards > 1 ? shards : 1;
  }

  private partition(key: string): string {
    const group = groupOf(key);
    const shards = this.shardsOf(group);
    return `${group}#${shards > 1 ? fnv1a(key) % shards : 0}`;
  }
}

/**
 * One watch: its own view of the prefix (key -> version), updated by polls and by this
 * process's own writes. A poll skips keys this process wrote while the poll was in flight,
 * so an older snapshot never reports a key back to an earlier state.
 */
class RecordPoller {
  private readonly known = new Map<string, number>();
  private readonly touched = new Map<string, number>();
  private sequence = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private failures = 0;

  constructor(
    private readonly records: DynamoRecords,
    private readonly prefix: string,
    private readonly mailbox: Mailbox<RecordWatchEvent>,
  ) {}

  async start(): Promise<void> {
    for (const record of await this.records.list(this.prefix)) {
      this.known.set(record.key, record.version);
    }
    this.schedule(this.records.options.recordPollIntervalMs);
  }

  stop(): void {
    this.stopped = true;
    this.mailbox.close();
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  local(key: string, event: RecordWatchEvent): void {
    if (this.stopped || !key.startsWith(this.prefix)) return;
    this.touched.set(key, ++this.sequence);
    this.apply(event);
  }

  private apply(event: RecordWatchEvent): void {
    if (event.type === 'put') {
      if (this.known.get(event.record.key) === event.record.version) return;
      this.known.set(event.record.key, event.record.version);
    } else {
      if (!this.known.delete(event.key)) return;
    }
    this.mailbox.push(event);
  }

  private async poll(): Promise<void> {
    const started = this.sequence;
    const records = await this.records.list(this.prefix);
    if (this.stopped) return;
    const changedMeanwhile = (key: string) => (this.touched.get(key) ?? 0) > started;
    const seen = new Set<string>();
    for (const record of records) {
      seen.add(record.key);
      if (!changedMeanwhile(record.key)) this.apply({ type: 'put', record });
    }
    for (const key of [...this.known.keys()]) {
      if (!seen.has(key) && !changedMeanwhile(key)) this.apply({ type: 'delete', key });
    }
    for (const [key, sequence] of this.touched) if (sequence <= started) this.touched.delete(key);
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.poll().then(
        () => {
          this.failures = 0;
          this.schedule(this.records.options.recordPollIntervalMs);
        },
        (error: unknown) => {
          this.failures++;
          if (!this.stopped) this.records.options.onPollError(this.prefix, error);
          const interval = this.records.options.recordPollIntervalMs;
          this.schedule(
            fullJitterBackoff(this.failures - 1, {
              baseMs: interval,
              capMs: 2_000,
              jitter: 0,
              floorMs: interval,
            }),
          );
        },
      );
    }, delay);
    this.timer.unref();
  }
}

function toRecord<T>(item: Item): StoredRecord<T> {
  const encoded = item[A.value]?.S;
  const record: StoredRecord<T> = {
    key: item[A.key]?.S as string,
    value: (encoded === undefined ? undefined : JSON.parse(encoded)) as T,
    version: Number(item[A.version]?.N),
  };
  const lease = item[A.lease]?.S;
  if (lease !== undefined) record.lease = lease;
  return record;
}

/** The key's first segment up to and including its first '/', or '' for a key without one. */
export function groupOf(key: string): string {
  const slash = key.indexOf('/');
  return slash < 0 ? '' : key.slice(0, slash + 1);
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
