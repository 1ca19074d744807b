/**
 * The state store on Amazon DynamoDB (or anything speaking its API: LocalStack, dynalite).
 * Channel logs are in dynamo/DynamoChannelLog.ts, records and leases in dynamo/DynamoRecords.ts,
 * the tables in dynamo/schema.ts, the client (timeouts, retries, error mapping) in
 * dynamo/client.ts. docs/dynamodb.md describes the design, its costs and its failure behaviour.
 *
 * - Nothing here relies on DynamoDB TTL deletion or Streams: TTL attributes collect garbage,
 *   every read checks expiry itself, and watches poll.
 * - When DynamoDB cannot be reached or does not answer, calls fail with StoreUnavailableError
 *   (original error as `cause`) within `operationTimeoutMs`; watches keep their positions and
 *   carry on when it is back.
 * - Every process using the same tables must use the same history limits and record shards.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Logger } from 'pino';
import { StoreUnavailableError, StreamhealError } from '../errors.js';
import {
  createDynamoClient,
  DynamoCaller,
  type CallStats,
  type DynamoClientOptions,
} from './dynamo/client.js';
import { DynamoChannelLog } from './dynamo/DynamoChannelLog.js';
import { DynamoRecords } from './dynamo/DynamoRecords.js';
import {
  createTables,
  tableNames,
  type CreateTablesResult,
  type DynamoTableNames,
} from './dynamo/schema.js';
import { checkPositive } from './checks.js';
import { listenerErrorReporter } from './Mailbox.js';
import {
  DEFAULT_HISTORY_LIMITS,
  type ChannelMessage,
  type ChannelSummary,
  type ChannelWatch,
  type ChannelWatchEvent,
  type HistoryLimits,
  type HistoryPage,
  type PutOptions,
  type RecordWatchEvent,
  type StateStore,
  type StoredRecord,
  type Watch,
} from './StateStore.js';

export { createTables, tableNames, type CreateTablesResult, type DynamoTableNames };

export interface DynamoStoreOptions extends DynamoClientOptions {
  /** Table names, or one prefix for all four (`<prefix>channels`, …). @default 'streamheal-' */
  tables?: string | Partial<DynamoTableNames>;
  /**
   * A client to use instead of one built from the options above (its own timeouts and retry
   * settings then apply). The store does not destroy a client it was given.
   */
  client?: DynamoDBClient;
  /** @default DEFAULT_HISTORY_LIMITS (10,000 messages, 10 min) */
  limits?: HistoryLimits;
  /** How often a channel with watchers in this process is polled. @default 50 */
  pollIntervalMs?: number;
  /** How often each record watch lists its prefix. @default 200 */
  recordPollIntervalMs?: number;
  /** Messages per Query when a watcher catches up. @default 500 */
  pageSize?: number;
  /** How long a position may stay assigned without its message before readers give it up. @default 2000 */
  holeGraceMs?: number;
  /** Strongly consistent watch polls; false halves their read cost and adds a little delay. @default true */
  consistentPolls?: boolean;
  /** Deadline of one store call, retries included. @default 5000 */
  operationTimeoutMs?: number;
  /** Extra time before DynamoDB TTL may delete a trimmed message. @default 3,600,000 (1 h) */
  ttlMarginMs?: number;
  /** Shards per key group (`{ 'tokens/': 8 }`); fixed for the life of the table. @default {} */
  recordShards?: Record<string, number>;
  /** How long a lease seen alive is trusted without reading it again. @default 1000 */
  leaseCacheMs?: number;
  /** Clock in milliseconds since the epoch. @default Date.now */
  now?: () => number;
  /** Where watch listener errors and poll failures are reported. @default console */
  logger?: Logger;
}

/** How long close() lets best-effort writes finish. */
const CLOSE_GRACE_MS = 1_000;
/** How often the same poll failure is logged again. */
const POLL_ERROR_LOG_MS = 10_000;

export class DynamoStore implements StateStore {
  readonly tables: DynamoTableNames;
  readonly client: DynamoDBClient;
  private readonly ownsClient: boolean;
  private readonly closing = new AbortController();
  private readonly callStats: CallStats = { calls: 0, retries: 0, throttled: 0, failures: 0 };
  private readonly pending = new Set<Promise<unknown>>();
  private readonly pollErrorsLogged = new Map<string, number>();
  private readonly logs: DynamoChannelLog;
  private readonly records: DynamoRecords;
  private closed = false;

  constructor(options: DynamoStoreOptions = {}) {
    this.tables = tableNames(options.tables);
    this.ownsClient = options.client === undefined;
    this.client = options.client ?? createDynamoClient(options, this.callStats);
    const caller = new DynamoCaller(
      this.client,
      checkPositive(options.operationTimeoutMs ?? 5_000, 'operationTimeoutMs'),
      this.closing.signal,
      this.callStats,
    );
    const logger = options.logger;
    const onPollError = (what: string, error: unknown) => {
      const at = Date.now();
      if (at - (this.pollErrorsLogged.get(what) ?? 0) < POLL_ERROR_LOG_MS) return;
      this.pollErrorsLogged.set(what, at);
      if (logger) logger.warn({ err: error, watch: what }, 'DynamoDB watch poll failed; retrying');
      else console.warn(`streamheal: DynamoDB watch poll of ${what} failed; retrying:`, error);
    };
    // Both parts share the caller, the clock, the error sinks and the list of pending writes.
    const shared = {
      caller,
      now: options.now ?? Date.now,
      onListenerError: listenerErrorReporter(logger),
      background: (task: Promise<unknown>) => {
        this.pending.add(task);
        void task.finally(() => this.pending.delete(task));
      },
    };
    const limits = options.limits ?? DEFAULT_HISTORY_LIMITS;
    checkPositive(limits.maxCount, 'limits.maxCount');
    checkPositive(limits.maxAgeMs, 'limits.maxAgeMs');
    this.logs = new DynamoChannelLog({
      ...shared,
      tables: this.tables,
      limits,
      pollIntervalMs: checkPositive(options.pollIntervalMs ?? 50, 'pollIntervalMs'),
      pageSize: checkPositive(options.pageSize ?? 500, 'pageSize'),
      holeGraceMs: checkPositive(options.holeGraceMs ?? 2_000, 'holeGraceMs'),
      consistentPolls: options.consistentPolls ?? true,
      ttlMarginMs: options.ttlMarginMs ?? 3_600_000,
      onPollError: (channel, error) => onPollError(`channel ${channel}`, error),
    });
    this.records = new DynamoRecords({
      ...shared,
      tables: this.tables,
      recordPollIntervalMs: checkPositive(
        options.recordPollIntervalMs ?? 200,
        'recordPollIntervalMs',
      ),
      recordShards: options.recordShards ?? {},
      leaseCacheMs: options.leaseCacheMs ?? 1_000,
      onPollError: (prefix, error) => onPollError(`prefix ${prefix}`, error),
    });
  }

  /**
   * A store configured from the environment (names in docs/dynamodb.md). Region, endpoint and
   * credentials come from the SDK's own variables: AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB or
   * AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, roles.
   */
  static fromEnv(
    env: Record<string, string | undefined> = process.env,
    overrides: DynamoStoreOptions = {},
  ): DynamoStore {
    return new DynamoStore({ ...dynamoOptionsFromEnv(env), ...overrides });
  }

  /** Creates missing tables (on-demand, TTL on). For tests, LocalStack and first runs. */
  createTables(options?: { timeoutMs?: number }): Promise<CreateTablesResult> {
    this.checkOpen();
    return createTables(this.client, this.tables, options);
  }

  /** Calls made, retried, throttled and failed since the store was built. */
  stats(): CallStats {
    return { ...this.callStats };
  }

  append(channel: string, data: unknown, trace?: Record<string, string>): Promise<ChannelMessage> {
    return this.run(() => this.logs.append(channel, data, trace));
  }

  read(channel: string, after: number, limit: number): Promise<HistoryPage> {
    return this.run(() => this.logs.read(channel, after, limit));
  }

  watchChannel(
    channel: string,
    after: number | undefined,
    listener: (event: ChannelWatchEvent) => void,
  ): Promise<ChannelWatch> {
    return this.run(() => this.logs.watchChannel(channel, after, listener));
  }

  channels(): Promise<ChannelSummary[]> {
    return this.run(() => this.logs.channels());
  }

  get<T = unknown>(key: string): Promise<StoredRecord<T> | undefined> {
    return this.run(() => this.records.get<T>(key));
  }

  put(key: string, value: unknown, options?: PutOptions): Promise<number> {
    return this.run(() => this.records.put(key, value, options));
  }

  delete(key: string, options?: { ifVersion?: number }): Promise<boolean> {
    return this.run(() => this.records.delete(key, options));
  }

  list<T = unknown>(prefix: string): Promise<StoredRecord<T>[]> {
    return this.run(() => this.records.list<T>(prefix));
  }

  watch(prefix: string, listener: (event: RecordWatchEvent) => void): Promise<Watch> {
    return this.run(() => this.records.watch(prefix, listener));
  }

  grantLease(ttlMs: number): Promise<string> {
    return this.run(() => this.records.grantLease(ttlMs));
  }

  keepAlive(lease: string): Promise<void> {
    return this.run(() => this.records.keepAlive(lease));
  }

  revokeLease(lease: string): Promise<void> {
    return this.run(() => this.records.revokeLease(lease));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.logs.close();
    this.records.close();
    // Best-effort writes (floors, clean-ups) get a moment to finish, then are cut off.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.pending]),
      new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS))),
    ]);
    clearTimeout(timer);
    this.closing.abort();
    if (this.ownsClient) this.client.destroy();
  }

  private async run<T>(operation: () => Promise<T>): Promise<T> {
    this.checkOpen();
    return operation();
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreUnavailableError('DynamoDB store closed');
  }
}

/** DynamoStoreOptions from STREAMHEAL_* variables; unset variables keep the defaults. */
export function dynamoOptionsFromEnv(env: Record<string, string | undefined>): DynamoStoreOptions {
  const options: DynamoStoreOptions = {};
  const prefix = env.STREAMHEAL_DYNAMODB_TABLE_PREFIX;
  const names: Partial<DynamoTableNames> = {};
  const set = (name: keyof DynamoTableNames, variable: string) => {
    const value = env[variable];
    if (value !== undefined && value !== '') names[name] = value;
  };
  set('channels', 'STREAMHEAL_DYNAMODB_TABLE_CHANNELS');
  set('messages', 'STREAMHEAL_DYNAMODB_TABLE_MESSAGES');
  set('records', 'STREAMHEAL_DYNAMODB_TABLE_RECORDS');
  set('leases', 'STREAMHEAL_DYNAMODB_TABLE_LEASES');
  if (prefix !== undefined && prefix !== '') {
    const fromPrefix = tableNames(prefix);
    options.tables = { ...fromPrefix, ...names };
  } else if (Object.keys(names).length > 0) {
    options.tables = names;
  }
  const int = (variable: string): number | undefined => {
    const value = env[variable];
    if (value === undefined || value === '') return undefined;
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed) || parsed <= 0) {
      throw new StreamhealError(
        'invalid_config',
        `${variable} must be a whole number > 0, got "${value}"`,
      );
    }
    return parsed;
  };
  const maxCount = int('STREAMHEAL_HISTORY_MAX_COUNT');
  const maxAgeMs = int('STREAMHEAL_HISTORY_MAX_AGE_MS');
  if (maxCount !== undefined || maxAgeMs !== undefined) {
    options.limits = {
      maxCount: maxCount ?? DEFAULT_HISTORY_LIMITS.maxCount,
      maxAgeMs: maxAgeMs ?? DEFAULT_HISTORY_LIMITS.maxAgeMs,
    };
  }
  const numbers: Array<[keyof DynamoStoreOptions, string]> = [
    ['pollIntervalMs', 'STREAMHEAL_DYNAMODB_POLL_MS'],
    ['recordPollIntervalMs', 'STREAMHEAL_DYNAMODB_RECORD_POLL_MS'],
    ['holeGraceMs', 'STREAMHEAL_DYNAMODB_HOLE_GRACE_MS'],
    ['operationTimeoutMs', 'STREAMHEAL_DYNAMODB_OPERATION_TIMEOUT_MS'],
    ['requestTimeoutMs', 'STREAMHEAL_DYNAMODB_REQUEST_TIMEOUT_MS'],
    ['connectionTimeoutMs', 'STREAMHEAL_DYNAMODB_CONNECT_TIMEOUT_MS'],
    ['maxAttempts', 'STREAMHEAL_DYNAMODB_MAX_ATTEMPTS'],
  ];
  for (const [option, variable] of numbers) {
    const value = int(variable);
    if (value !== undefined) (options as Record<string, unknown>)[option] = value;
  }
  const consistent = env.STREAMHEAL_DYNAMODB_CONSISTENT_POLLS;
  if (consistent !== undefined && consistent !== '') {
    if (!/^(true|false|1|0)$/i.test(consistent)) {
      throw new StreamhealError(
        'invalid_config',
        `STREAMHEAL_DYNAMODB_CONSISTENT_POLLS must be true or false, got "${consistent}"`,
      );
    }
    options.consistentPolls = /^(true|1)$/i.test(consistent);
  }
  const shards = env.STREAMHEAL_DYNAMODB_RECORD_SHARDS;
  if (shards !== undefined && shards.trim() !== '') {
    options.recordShards = {};
    for (const part of shards.split(',')) {
      const match = /^\s*([^=\s]+)\s*=\s*(\d+)\s*$/.exec(part);
      if (!match || Number(match[2]) < 1) {
        throw new StreamhealError(
          'invalid_config',
          `STREAMHEAL_DYNAMODB_RECORD_SHARDS must look like "tokens/=8,sessions/=2", got "${shards}"`,
        );
      }
      options.recordShards[match[1] as string] = Number(match[2]);
    }
  }
  return options;
}
