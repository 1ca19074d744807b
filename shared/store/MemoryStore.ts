/**
 * The embedded state store: everything in this process's memory, nothing persisted. It is the
 * default for one machine and, behind the control link (shared/link), for the local cluster.
 *
 * - Channel logs keep an array with a moving start index (amortised O(1) trimming, direct
 *   indexing by position); history is trimmed by count and by age on append and on every read.
 * - Listeners (channel and record watches) each own one queue drained in a microtask, so they
 *   are called in order, never inside the writer's call, without a timer per message.
 * - Records carry a global revision as their version (like etcd), so a key deleted and written
 *   again still gets a higher version. Lease and TTL deadlines sit in one min-heap served by a
 *   single unref'd timer, and are also checked on every record operation.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import {
  ConditionFailedError,
  LeaseExpiredError,
  StoreUnavailableError,
  StreamhealError,
} from '../errors.js';
import { checkChannel, checkKey, checkLimit, checkPosition, checkPositive } from './checks.js';
import { listenerErrorReporter, Mailbox } from './Mailbox.js';
import {
  byKey,
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

export interface MemoryStoreOptions {
  limits?: HistoryLimits;
  /** Clock in milliseconds since the epoch (tests may inject one). */
  now?: () => number;
  /** Where errors thrown by watch listeners are reported (console.error otherwise). */
  logger?: Logger;
}

/** Longest delay Node accepts for a timer. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Compact a channel's array once this many trimmed slots sit at its front. */
const COMPACT_AT = 1024;

interface ChannelLog {
  name: string;
  latest: number;
  /** Held messages are messages[start..]; positions are contiguous. */
  messages: ChannelMessage[];
  start: number;
  watchers: Set<Mailbox<ChannelWatchEvent>>;
}

interface Entry {
  record: StoredRecord;
  expiresAt?: number;
}

interface Lease {
  id: string;
  ttlMs: number;
  expiresAt: number;
  keys: Set<string>;
}

interface Deadline {
  at: number;
  kind: 'lease' | 'ttl';
  id: string;
}

interface RecordWatcher {
  prefix: string;
  mailbox: Mailbox<RecordWatchEvent>;
}

export class MemoryStore implements StateStore {
  private readonly limits: HistoryLimits;
  private readonly now: () => number;
  private readonly onListenerError: (error: unknown) => void;
  private readonly logs = new Map<string, ChannelLog>();
  private readonly records = new Map<string, Entry>();
  private readonly leases = new Map<string, Lease>();
  private readonly recordWatchers = new Set<RecordWatcher>();
  private readonly heap: Deadline[] = [];
  private readonly leasePrefix = randomUUID().slice(0, 8);
  private leaseSeq = 0;
  private revision = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.limits = options.limits ?? DEFAULT_HISTORY_LIMITS;
    this.now = options.now ?? Date.now;
    this.onListenerError = listenerErrorReporter(options.logger);
  }

  // ---------------------------------------------------------------- channel logs

  async append(
    channel: string,
    data: unknown,
    trace?: Record<string, string>,
  ): Promise<ChannelMessage> {
    this.checkOpen();
    const log = this.log(channel);
    const time = this.now();
    const position = log.latest + 1;
    const message: ChannelMessage =
      trace === undefined
        ? { channel, position, data, time }
        : { channel, position, data, time, trace };
    log.latest = position;
    log.messages.push(message);
    this.trim(log, time);
    if (log.watchers.size > 0) {
      const event: ChannelWatchEvent = { type: 'message', message };
      for (const watcher of log.watchers) watcher.push(event);
    }
    return message;
  }

  async read(channel: string, after: number, limit: number): Promise<HistoryPage> {
    this.checkOpen();
    checkPosition(after);
    checkLimit(limit);
    const log = this.logs.get(channel);
    if (log === undefined) return { messages: [], oldest: 1, latest: 0 };
    this.trim(log, this.now());
    const oldest = oldestOf(log);
    const from = log.start + Math.max(0, after + 1 - oldest);
    const to = Math.min(log.messages.length, from + limit);
    return {
      messages: from < to ? log.messages.slice(from, to) : [],
      oldest,
      latest: log.latest,
    };
  }

  async watchChannel(
    channel: string,
    after: number | undefined,
    listener: (event: ChannelWatchEvent) => void,
  ): Promise<ChannelWatch> {
    this.checkOpen();
    if (after !== undefined) checkPosition(after);
    const log = this.log(channel);
    if (after !== undefined && after > log.latest) {
      throw new StreamhealError(
        'position_from_future',
        `position ${after} on ${channel} is ahead of the latest position ${log.latest}`,
      );
    }
    const mailbox = new Mailbox(listener, this.onListenerError);
    const startedAfter = after ?? log.latest;
    if (after !== undefined) {
      // Replay and registration happen in one synchronous step: no gap, no duplicate.
      this.trim(log, this.now());
      const oldest = oldestOf(log);
      if (oldest > after + 1) mailbox.push({ type: 'lost', oldest });
      const messages = log.messages;
      for (let i = log.start + Math.max(0, after + 1 - oldest); i < messages.length; i++) {
        mailbox.push({ type: 'message', message: messages[i] as ChannelMessage });
      }
    }
    log.watchers.add(mailbox);
    return {
      startedAfter,
      close: () => {
        mailbox.close();
        log.watchers.delete(mailbox);
      },
    };
  }

  async channels(): Promise<ChannelSummary[]> {
    this.checkOpen();
    const now = this.now();
    const summaries: ChannelSummary[] = [];
    for (const log of this.logs.values()) {
      if (log.latest === 0) continue;
      this.trim(log, now);
      summaries.push({
        channel: log.name,
        latest: log.latest,
        held: log.messages.length - log.start,
      });
    }
    return summaries;
  }

  private log(channel: string): ChannelLog {
    let log = this.logs.get(channel);
    if (log === undefined) {
      checkChannel(channel);
      log = { name: channel, latest: 0, messages: [], start: 0, watchers: new Set() };
      this.logs.set(channel, log);
    }
    return log;
  }

  private trim(log: ChannelLog, now: number): void {
    const messages = log.messages;
    let start = log.start;
    const excess = messages.length - start - this.limits.maxCount;
    if (excess > 0) start += excess;
    const cutoff = now - this.limits.maxAgeMs;
    while (start < messages.length && (messages[start] as ChannelMessage).time < cutoff) start++;
    if (start === log.start) return;
    if (start === messages.length) {
      messages.length = 0;
      start = 0;
    } else if (start >= COMPACT_AT && start * 2 >= messages.length) {
      messages.splice(0, start);
      start = 0;
    }
    log.start = start;
  }

  // ---------------------------------------------------------------- records

  async get<T = unknown>(key: string): Promise<StoredRecord<T> | undefined> {
    this.checkOpen();
    this.sweep();
    return this.records.get(key)?.record as StoredRecord<T> | undefined;
  }

  async put(key: string, value: unknown, options: PutOptions = {}): Promise<number> {
    this.checkOpen();
    checkKey(key);
    this.sweep();
    const current = this.records.get(key);
    if (options.ifVersion !== undefined && (current?.record.version ?? 0) !== options.ifVersion) {
      throw new ConditionFailedError(key);
    }
    let lease: Lease | undefined;
    if (options.lease !== undefined) {
      lease = this.leases.get(options.lease);
      if (lease === undefined) throw new LeaseExpiredError(options.lease);
    }
    if (options.ttlMs !== undefined) checkPositive(options.ttlMs, 'ttlMs');
    const version = ++this.revision;
    const record: StoredRecord =
      lease === undefined
        ? { key, value: structuredClone(value), version }
        : { key, value: structuredClone(value), version, lease: lease.id };
    const previousLease = current?.record.lease;
    if (previousLease !== undefined && previousLease !== lease?.id) {
      this.leases.get(previousLease)?.keys.delete(key);
    }
    lease?.keys.add(key);
    const entry: Entry = { record };
    if (options.ttlMs !== undefined) {
      entry.expiresAt = this.now() + options.ttlMs;
      this.schedule({ at: entry.expiresAt, kind: 'ttl', id: key });
    }
    this.records.set(key, entry);
    this.notify(key, { type: 'put', record });
    return version;
  }

  async delete(key: string, options: { ifVersion?: number } = {}): Promise<boolean> {
    this.checkOpen();
    this.sweep();
    const current = this.records.get(key);
    if (options.ifVersion !== undefined && (current?.record.version ?? 0) !== options.ifVersion) {
      throw new ConditionFailedError(key);
    }
    if (current === undefined) return false;
    this.remove(key, current);
    return true;
  }

  async list<T = unknown>(prefix: string): Promise<StoredRecord<T>[]> {
    this.checkOpen();
    this.sweep();
    const found: StoredRecord<T>[] = [];
    for (const [key, entry] of this.records) {
      if (key.startsWith(prefix)) found.push(entry.record as StoredRecord<T>);
    }
    return found.sort(byKey);
  }

  async watch(prefix: string, listener: (event: RecordWatchEvent) => void): Promise<Watch> {
    this.checkOpen();
    this.sweep();
    const watcher: RecordWatcher = {
      prefix,
      mailbox: new Mailbox(listener, this.onListenerError),
    };
    this.recordWatchers.add(watcher);
    return {
      close: () => {
        watcher.mailbox.close();
        this.recordWatchers.delete(watcher);
      },
    };
  }

  async grantLease(ttlMs: number): Promise<string> {
    this.checkOpen();
    checkPositive(ttlMs, 'ttlMs');
    this.sweep();
    const id = `${this.leasePrefix}-${(++this.leaseSeq).toString(36)}`;
    const lease: Lease = { id, ttlMs, expiresAt: this.now() + ttlMs, keys: new Set() };
    this.leases.set(id, lease);
    this.schedule({ at: lease.expiresAt, kind: 'lease', id });
    return id;
  }

  async keepAlive(leaseId: string): Promise<void> {
    this.checkOpen();
    this.sweep();
    const lease = this.leases.get(leaseId);
    if (lease === undefined) throw new LeaseExpiredError(leaseId);
    // The heap entry stays at the old deadline and is pushed again when it comes up early.
    lease.expiresAt = this.now() + lease.ttlMs;
  }

  async revokeLease(leaseId: string): Promise<void> {
    this.checkOpen();
    this.sweep();
    const lease = this.leases.get(leaseId);
    if (lease !== undefined) this.endLease(lease);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.heap.length = 0;
    for (const log of this.logs.values()) {
      for (const watcher of log.watchers) watcher.close();
      log.watchers.clear();
    }
    for (const watcher of this.recordWatchers) watcher.mailbox.close();
    this.recordWatchers.clear();
  }

  private remove(key: string, entry: Entry): void {
    this.records.delete(key);
    if (entry.record.lease !== undefined) this.leases.get(entry.record.lease)?.keys.delete(key);
    this.revision++;
    this.notify(key, { type: 'delete', key });
  }

  private endLease(lease: Lease): void {
    this.leases.delete(lease.id);
    for (const key of lease.keys) {
      const entry = this.records.get(key);
      if (entry !== undefined && entry.record.lease === lease.id) this.remove(key, entry);
    }
    lease.keys.clear();
  }

  private notify(key: string, event: RecordWatchEvent): void {
    for (const watcher of this.recordWatchers) {
      if (key.startsWith(watcher.prefix)) watcher.mailbox.push(event);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreUnavailableError('memory store closed');
  }

  // ---------------------------------------------------------------- deadlines

  /** Ends whatever is due; called by the timer and before every record operation. */
  private sweep(): void {
    const heap = this.heap;
    if (heap.length === 0 || (heap[0] as Deadline).at > this.now()) return;
    const now = this.now();
    while (heap.length > 0 && (heap[0] as Deadline).at <= now) {
      const due = heapPop(heap);
      if (due.kind === 'lease') {
        const lease = this.leases.get(due.id);
        if (lease === undefined) continue;
        if (lease.expiresAt <= now) this.endLease(lease);
        else heapPush(heap, { at: lease.expiresAt, kind: 'lease', id: lease.id });
      } else {
        const entry = this.records.get(due.id);
        if (entry?.expiresAt !== undefined && entry.expiresAt <= now) this.remove(due.id, entry);
      }
    }
    this.arm();
  }

  private schedule(deadline: Deadline): void {
    heapPush(this.heap, deadline);
    if (deadline.at < this.timerAt) this.arm();
  }

  private arm(): void {
    const next = this.heap[0];
    if (next !== undefined && this.timer !== undefined && this.timerAt <= next.at) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    if (next === undefined || this.closed) return;
    const delay = Math.min(Math.max(1, next.at - this.now()), MAX_TIMER_MS);
    this.timerAt = next.at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.sweep();
      this.arm();
    }, delay);
    this.timer.unref();
  }
}

function oldestOf(log: ChannelLog): number {
  const first = log.messages[log.start];
  return first === undefined ? log.latest + 1 : first.position;
}

function heapPush(heap: Deadline[], item: Deadline): void {
  let i = heap.push(item) - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    const p = heap[parent] as Deadline;
    if (p.at <= item.at) break;
    heap[i] = p;
    i = parent;
  }
  heap[i] = item;
}

function heapPop(heap: Deadline[]): Deadline {
  const top = heap[0] as Deadline;
  const last = heap.pop() as Deadline;
  if (heap.length > 0) {
    let i = 0;
    const n = heap.length;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child =
        right < n && (heap[right] as Deadline).at < (heap[left] as Deadline).at ? right : left;
      if ((heap[child] as Deadline).at >= last.at) break;
      heap[i] = heap[child] as Deadline;
      i = child;
    }
    heap[i] = last;
  }
  return top;
}
