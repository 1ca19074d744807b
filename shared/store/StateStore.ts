/**
 * The state store port. Adapters: MemoryStore (embedded default), RemoteStore (the embedded
 * store reached over the control link), and later DynamoDB and etcd. Every adapter passes the
 * contract suite in test/shared/store/stateStoreContract.ts.
 *
 * Two halves:
 * - channel logs: positions assigned once, cluster-wide, atomically with the append; bounded
 *   history; an ordered watch that resumes from a position;
 * - records: a small key/value space with versions (conditional writes), leases with TTL and
 *   prefix watches, for nodes, sessions, policies and single-use token ids.
 */

/** A message as stored: `position` grows by exactly one per append on its channel. */
export interface ChannelMessage {
  channel: string;
  position: number;
  data: unknown;
  /** Milliseconds since the epoch, stamped by the store at append. */
  time: number;
  /** W3C trace context of the publish, so delivery spans join the publish trace. */
  trace?: Record<string, string>;
}

export interface HistoryLimits {
  /** Messages kept per channel (oldest dropped first). */
  maxCount: number;
  /** Messages older than this are dropped. */
  maxAgeMs: number;
}

export const DEFAULT_HISTORY_LIMITS: HistoryLimits = { maxCount: 10_000, maxAgeMs: 10 * 60_000 };

export interface HistoryPage {
  /** Messages with position > `after`, in order, at most `limit`. */
  messages: ChannelMessage[];
  /** Oldest position still held, or latest + 1 when nothing is held. */
  oldest: number;
  /** Latest position ever assigned on the channel (0 before the first append). */
  latest: number;
}

export type ChannelWatchEvent =
  | { type: 'message'; message: ChannelMessage }
  /** History no longer reaches the requested position; messages continue from `oldest`. */
  | { type: 'lost'; oldest: number };

export interface ChannelWatch {
  /** Position the watch started after: the latest position when started live. */
  readonly startedAfter: number;
  close(): void;
}

export interface StoredRecord<T = unknown> {
  key: string;
  value: T;
  /** Grows on every write of the key; 0 is never used, so 0 means "absent" in conditions. */
  version: number;
  lease?: string;
}

export interface PutOptions {
  /** Write only if the current version equals this (0: only if absent). */
  ifVersion?: number;
  /** Attach to a lease: the record is deleted when the lease expires. */
  lease?: string;
  /** Delete the record after this many milliseconds (single-use token ids). */
  ttlMs?: number;
}

export type RecordWatchEvent =
  { type: 'put'; record: StoredRecord } | { type: 'delete'; key: string };

export interface Watch {
  close(): void;
}

export interface ChannelSummary {
  channel: string;
  latest: number;
  held: number;
}

export interface StateStore {
  /** Append atomically: assign the next position and store the message. */
  append(channel: string, data: unknown, trace?: Record<string, string>): Promise<ChannelMessage>;
  /** Messages after `after` (exclusive), oldest first. */
  read(channel: string, after: number, limit: number): Promise<HistoryPage>;
  /**
   * Deliver every message after `after` in order, then live ones; `after` undefined starts at
   * the latest position. If history no longer reaches `after`, a `lost` event comes first.
   */
  watchChannel(
    channel: string,
    after: number | undefined,
    listener: (event: ChannelWatchEvent) => void,
  ): Promise<ChannelWatch>;
  channels(): Promise<ChannelSummary[]>;

  get<T = unknown>(key: string): Promise<StoredRecord<T> | undefined>;
  /** Returns the new version; throws ConditionFailedError when `ifVersion` does not match. */
  put(key: string, value: unknown, options?: PutOptions): Promise<number>;
  /** Returns whether a record was deleted; throws ConditionFailedError on a version mismatch. */
  delete(key: string, options?: { ifVersion?: number }): Promise<boolean>;
  list<T = unknown>(prefix: string): Promise<StoredRecord<T>[]>;
  watch(prefix: string, listener: (event: RecordWatchEvent) => void): Promise<Watch>;

  grantLease(ttlMs: number): Promise<string>;
  /** Extends the lease by its TTL; throws LeaseExpiredError when it is already gone. */
  keepAlive(lease: string): Promise<void>;
  /** Ends the lease now and deletes its records. */
  revokeLease(lease: string): Promise<void>;

  close(): Promise<void>;
}

/** The order list() answers in, the same in every adapter: by key. */
export function byKey(a: StoredRecord, b: StoredRecord): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}
