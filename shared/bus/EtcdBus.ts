/**
 * The event bus on etcd, for self-hosted clusters (docs/etcd.md, "Event bus").
 *
 * put: events are validated and serialized at once, queued in a local spool, and written in
 * order by one flusher, up to 100 per transaction, each under `<prefix>bus/<producer>/<seq>`
 * on a lease that ends `retentionMs` later (etcd removes old events by itself). While etcd
 * cannot be reached the spool keeps up to `spoolLimit` events; past that the oldest are dropped
 * and counted (`stats().dropped`). When etcd answers again the spool is flushed in order.
 * put resolves once its events are written, or at once if etcd is unreachable (they wait in
 * the spool); it rejects only for invalid events or a closed bus.
 *
 * subscribe: one etcd watch on the bus prefix per EtcdBus, resuming from the revision after
 * the last event it delivered (etcd keeps that history until compaction; older gaps are refilled
 * from the events still stored). Every event goes to each subscription whose EventBridge
 * pattern matches, serially and in order per subscription, as on the in-process router.
 *
 * Delivery is at least once: a write retried after a lost answer stores the same event again,
 * and a subscriber drops repeats by (producer, sequence). Order is kept per producer (one
 * EtcdBus instance), not between producers.
 */
import { randomBytes } from 'node:crypto';
import type { IEvent } from 'etcd3';
import { EtcdLeaseInvalidError } from 'etcd3';
import type { Logger } from 'pino';
import { EtcdConnection, sleep, type EtcdConnectionOptions } from '../store/etcd/connection.js';
import { KeyLayout, prefixEnd, trailingNumber } from '../store/etcd/keys.js';
import { Leases, RotatingLease } from '../store/etcd/leases.js';
import { ResumableWatch } from '../store/etcd/watch.js';
import type { BusEvent, EventBus, EventPattern } from './EventBus.js';
import { InvalidEventError } from './events.js';
import { BusClosedError } from './InProcessBus.js';
import {
  serializeEvent,
  Subscriptions,
  type Handler,
  type Subscription as BaseSubscription,
} from './subscriptions.js';

export interface EtcdBusOptions extends EtcdConnectionOptions {
  /** Every key streamheal writes starts with this. @default 'streamheal/' */
  prefix?: string;
  /** Events kept locally while etcd cannot be reached; past it the oldest are dropped. @default 10000 */
  spoolLimit?: number;
  /** How long events stay in etcd (ms), for subscribers that come back late. @default 60000 */
  retentionMs?: number;
  /** Told about every handler that throws or rejects; defaults to console.error. */
  onHandlerError?: (error: unknown, event: BusEvent) => void;
  /** Where outages and watch restarts are reported. */
  logger?: Logger;
}

export interface EtcdBusStats {
  /** Events waiting to be written. */
  spooled: number;
  /** Events dropped because the spool was full (or the bus closed before they were written). */
  dropped: number;
  /** Events written to etcd. */
  written: number;
  /** False while writes fail. */
  connected: boolean;
}

interface Subscription extends BaseSubscription {
  /** Only events written after this revision are for this subscription. */
  since: number;
}

interface Spooled {
  seq: number;
  json: string;
}

/** Events per transaction (etcd allows 128 operations per transaction). */
const MAX_BATCH = 100;
/** Producers remembered for dropping repeats. */
const MAX_PRODUCERS = 10_000;

export class EtcdBus implements EventBus {
  private readonly connection: EtcdConnection;
  private readonly keys: KeyLayout;
  private readonly leases: Leases;
  private readonly lease: RotatingLease;
  private readonly producer = randomBytes(9).toString('base64url');
  private readonly spoolLimit: number;
  private readonly maxEventBytes: number;
  private readonly maxBatchBytes: number;
  private readonly logger: Logger | undefined;
  private readonly subscriptions: Subscriptions<Subscription>;
  /** Highest sequence delivered per producer. */
  private readonly delivered = new Map<string, number>();
  private spool: Spooled[] = [];
  private inFlight: Spooled[] = [];
  private waiters: Array<{ seq: number; resolve: () => void }> = [];
  private seq = 0;
  private revision = 0;
  private flushing = false;
  private down = false;
  private dropped = 0;
  private written = 0;
  private watch: ResumableWatch | undefined;
  private starting: Promise<void> | undefined;
  private recovering = false;
  private closed = false;
  private stopped = false;

  /** Connects and checks that etcd answers (StoreUnavailableError if it does not in time). */
  static async connect(options: EtcdBusOptions): Promise<EtcdBus> {
    const bus = new EtcdBus(options);
    try {
      bus.noteRevision(await bus.currentRevision());
    } catch (error) {
      await bus.close();
      throw error;
    }
    return bus;
  }

  constructor(options: EtcdBusOptions) {
    this.connection = new EtcdConnection(options);
    this.keys = new KeyLayout(options.prefix ?? 'streamheal/');
    this.leases = new Leases(this.connection);
    this.lease = new RotatingLease(this.leases, options.retentionMs ?? 60_000);
    this.spoolLimit = Math.max(1, options.spoolLimit ?? 10_000);
    this.maxEventBytes = this.connection.maxRequestBytes - 16 * 1024;
    this.maxBatchBytes = Math.min(1024 * 1024, Math.floor(this.connection.maxRequestBytes * 0.66));
    this.logger = options.logger;
    this.subscriptions = new Subscriptions(options.onHandlerError);
  }

  stats(): EtcdBusStats {
    return {
      spooled: this.spool.length + this.inFlight.length,
      dropped: this.dropped,
      written: this.written,
      connected: !this.down,
    };
  }

  async put(events: BusEvent[]): Promise<void> {
    if (this.closed) throw new BusClosedError();
    if (!Array.isArray(events)) throw new InvalidEventError('put expects an array of events');
    // The whole batch is checked before any of it is queued.
    const serialized = events.map((event, index) => this.serialize(event, `events[${index}]`));
    if (serialized.length === 0) return;
    for (const json of serialized) this.spool.push({ seq: ++this.seq, json });
    this.enforceLimit();
    const last = this.seq;
    const written = this.down
      ? Promise.resolve()
      : new Promise<void>((resolve) => this.waiters.push({ seq: last, resolve }));
    void this.flush();
    await written;
  }

  subscribe(pattern: EventPattern, handler: Handler): () => void {
    if (this.closed) throw new BusClosedError();
    const subscription = this.subscriptions.add(pattern, handler, { since: this.revision });
    this.startWatch();
    return () => this.unsubscribe(subscription);
  }

  /** Stops delivery at once, writes what is spooled (within the time budget), then disconnects. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subscriptions.removeAll();
    this.closeIdleWatch();
    const deadline = Date.now() + this.connection.timeoutMs;
    while ((this.flushing || this.spool.length > 0) && !this.down && Date.now() < deadline) {
      await sleep(10);
    }
    this.stopped = true;
    this.dropped += this.spool.length;
    this.spool = [];
    this.releaseWaiters(Infinity);
    this.watch?.close();
    this.leases.close();
    this.connection.close();
  }

  // ------------------------------------------------------------------ writing

  private serialize(event: BusEvent, label: string): string {
    const json = serializeEvent(event, label);
    const bytes = Buffer.byteLength(json);
    if (bytes > this.maxEventBytes) {
      throw new InvalidEventError(
        `${label}: ${bytes} bytes is over etcd's request limit (${this.maxEventBytes})`,
      );
    }
    return json;
  }

  /** Drops the oldest waiting events past the spool limit. */
  private enforceLimit(): void {
    const excess = this.spool.length - this.spoolLimit;
    if (excess <= 0) return;
    this.spool.splice(0, excess);
    this.dropped += excess;
    if (this.dropped === excess || this.dropped % 1_000 < excess) {
      this.logger?.warn({ dropped: this.dropped }, 'event bus spool full: oldest events dropped');
    }
  }

  /** One flusher at a time writes the spool in order, retrying with backoff while etcd is away. */
  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (let pause = 100; this.spool.length > 0 && !this.stopped;) {
        this.inFlight = this.takeBatch();
        try {
          if (!(await this.write(this.inFlight))) {
            // The retention lease ended under us (etcd restored, or revoked by hand).
            this.spool = [...this.inFlight, ...this.spool];
            this.inFlight = [];
            this.lease.forget();
            continue;
          }
          const last = this.inFlight.at(-1)!.seq;
          this.written += this.inFlight.length;
          this.inFlight = [];
          if (this.down) this.logger?.info('event bus reconnected: spool flushing');
          this.down = false;
          pause = 100;
          this.releaseWaiters(last);
        } catch (error) {
          // Back to the front of the spool, still in order; the limit applies again.
          this.spool = [...this.inFlight, ...this.spool];
          this.inFlight = [];
          this.enforceLimit();
          if (!this.down) {
            this.logger?.warn({ err: error }, 'event bus cannot write to etcd: spooling events');
          }
          this.down = true;
          this.releaseWaiters(Infinity);
          if (this.closed) return;
          await sleep(pause * (0.5 + Math.random() / 2));
          pause = Math.min(2_000, pause * 2);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  private takeBatch(): Spooled[] {
    let bytes = 0;
    let count = 0;
    for (const entry of this.spool) {
      if (count === MAX_BATCH || (count > 0 && bytes + entry.json.length > this.maxBatchBytes)) {
        break;
      }
      bytes += entry.json.length;
      count++;
    }
    return this.spool.splice(0, count);
  }

  /** Writes one batch in one transaction; false when the lease it used is gone. */
  private async write(batch: Spooled[]): Promise<boolean> {
    // A subscription being set up first learns the current revision: our writes come after it.
    if (this.starting) await this.starting;
    const lease = await this.lease.get();
    const request = {
      success: batch.map((entry) => ({
        request_put: {
          key: Buffer.from(this.keys.busEvent(this.producer, entry.seq)),
          value: Buffer.from(entry.json),
          lease,
        },
      })),
    };
    return this.connection.call('bus put', async ({ options }) => {
      try {
        const response = await this.connection.client.kv.txn(request, options);
        this.noteRevision(Number(response.header.revision));
        return true;
      } catch (error) {
        if (error instanceof EtcdLeaseInvalidError) return false;
        throw error;
      }
    });
  }

  private releaseWaiters(throughSeq: number): void {
    const waiters = this.waiters;
    let i = 0;
    while (i < waiters.length && waiters[i]!.seq <= throughSeq) waiters[i++]!.resolve();
    if (i > 0) this.waiters = waiters.slice(i);
  }

  // ------------------------------------------------------------------ delivering

  /**
   * Opens the watch when the first subscription arrives. It starts after the current revision,
   * read fresh so an idle bus does not replay old events; writes of this bus wait for that
   * read, so an event put after subscribe() reaches the new subscription.
   */
  private startWatch(): void {
    if (this.watch !== undefined || this.starting !== undefined || this.recovering) return;
    if (this.stopped) return;
    this.starting = this.currentRevision()
      .then(
        (revision) => {
          this.noteRevision(revision);
          for (const subscription of this.subscriptions) {
            subscription.since = Math.max(subscription.since, revision);
          }
        },
        () => {
          // etcd unreachable: start after the last revision we know of.
        },
      )
      .finally(() => {
        this.starting = undefined;
        if (this.subscriptions.size > 0 && !this.stopped) this.openWatch(this.revision + 1);
      });
  }

  private openWatch(startRevision: number): void {
    this.watch = new ResumableWatch(this.connection, {
      prefix: this.keys.bus,
      startRevision,
      onlyPuts: true,
      onEvents: (events) => this.dispatch(events),
      onBroken: (error) => void this.recover(error),
    });
  }

  /**
   * etcd could not resume the watch (history compacted while we were away): deliver the events
   * still stored that we have not seen, then watch on from the present.
   */
  private async recover(error: Error): Promise<void> {
    const missedFrom = this.watch?.nextRevision ?? this.revision + 1;
    this.watch = undefined;
    this.recovering = true;
    this.logger?.warn({ err: error }, 'event bus watch could not resume: refilling from etcd');
    try {
      for (let pause = 100; !this.stopped && this.subscriptions.size > 0;) {
        try {
          const stored = await this.connection.call('bus catch-up', ({ options }) =>
            this.connection.client.kv.range(
              {
                key: Buffer.from(this.keys.bus),
                range_end: prefixEnd(this.keys.bus),
                min_mod_revision: missedFrom,
              },
              options,
            ),
          );
          if (this.stopped || this.subscriptions.size === 0) return;
          const events = stored.kvs
            .map((kv) => ({ type: 'Put', kv }) as IEvent)
            .sort((a, b) => revisionOf(a) - revisionOf(b) || Buffer.compare(a.kv.key, b.kv.key));
          this.dispatch(events);
          this.openWatch(Number(stored.header.revision) + 1);
          return;
        } catch {
          await sleep(pause);
          pause = Math.min(2_000, pause * 2);
        }
      }
    } finally {
      this.recovering = false;
    }
  }

  private dispatch(events: IEvent[]): void {
    for (const { kv } of events) {
      const revision = Number(kv.mod_revision);
      this.noteRevision(revision);
      const key = kv.key.toString();
      const seq = trailingNumber(key);
      const producer = key.slice(this.keys.bus.length, key.lastIndexOf('/'));
      const last = this.delivered.get(producer);
      if (last !== undefined && seq <= last) continue; // a write retried after a lost answer
      this.delivered.delete(producer);
      this.delivered.set(producer, seq);
      if (this.delivered.size > MAX_PRODUCERS) {
        this.delivered.delete(this.delivered.keys().next().value as string);
      }
      const json = kv.value.toString();
      let event: unknown;
      try {
        event = JSON.parse(json);
      } catch {
        continue; // not written by an EtcdBus
      }
      this.subscriptions.offer(event, json, (subscription) => revision > subscription.since);
    }
  }

  private unsubscribe(subscription: Subscription): void {
    this.subscriptions.remove(subscription);
    this.closeIdleWatch();
  }

  /** Nobody subscribes any more: stop watching etcd. */
  private closeIdleWatch(): void {
    if (this.subscriptions.size === 0 && this.watch !== undefined) {
      this.watch.close();
      this.watch = undefined;
    }
  }

  private currentRevision(): Promise<number> {
    return this.connection.currentRevision(this.keys.bus);
  }

  private noteRevision(revision: number): void {
    if (revision > this.revision) this.revision = revision;
  }
}

function revisionOf(event: IEvent): number {
  return Number(event.kv.mod_revision);
}
