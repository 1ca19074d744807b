/**
 * The state store on etcd, for self-hosted clusters (docs/etcd.md). It passes the same contract
 * as MemoryStore; the parts live in ./etcd/:
 * - connection.ts: the etcd3 client, deadlines, retries on another member, StoreUnavailableError;
 * - channels.ts: channel logs (positions assigned in the append transaction, bounded history,
 *   watches that replay then follow, resuming without a gap);
 * - records.ts: versioned records (mod_revision), conditional writes, prefix watches;
 * - leases.ts: node leases with keep-alive, TTL records, the rotating lease of old history;
 * - compactor.ts: compaction of etcd's revision history.
 *
 *   const store = await EtcdStore.connect({ endpoints: ['http://127.0.0.1:2379'], prefix: 'streamheal/' });
 */
import type { Logger } from 'pino';
import { StoreUnavailableError } from '../errors.js';
import { ChannelLogs } from './etcd/channels.js';
import { Compactor } from './etcd/compactor.js';
import { EtcdConnection, type EtcdConnectionOptions } from './etcd/connection.js';
import { KeyLayout } from './etcd/keys.js';
import { Leases, TtlLeases } from './etcd/leases.js';
import { Records } from './etcd/records.js';
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

export interface EtcdStoreOptions extends EtcdConnectionOptions {
  /** Every key streamheal writes starts with this. @default 'streamheal/' */
  prefix?: string;
  limits?: HistoryLimits;
  /**
   * How much of etcd's revision history to keep (ms): watches that reconnect within it resume
   * exactly. 0 leaves compaction to etcd (`--auto-compaction-retention`).
   * @default 300000 (5 minutes)
   */
  compactionRetentionMs?: number;
  /** Where listener errors and background failures (trims, watch restarts) are reported. */
  logger?: Logger;
}

export class EtcdStore implements StateStore {
  readonly limits: HistoryLimits;
  private readonly connection: EtcdConnection;
  private readonly channelLogs: ChannelLogs;
  private readonly records: Records;
  private readonly leases: Leases;
  private readonly compactor: Compactor | undefined;
  private readonly keys: KeyLayout;
  private closed = false;

  /** Connects and checks that etcd answers (StoreUnavailableError if it does not in time). */
  static async connect(options: EtcdStoreOptions): Promise<EtcdStore> {
    const store = new EtcdStore(options);
    try {
      await store.ping();
    } catch (error) {
      await store.close();
      throw error;
    }
    return store;
  }

  constructor(options: EtcdStoreOptions) {
    this.limits = options.limits ?? DEFAULT_HISTORY_LIMITS;
    this.connection = new EtcdConnection(options);
    this.keys = new KeyLayout(options.prefix ?? 'streamheal/');
    const logger = options.logger;
    const onListenerError = listenerErrorReporter(logger);
    const onBackgroundError = (error: unknown, what: string) =>
      logger?.warn({ err: error }, `etcd store: ${what}`);
    this.leases = new Leases(this.connection);
    this.channelLogs = new ChannelLogs({
      connection: this.connection,
      keys: this.keys,
      leases: this.leases,
      limits: this.limits,
      onListenerError,
      onBackgroundError,
    });
    this.records = new Records({
      connection: this.connection,
      keys: this.keys,
      ttlLeases: new TtlLeases(this.leases),
      onListenerError,
      onBackgroundError,
    });
    const retention = options.compactionRetentionMs ?? 5 * 60_000;
    this.compactor =
      retention > 0
        ? new Compactor(this.connection, this.keys.heads, retention, onBackgroundError)
        : undefined;
  }

  /** Resolves when etcd answers a linearizable read (it has a leader and a quorum). */
  async ping(): Promise<void> {
    await this.channelLogs.currentRevision();
  }

  /** Runs one compaction round now; resolves with the revision compacted to, if any. */
  compactNow(): Promise<number | undefined> {
    return this.compactor?.tick() ?? Promise.resolve(undefined);
  }

  async append(
    channel: string,
    data: unknown,
    trace?: Record<string, string>,
  ): Promise<ChannelMessage> {
    this.checkOpen();
    return this.channelLogs.append(channel, data, trace);
  }

  async read(channel: string, after: number, limit: number): Promise<HistoryPage> {
    this.checkOpen();
    return this.channelLogs.read(channel, after, limit);
  }

  async watchChannel(
    channel: string,
    after: number | undefined,
    listener: (event: ChannelWatchEvent) => void,
  ): Promise<ChannelWatch> {
    this.checkOpen();
    return this.channelLogs.watch(channel, after, listener);
  }

  async channels(): Promise<ChannelSummary[]> {
    this.checkOpen();
    return this.channelLogs.channels();
  }

  async get<T = unknown>(key: string): Promise<StoredRecord<T> | undefined> {
    this.checkOpen();
    return this.records.get<T>(key);
  }

  async put(key: string, value: unknown, options?: PutOptions): Promise<number> {
    this.checkOpen();
    return this.records.put(key, value, options);
  }

  async delete(key: string, options?: { ifVersion?: number }): Promise<boolean> {
    this.checkOpen();
    return this.records.delete(key, options);
  }

  async list<T = unknown>(prefix: string): Promise<StoredRecord<T>[]> {
    this.checkOpen();
    return this.records.list<T>(prefix);
  }

  async watch(prefix: string, listener: (event: RecordWatchEvent) => void): Promise<Watch> {
    this.checkOpen();
    return this.records.watch(prefix, listener);
  }

  async grantLease(ttlMs: number): Promise<string> {
    this.checkOpen();
    return this.leases.grant(ttlMs);
  }

  async keepAlive(lease: string): Promise<void> {
    this.checkOpen();
    return this.leases.keepAlive(lease);
  }

  async revokeLease(lease: string): Promise<void> {
    this.checkOpen();
    return this.leases.revoke(lease);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.compactor?.stop();
    this.channelLogs.close();
    this.records.close();
    this.leases.close();
    this.connection.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreUnavailableError('etcd store closed');
  }
}
