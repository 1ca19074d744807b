/**
 * What the leading orchestrator reads from etcd during its term, from where the previous
 * leaders stopped (docs/self-hosted.md, "Failover"):
 *
 * - bus events (`<prefix>bus/`), each handed to the catalogue's functions; an event whose
 *   function fails is tried again with backoff while later events go on;
 * - gateway registrations (`<prefix>rec/nodes/`): a deleted registration (its lease ended, or the
 *   gateway revoked it on its way out) becomes a `Node Lease Expired` event on the bus, which the
 *   bus part then routes to nodeLost. Its id is derived from the delete's revision, so a leader
 *   that emits it again after a takeover emits the same event.
 *
 * Both parts are etcd watches started at the revision after the checkpoint. The checkpoint
 * (`<prefix>orchestrator/checkpoint`) says through which revision each part is done: every event
 * before it was handled (or given up on after its retries), so a new leader starts there and
 * nothing that arrived while there was no leader, or while the old one was dying, is missed.
 * It is written at most every `checkpointEveryMs`, in a transaction that holds only while the
 * leader key still has this term's create revision (a deposed leader cannot move it). Events
 * between the last checkpoint and the old leader's death are handled twice; the functions are
 * idempotent on event ids (shared/control/idempotency.ts), so the second time changes nothing.
 *
 * When etcd no longer holds the history from the checkpoint on (compacted: no leader for longer
 * than the compaction retention, 5 minutes by default), the bus part handles the events still
 * stored (bus retention, 1 minute by default) and the registrations part compares the
 * registrations it knew at the checkpoint with the current ones; events older than the bus
 * retention are then lost, and said so in the log.
 */
import type { IEvent, IKeyValue } from 'etcd3';
import { NodeLostEvents } from '../../shared/bus/controlEvents.js';
import type { BusEvent } from '../../shared/bus/EventBus.js';
import { makeEvent, Sources, validateEvent } from '../../shared/bus/events.js';
import { errorCode } from '../../shared/errors.js';
import { sleep, type EtcdConnection } from '../../shared/store/etcd/connection.js';
import { prefixEnd, trailingNumber } from '../../shared/store/etcd/keys.js';
import { ResumableWatch } from '../../shared/store/etcd/watch.js';
import type { Logger } from '../../shared/telemetry/logger.js';
import type { Target } from './dispatcher.js';
import type { Term } from './election.js';
import type { OrchestratorKeys } from './keys.js';

/** What a gateway registration said, kept to describe it when it goes. */
export interface Registration {
  pid?: number;
  startedAt?: string;
  url?: string;
  taskArn?: string;
}

export interface Checkpoint {
  /** Every bus event written at or before this revision was handled. */
  bus: number;
  /** Every registration change at or before this revision was handled. */
  nodes: number;
  /** The registrations as of `nodes`. */
  registered: Record<string, Registration>;
  /** Term and leader that wrote it, and when. */
  term: number;
  leader: string;
  at: string;
}

export interface FeedStats {
  /** Bus events handled (every matching function succeeded, or nothing matched). */
  handled: number;
  /** Bus events given up on after `maxAttempts`. */
  failed: number;
  /** Bus events waiting for another try. */
  retrying: number;
  /** `Node Lease Expired` events put on the bus. */
  leaseExpiries: number;
  /** Events not written by a bus (unparseable) or with an invalid envelope. */
  invalid: number;
  /** The checkpoint last written. */
  checkpoint: { bus: number; nodes: number } | undefined;
  /** Revision through which the bus part has handled everything (may be ahead of the checkpoint). */
  busThrough: number;
}

export interface FeedOptions {
  connection: EtcdConnection;
  keys: OrchestratorKeys;
  term: Term;
  /** Whether the term still holds (checked before every action). */
  isLeading: () => boolean;
  /** Our name, written into the checkpoint. */
  leader: string;
  /** The catalogue subscriptions an event matches. */
  targets: (event: BusEvent) => Target[];
  /** Puts events on the bus; resolves once etcd holds them. */
  publish: (events: BusEvent[]) => Promise<void>;
  /** A fenced write found another leader's key: the term is over. */
  onFenced: (reason: string) => void;
  logger: Logger;
  /** @default 200 */
  checkpointEveryMs?: number;
  /** Tries per event and function before giving up. @default 10 */
  maxAttempts?: number;
  /** First retry delay; doubles up to 10 s. @default 250 */
  retryBaseMs?: number;
  /**
   * Events handled at once (those about one node one after another). More gains little: the
   * functions of different nodes meet on the cluster record, and retry when they collide.
   * @default 4
   */
  concurrency?: number;
  /** Told when an event was handled (for figures). */
  onHandled?: (event: BusEvent, revision: number) => void;
}

interface Item {
  revision: number;
  key: string;
  value: Buffer;
}

interface Retry {
  revision: number;
  event: BusEvent;
  targets: Target[];
  attempts: number;
  dueAt: number;
}

/** Producers remembered for dropping rewritten events (a bus write retried after a lost answer). */
const MAX_PRODUCERS = 10_000;

export class EventFeed {
  private readonly keyBuffer: { bus: Buffer; nodes: Buffer };
  private readonly checkpointEveryMs: number;
  private readonly maxAttempts: number;
  private readonly retryBaseMs: number;
  private busQueue: Item[] = [];
  private nodeQueue: IEvent[] = [];
  private readonly retries = new Set<Retry>();
  /** Events being handled (each holds the checkpoint before its revision). */
  private readonly running = new Map<{ revision: number }, Promise<void>>();
  /** The last task of each node, which its next event waits for. */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly concurrency: number;
  private nodeInFlight: number | undefined;
  /** Revisions received so far (everything at or before was queued). */
  private busSeen = 0;
  private nodesSeen = 0;
  private registered: Record<string, Registration> = {};
  private readonly delivered = new Map<string, number>();
  private busWatch: ResumableWatch | undefined;
  private nodeWatch: ResumableWatch | undefined;
  private wakeBus: (() => void) | undefined;
  private wakeNodes: (() => void) | undefined;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private written: { bus: number; nodes: number } | undefined;
  private writing: Promise<void> | undefined;
  private stopped = false;
  private readonly counts = { handled: 0, failed: 0, leaseExpiries: 0, invalid: 0 };
  private loops: Promise<unknown> | undefined;

  constructor(private readonly options: FeedOptions) {
    this.keyBuffer = { bus: Buffer.from(options.keys.bus), nodes: Buffer.from(options.keys.nodes) };
    this.checkpointEveryMs = options.checkpointEveryMs ?? 200;
    this.maxAttempts = options.maxAttempts ?? 10;
    this.retryBaseMs = options.retryBaseMs ?? 250;
    this.concurrency = Math.max(1, options.concurrency ?? 4);
  }

  stats(): FeedStats {
    return {
      ...this.counts,
      retrying: this.retries.size,
      checkpoint: this.written ? { ...this.written } : undefined,
      busThrough: this.busThrough(),
    };
  }

  /** Reads the checkpoint, starts both watches and the handling loops. */
  async start(): Promise<void> {
    const checkpoint = await this.readCheckpoint();
    if (this.stopped) return;
    if (checkpoint) {
      this.options.logger.info(
        { bus: checkpoint.bus, nodes: checkpoint.nodes, from: checkpoint.leader },
        `resuming from the checkpoint of term ${checkpoint.term} (${checkpoint.leader})`,
      );
      this.registered = { ...checkpoint.registered };
      this.busSeen = checkpoint.bus;
      this.nodesSeen = checkpoint.nodes;
      this.written = { bus: checkpoint.bus, nodes: checkpoint.nodes };
      this.openBusWatch(checkpoint.bus + 1);
      this.openNodeWatch(checkpoint.nodes + 1);
    } else {
      // The first leader ever: registrations as they are now, and the bus events etcd still holds.
      this.options.logger.info('no checkpoint: starting from the events etcd holds now');
      const nodes = await this.readNodes();
      this.registered = nodes.registered;
      this.nodesSeen = nodes.revision;
      this.openNodeWatch(nodes.revision + 1);
      await this.catchUpBus(1);
    }
    this.loops = Promise.all([this.busLoop(), this.nodeLoop()]);
    this.scheduleCheckpoint();
  }

  /** Stops reading; writes a last checkpoint if the term still holds. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.checkpointTimer);
    this.busWatch?.close();
    this.nodeWatch?.close();
    this.wakeBus?.();
    this.wakeNodes?.();
    await this.loops;
    await this.writing;
    if (this.options.isLeading()) await this.writeCheckpoint().catch(() => undefined);
  }

  // ------------------------------------------------------------------ bus events

  private openBusWatch(from: number): void {
    if (this.stopped) return;
    this.busWatch = new ResumableWatch(this.options.connection, {
      prefix: this.options.keys.bus,
      startRevision: from,
      onlyPuts: true,
      onEvents: (events) => this.queueBus(events.map(({ kv }) => item(kv))),
      onBroken: (error) => {
        this.options.logger.warn(
          { err: error, from: this.busSeen + 1 },
          'bus history no longer reaches the checkpoint: handling the events still stored',
        );
        void this.catchUpBus(this.busSeen + 1);
      },
    });
  }

  /** Queues the stored events from `from` on, then watches from the read's revision. */
  private async catchUpBus(from: number): Promise<void> {
    for (let pause = 100; !this.stopped; pause = Math.min(2_000, pause * 2)) {
      try {
        const response = await this.options.connection.call('bus catch-up', ({ options }) =>
          this.options.connection.client.kv.range(
            {
              key: this.keyBuffer.bus,
              range_end: prefixEnd(this.keyBuffer.bus),
              min_mod_revision: from,
            },
            options,
          ),
        );
        const items = response.kvs
          .map(item)
          .sort((a, b) => a.revision - b.revision || a.key.localeCompare(b.key));
        const revision = Number(response.header.revision);
        this.queueBus(items);
        this.busSeen = Math.max(this.busSeen, revision);
        this.openBusWatch(revision + 1);
        return;
      } catch (error) {
        this.options.logger.warn({ err: error }, 'bus catch-up failed; retrying');
        await sleep(pause);
      }
    }
  }

  private queueBus(items: Item[]): void {
    for (const entry of items) {
      this.busQueue.push(entry);
      this.busSeen = Math.max(this.busSeen, entry.revision);
    }
    this.wakeBus?.();
  }

  /**
   * Hands events out in revision order, up to `concurrency` at once; events about the same node
   * (`detail.node`, else the first resource) one after another, in order, as its rule memory
   * wants. Retries that are due go first.
   */
  private async busLoop(): Promise<void> {
    while (!this.stopped) {
      if (this.running.size >= this.concurrency) {
        await this.sleepBus(1_000);
        continue;
      }
      const now = Date.now();
      const due = [...this.retries].find((retry) => retry.dueAt <= now);
      if (due) {
        if (!this.options.isLeading()) break;
        this.retries.delete(due);
        this.launch(due.revision, due.event, () => this.retry(due));
        continue;
      }
      const next = this.busQueue.shift();
      if (next === undefined) {
        const nextDue = Math.min(...[...this.retries].map((retry) => retry.dueAt));
        await this.sleepBus(Number.isFinite(nextDue) ? nextDue - now : 60_000);
        continue;
      }
      if (!this.options.isLeading()) {
        this.busQueue.unshift(next);
        break;
      }
      const event = this.accept(next);
      if (event) this.launch(next.revision, event, () => this.handle(next.revision, event));
    }
    await Promise.allSettled([...this.running.values()]);
  }

  /** Runs `task` after the running tasks of the same node; it holds the checkpoint meanwhile. */
  private launch(revision: number, event: BusEvent, task: () => Promise<void>): void {
    const key = orderingKey(event);
    const token = { revision };
    const previous = key === undefined ? undefined : this.chains.get(key);
    const run = (previous ?? Promise.resolve()).then(task).catch((error: unknown) => {
      this.options.logger.error({ err: error, event: event.id }, 'event handling failed');
    });
    const done = run.finally(() => {
      this.running.delete(token);
      if (key !== undefined && this.chains.get(key) === done) this.chains.delete(key);
      this.wakeBus?.();
    });
    this.running.set(token, done);
    if (key !== undefined) this.chains.set(key, done);
  }

  private sleepBus(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(1, ms));
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakeBus = done;
    });
  }

  /** The event in `entry`, unless it is a rewrite of one already seen or not an event. */
  private accept(entry: Item): BusEvent | undefined {
    // A rewrite of an event already seen (the producer's write was retried after a lost answer).
    const producer = entry.key.slice(this.options.keys.bus.length, entry.key.lastIndexOf('/'));
    const seq = trailingNumber(entry.key);
    const last = this.delivered.get(producer);
    if (last !== undefined && seq <= last) return undefined;
    this.delivered.delete(producer);
    this.delivered.set(producer, seq);
    if (this.delivered.size > MAX_PRODUCERS) {
      this.delivered.delete(this.delivered.keys().next().value as string);
    }
    try {
      const parsed: unknown = JSON.parse(entry.value.toString());
      validateEvent(parsed, `bus event ${entry.key}`);
      return parsed;
    } catch (error) {
      this.counts.invalid++;
      this.options.logger.warn({ err: error, key: entry.key }, 'bus event skipped: not an event');
      return undefined;
    }
  }

  private async handle(revision: number, event: BusEvent): Promise<void> {
    const failed = await this.run(event, this.options.targets(event));
    if (failed.length === 0) {
      this.counts.handled++;
      this.options.onHandled?.(event, revision);
      return;
    }
    this.retries.add({
      revision,
      event,
      targets: failed,
      attempts: 1,
      dueAt: Date.now() + this.retryBaseMs,
    });
  }

  private async retry(retry: Retry): Promise<void> {
    const failed = await this.run(retry.event, retry.targets);
    if (failed.length === 0) {
      this.counts.handled++;
      this.options.onHandled?.(retry.event, retry.revision);
      return;
    }
    const attempts = retry.attempts + 1;
    if (attempts >= this.maxAttempts) {
      this.counts.failed++;
      this.options.logger.error(
        {
          event: retry.event.id,
          detailType: retry.event['detail-type'],
          functions: failed.map((t) => t.name),
          attempts,
        },
        `gave up on event ${retry.event.id} after ${attempts} attempts`,
      );
      return;
    }
    this.retries.add({
      ...retry,
      targets: failed,
      attempts,
      dueAt: Date.now() + Math.min(10_000, this.retryBaseMs * 2 ** (attempts - 1)),
    });
  }

  /** Runs the targets one after another; returns those that failed. */
  private async run(event: BusEvent, targets: Target[]): Promise<Target[]> {
    const failed: Target[] = [];
    for (const target of targets) {
      try {
        await target.run(event);
      } catch (error) {
        failed.push(target);
        const level = errorCode(error) === 'in_progress' ? 'info' : 'warn';
        this.options.logger[level](
          { err: error, event: event.id, function: target.name },
          `${target.name} failed on event ${event.id}; will try again`,
        );
      }
    }
    return failed;
  }

  /** Revision through which every bus event was handled (or given up on). */
  private busThrough(): number {
    let through = this.busSeen;
    const first = this.busQueue[0];
    if (first !== undefined) through = Math.min(through, first.revision - 1);
    for (const { revision } of this.running.keys()) through = Math.min(through, revision - 1);
    for (const retry of this.retries) through = Math.min(through, retry.revision - 1);
    return through;
  }

  // ------------------------------------------------------------------ registrations

  private openNodeWatch(from: number): void {
    if (this.stopped) return;
    this.nodeWatch = new ResumableWatch(this.options.connection, {
      prefix: this.options.keys.nodes,
      startRevision: from,
      onEvents: (events) => {
        for (const event of events) {
          this.nodeQueue.push(event);
          this.nodesSeen = Math.max(this.nodesSeen, Number(event.kv.mod_revision));
        }
        this.wakeNodes?.();
      },
      onBroken: (error) => {
        this.options.logger.warn(
          { err: error, from: this.nodesSeen + 1 },
          'registration history no longer reaches the checkpoint: comparing registrations',
        );
        // What was queued is dropped (the comparison covers it): the checkpoint stays before it.
        this.nodesSeen = this.nodesThrough();
        this.nodeQueue.length = 0;
        void this.reconcileNodes();
      },
    });
  }

  /** After a gap: registrations known then and gone now are reported as expired. */
  private async reconcileNodes(): Promise<void> {
    for (let pause = 100; !this.stopped; pause = Math.min(2_000, pause * 2)) {
      try {
        const now = await this.readNodes();
        for (const node of Object.keys(this.registered)) {
          if (now.registered[node] !== undefined) continue;
          await this.reportExpired(node, this.registered[node]!, now.revision);
        }
        this.registered = now.registered;
        this.nodesSeen = Math.max(this.nodesSeen, now.revision);
        this.openNodeWatch(now.revision + 1);
        return;
      } catch (error) {
        this.options.logger.warn({ err: error }, 'registration catch-up failed; retrying');
        await sleep(pause);
      }
    }
  }

  private async nodeLoop(): Promise<void> {
    while (!this.stopped) {
      const next = this.nodeQueue.shift();
      if (next === undefined) {
        await new Promise<void>((resolve) => (this.wakeNodes = resolve));
        continue;
      }
      if (!this.options.isLeading()) {
        this.nodeQueue.unshift(next);
        return;
      }
      const revision = Number(next.kv.mod_revision);
      const node = this.options.keys.nodeOf(next.kv.key.toString());
      this.nodeInFlight = revision;
      try {
        if (next.type === 'Put') {
          this.registered[node] = registration(next.kv.value);
        } else {
          const last = this.registered[node] ?? {};
          delete this.registered[node];
          await this.reportExpired(node, last, revision);
        }
      } finally {
        this.nodeInFlight = undefined;
      }
    }
  }

  /** Puts `Node Lease Expired` on the bus, trying until etcd holds it or the term ends. */
  private async reportExpired(node: string, last: Registration, revision: number): Promise<void> {
    const detail: Record<string, unknown> = { node, revision };
    for (const field of ['pid', 'startedAt', 'url', 'taskArn'] as const) {
      if (last[field] !== undefined) detail[field] = last[field];
    }
    const event = {
      ...makeEvent(Sources.control, NodeLostEvents.nodeLeaseExpired, detail, [node]),
      id: `lease-expired-${node}-${revision}`,
    };
    for (let pause = 100; !this.stopped && this.options.isLeading();) {
      try {
        await this.options.publish([event]);
        this.counts.leaseExpiries++;
        this.options.logger.info(
          { node, pid: last.pid, revision },
          `${node} registration gone: ${NodeLostEvents.nodeLeaseExpired}`,
        );
        return;
      } catch (error) {
        this.options.logger.warn({ err: error, node }, 'lease expiry not published; retrying');
        await sleep(pause);
        pause = Math.min(2_000, pause * 2);
      }
    }
  }

  private nodesThrough(): number {
    let through = this.nodesSeen;
    const first = this.nodeQueue[0];
    if (first !== undefined) through = Math.min(through, Number(first.kv.mod_revision) - 1);
    if (this.nodeInFlight !== undefined) through = Math.min(through, this.nodeInFlight - 1);
    return through;
  }

  private async readNodes(): Promise<{
    revision: number;
    registered: Record<string, Registration>;
  }> {
    const response = await this.options.connection.call('registrations read', ({ options }) =>
      this.options.connection.client.kv.range(
        { key: this.keyBuffer.nodes, range_end: prefixEnd(this.keyBuffer.nodes) },
        options,
      ),
    );
    const registered: Record<string, Registration> = {};
    for (const kv of response.kvs) {
      registered[this.options.keys.nodeOf(kv.key.toString())] = registration(kv.value);
    }
    return { revision: Number(response.header.revision), registered };
  }

  // ------------------------------------------------------------------ checkpoint

  private async readCheckpoint(): Promise<Checkpoint | undefined> {
    const key = Buffer.from(this.options.keys.checkpoint);
    const response = await this.options.connection.call('checkpoint read', ({ options }) =>
      this.options.connection.client.kv.range({ key }, options),
    );
    const kv = response.kvs[0];
    if (!kv) return undefined;
    try {
      const checkpoint = JSON.parse(kv.value.toString()) as Checkpoint;
      if (Number.isInteger(checkpoint.bus) && Number.isInteger(checkpoint.nodes)) {
        checkpoint.registered ??= {};
        return checkpoint;
      }
    } catch {
      // fall through
    }
    this.options.logger.warn('checkpoint unreadable: starting from the events etcd holds now');
    return undefined;
  }

  private scheduleCheckpoint(): void {
    if (this.stopped) return;
    this.checkpointTimer = setTimeout(() => {
      this.writing = this.writeCheckpoint()
        .catch((error: unknown) =>
          this.options.logger.warn({ err: error }, 'checkpoint not written; will try again'),
        )
        .finally(() => {
          this.writing = undefined;
          this.scheduleCheckpoint();
        });
    }, this.checkpointEveryMs);
  }

  /** Writes the checkpoint if it moved, only while this term's leader key stands. */
  private async writeCheckpoint(): Promise<void> {
    const bus = this.busThrough();
    const nodes = this.nodesThrough();
    if (this.written && this.written.bus === bus && this.written.nodes === nodes) return;
    if (!this.options.isLeading()) return;
    const checkpoint: Checkpoint = {
      bus,
      nodes,
      registered: this.registered,
      term: this.options.term.number,
      leader: this.options.leader,
      at: new Date().toISOString(),
    };
    const leaderKey = Buffer.from(this.options.keys.leader);
    const value = Buffer.from(JSON.stringify(checkpoint));
    const response = await this.options.connection.call('checkpoint write', ({ options }) =>
      this.options.connection.client.kv.txn(
        {
          compare: [
            {
              key: leaderKey,
              target: 'Create',
              result: 'Equal',
              create_revision: this.options.term.number,
            },
          ],
          success: [{ request_put: { key: Buffer.from(this.options.keys.checkpoint), value } }],
        },
        options,
      ),
    );
    if (!response.succeeded) {
      this.options.onFenced('the leader key changed: another orchestrator leads');
      return;
    }
    this.written = { bus, nodes };
  }
}

/** Events about one node are handled in order: `detail.node`, else the first resource. */
function orderingKey(event: BusEvent): string | undefined {
  const node = event.detail.node;
  if (typeof node === 'string' && node !== '') return node;
  return event.resources?.[0];
}

function item(kv: IKeyValue): Item {
  return { revision: Number(kv.mod_revision), key: kv.key.toString(), value: kv.value };
}

/** The fields of a `nodes/<id>` record (`{"w": nonce, "v": NodeRecord}`) worth keeping. */
function registration(value: Buffer): Registration {
  try {
    const record = (JSON.parse(value.toString()) as { v?: Record<string, unknown> }).v ?? {};
    const kept: Registration = {};
    if (typeof record.pid === 'number') kept.pid = record.pid;
    if (typeof record.startedAt === 'string') kept.startedAt = record.startedAt;
    if (typeof record.url === 'string') kept.url = record.url;
    if (typeof record.taskArn === 'string') kept.taskArn = record.taskArn;
    return kept;
  } catch {
    return {};
  }
}
