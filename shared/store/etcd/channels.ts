/**
 * Channel logs on etcd (docs/etcd.md, "Channel logs").
 *
 * Append: one transaction per batch compares the channel's head key's mod_revision with the one
 * this process last saw, and if it still matches writes the new head, every message of the
 * batch at the following positions, and deletes what fell out of the bounds. Positions are thus
 * assigned once, cluster-wide, atomically with the append. A failed compare returns the current
 * head (and the message at our first position, to recognise a batch an earlier, timed-out
 * attempt already wrote, by its nonce), and the batch is tried again at the new positions.
 * Appends to one channel from one process are queued and committed as batches (group commit),
 * so a burst costs a few transactions, not one per message with conflicts between them.
 *
 * Bounds: the count bound is exact (each append deletes what it pushes out); the age bound is
 * exact for readers (messages older than maxAgeMs are treated as gone, from the front), while
 * removal is done by the appender (positions it knows to be old), by readers that meet old
 * messages, and, for channels nobody writes to any more, by etcd itself: messages hang on a
 * rotating lease that ends a little after maxAgeMs.
 *
 * Watch: one etcd watch per channel per process (a feed), shared by every local listener. A
 * listener replays from a snapshot revision, then takes live messages from the feed, skipping
 * positions it already delivered and fetching any it missed from the log: no gap, no duplicate.
 */
import { randomBytes } from 'node:crypto';
import type { IKeyValue, IRangeRequest, IRequestOp, ITxnResponse } from 'etcd3';
import { EtcdLeaseInvalidError } from 'etcd3';
import { StoreUnavailableError, StreamhealError } from '../../errors.js';
import { checkChannel, checkLimit, checkPosition } from '../checks.js';
import { Mailbox } from '../Mailbox.js';
import type {
  ChannelMessage,
  ChannelSummary,
  ChannelWatch,
  ChannelWatchEvent,
  HistoryLimits,
  HistoryPage,
} from '../StateStore.js';
import { sleep, type Attempt, type EtcdConnection } from './connection.js';
import { prefixEnd, trailingNumber, type KeyLayout } from './keys.js';
import { RotatingLease, type Leases } from './leases.js';
import { ResumableWatch } from './watch.js';

/**
 * Messages read from the front of a log to find the oldest one young enough to keep; more are
 * read only when all of these are too old (rare: appenders and readers trim them).
 */
const FRONT_SCAN = 8;
/** Messages per append transaction: etcd allows 128 operations (--max-txn-ops) per transaction. */
const MAX_BATCH = 100;
const REPLAY_PAGE = 500;
/** Rounds of compare failures (other processes appending) before an append gives up. */
const MAX_CONFLICTS = 200;
/** Batches remembered per channel for age trimming. */
const MAX_SAMPLES = 256;
/** Idle channel states kept in memory before the oldest are forgotten. */
const MAX_IDLE_STATES = 10_000;

interface StoredMessage {
  /** Time stamped at append (ms since the epoch). */
  t: number;
  /** Nonce of the batch that wrote it. */
  b: string;
  d?: unknown;
  tr?: Record<string, string>;
}

interface Pending {
  data: unknown;
  trace: Record<string, string> | undefined;
  /** `,"d":…,"tr":…` ready to splice into the stored JSON. */
  fields: string;
  bytes: number;
  resolve: (message: ChannelMessage) => void;
  reject: (error: unknown) => void;
}

interface ChannelState {
  name: string;
  /** The head as this process last saw it; mod 0 means "absent". */
  head: { latest: number; mod: number } | undefined;
  queue: Pending[];
  flushing: boolean;
  /** (last position, time) of recent batches, oldest first, for age trimming. */
  samples: Array<{ position: number; time: number }>;
  /** Highest position known to be older than maxAgeMs. */
  agedThrough: number;
  /** Highest position already deleted (or being deleted) by this process. */
  trimmedThrough: number;
  feed: ChannelFeed | undefined;
}

type CommitOutcome =
  { kind: 'written'; first: number; time: number } | { kind: 'conflict' } | { kind: 'lease-gone' };

interface Snapshot {
  revision: number;
  latest: number;
  oldest: number;
}

export interface ChannelLogsOptions {
  connection: EtcdConnection;
  keys: KeyLayout;
  leases: Leases;
  limits: HistoryLimits;
  onListenerError: (error: unknown) => void;
  onBackgroundError: (error: unknown, what: string) => void;
}

export class ChannelLogs {
  private readonly connection: EtcdConnection;
  private readonly keys: KeyLayout;
  private readonly limits: HistoryLimits;
  private readonly historyLease: RotatingLease | undefined;
  private readonly states = new Map<string, ChannelState>();
  private readonly maxMessageBytes: number;
  private readonly maxBatchBytes: number;
  private readonly maxBatch: number;
  private closed = false;

  constructor(private readonly options: ChannelLogsOptions) {
    this.connection = options.connection;
    this.keys = options.keys;
    this.limits = options.limits;
    this.historyLease = Number.isFinite(this.limits.maxAgeMs)
      ? new RotatingLease(options.leases, this.limits.maxAgeMs)
      : undefined;
    // Room for keys, the head and the trim in one request below etcd's limit.
    this.maxMessageBytes = this.connection.maxRequestBytes - 16 * 1024;
    this.maxBatch = Math.max(1, Math.min(MAX_BATCH, this.limits.maxCount));
    this.maxBatchBytes = Math.min(1024 * 1024, Math.floor(this.connection.maxRequestBytes * 0.66));
  }

  // ------------------------------------------------------------------ append

  append(channel: string, data: unknown, trace?: Record<string, string>): Promise<ChannelMessage> {
    checkChannel(channel);
    const dataJson = JSON.stringify(data);
    const fields =
      (dataJson === undefined ? '' : `,"d":${dataJson}`) +
      (trace === undefined ? '' : `,"tr":${JSON.stringify(trace)}`);
    const bytes = Buffer.byteLength(fields) + 64;
    if (bytes > this.maxMessageBytes) {
      return Promise.reject(
        new StreamhealError(
          'too_large',
          `message of ${bytes} bytes is over etcd's request limit (${this.maxMessageBytes})`,
        ),
      );
    }
    const state = this.state(channel);
    return new Promise((resolve, reject) => {
      state.queue.push({ data, trace, fields, bytes, resolve, reject });
      if (!state.flushing) void this.flush(state);
    });
  }

  private async flush(state: ChannelState): Promise<void> {
    state.flushing = true;
    try {
      while (state.queue.length > 0 && !this.closed) {
        const batch = this.takeBatch(state);
        try {
          const { first, time } = await this.commit(state, batch);
          batch.forEach((pending, i) =>
            pending.resolve(this.messageOf(state, pending, first + i, time)),
          );
        } catch (error) {
          for (const pending of batch) pending.reject(error);
        }
      }
    } finally {
      state.flushing = false;
    }
  }

  private takeBatch(state: ChannelState): Pending[] {
    let bytes = 0;
    let count = 0;
    for (const pending of state.queue) {
      // Never more than the count bound: a batch must not delete what it writes.
      if (count === this.maxBatch || (count > 0 && bytes + pending.bytes > this.maxBatchBytes)) {
        break;
      }
      bytes += pending.bytes;
      count++;
    }
    return state.queue.splice(0, count);
  }

  private messageOf(
    state: ChannelState,
    pending: Pending,
    position: number,
    time: number,
  ): ChannelMessage {
    const message: ChannelMessage = { channel: state.name, position, data: pending.data, time };
    if (pending.trace !== undefined) message.trace = pending.trace;
    return message;
  }

  private async commit(
    state: ChannelState,
    batch: Pending[],
  ): Promise<{ first: number; time: number }> {
    const nonce = randomBytes(9).toString('base64url');
    const time = Date.now();
    for (let round = 0; ; round++) {
      this.connection.checkOpen();
      const lease = await this.historyLease?.get();
      const outcome = await this.connection.call(`append to channel ${state.name}`, (attempt) =>
        this.tryCommit(state, batch, nonce, time, lease, attempt),
      );
      if (outcome.kind === 'written') {
        this.remember(state, outcome.first + batch.length - 1, outcome.time);
        return outcome;
      }
      if (outcome.kind === 'lease-gone') this.historyLease?.forget();
      if (round >= MAX_CONFLICTS) {
        throw new StoreUnavailableError(
          `append to channel ${state.name}: gave up after ${round} conflicting writers`,
        );
      }
      // Other processes append to this channel too: spread the retries out a little.
      if (round >= 2) await sleep(Math.random() * Math.min(50, 2 * round));
    }
  }

  private async tryCommit(
    state: ChannelState,
    batch: Pending[],
    nonce: string,
    time: number,
    lease: string | undefined,
    attempt: Attempt,
  ): Promise<CommitOutcome> {
    const channel = state.name;
    const head = state.head ?? { latest: 0, mod: 0 };
    const first = head.latest + 1;
    const last = head.latest + batch.length;
    const headKey = Buffer.from(this.keys.head(channel));
    const success: IRequestOp[] = [
      { request_put: { key: headKey, value: Buffer.from(String(last)) } },
    ];
    batch.forEach((pending, i) => {
      success.push({
        request_put: {
          key: Buffer.from(this.keys.message(channel, first + i)),
          value: Buffer.from(`{"t":${time},"b":"${nonce}"${pending.fields}}`),
          ...(lease === undefined ? {} : { lease }),
        },
      });
    });
    const trimThrough = Math.min(first - 1, this.trimPoint(state, last));
    if (trimThrough > state.trimmedThrough) {
      success.push({ request_delete_range: this.through(channel, trimThrough) });
    }
    let response: ITxnResponse;
    try {
      response = await this.connection.client.kv.txn(
        {
          compare: [{ key: headKey, target: 'Mod', result: 'Equal', mod_revision: head.mod }],
          success,
          failure: [
            { request_range: { key: headKey } },
            { request_range: { key: Buffer.from(this.keys.message(channel, first)) } },
          ],
        },
        attempt.options,
      );
    } catch (error) {
      if (error instanceof EtcdLeaseInvalidError) return { kind: 'lease-gone' };
      throw error;
    }
    if (response.succeeded) {
      state.head = { latest: last, mod: Number(response.header.revision) };
      if (trimThrough > state.trimmedThrough) state.trimmedThrough = trimThrough;
      return { kind: 'written', first, time };
    }
    const current = response.responses[0]?.response_range.kvs[0];
    state.head = current
      ? { latest: Number(current.value.toString()), mod: Number(current.mod_revision) }
      : { latest: 0, mod: 0 };
    const atFirst = response.responses[1]?.response_range.kvs[0];
    if (atFirst !== undefined) {
      const stored = parseStored(atFirst);
      // An earlier attempt of this very batch was applied before its answer got lost.
      if (stored.b === nonce) return { kind: 'written', first, time: stored.t };
    }
    return { kind: 'conflict' };
  }

  /** The highest position the next append may delete: past the count bound or known too old. */
  private trimPoint(state: ChannelState, newLatest: number): number {
    const cutoff = Date.now() - this.limits.maxAgeMs;
    const samples = state.samples;
    let aged = 0;
    while (aged < samples.length && samples[aged]!.time < cutoff) {
      state.agedThrough = Math.max(state.agedThrough, samples[aged]!.position);
      aged++;
    }
    if (aged > 0) samples.splice(0, aged);
    return Math.max(newLatest - this.limits.maxCount, state.agedThrough);
  }

  private remember(state: ChannelState, position: number, time: number): void {
    const samples = state.samples;
    samples.push({ position, time });
    // Thinning keeps the newest sample; older ones only make trimming a little later.
    if (samples.length > MAX_SAMPLES) state.samples = samples.filter((_, i) => i % 2 === 1);
  }

  // ------------------------------------------------------------------ read

  async read(channel: string, after: number, limit: number): Promise<HistoryPage> {
    checkChannel(channel);
    checkPosition(after);
    checkLimit(limit);
    const from = after + 1;
    const ops: IRequestOp[] = [
      { request_range: { key: Buffer.from(this.keys.head(channel)) } },
      { request_range: this.front(channel) },
    ];
    if (limit > 0) ops.push({ request_range: this.span(channel, from, limit) });
    const response = await this.connection.call(`read of channel ${channel}`, ({ options }) =>
      this.connection.client.kv.txn({ success: ops }, options),
    );
    const latest = latestOf(response.responses[0]?.response_range.kvs[0]);
    if (latest === 0) return { messages: [], oldest: 1, latest: 0 };
    const oldest = await this.oldestHeld(channel, response.responses[1]!.response_range, latest);
    let kvs = limit > 0 ? response.responses[2]!.response_range.kvs : [];
    if (from < oldest && kvs.some((kv) => positionOf(kv) < oldest)) {
      // The page began among messages too old to keep: read it again from the oldest kept.
      kvs = (await this.range(channel, oldest, limit)).kvs;
    }
    const messages = kvs.filter((kv) => positionOf(kv) >= oldest).map((kv) => decode(channel, kv));
    return { messages, oldest, latest };
  }

  async channels(): Promise<ChannelSummary[]> {
    const heads = await this.connection.call('list of channels', ({ options }) =>
      this.connection.client.kv.range(
        { key: Buffer.from(this.keys.heads), range_end: prefixEnd(this.keys.heads) },
        options,
      ),
    );
    const summaries: ChannelSummary[] = [];
    // Front scans of up to 64 channels per transaction (etcd allows 128 operations).
    for (let start = 0; start < heads.kvs.length; start += 64) {
      const chunk = heads.kvs.slice(start, start + 64).map((kv) => ({
        channel: this.keys.channelOfHead(kv.key.toString()),
        latest: latestOf(kv),
      }));
      const fronts = await this.connection.call('list of channels', ({ options }) =>
        this.connection.client.kv.txn(
          { success: chunk.map(({ channel }) => ({ request_range: this.front(channel) })) },
          options,
        ),
      );
      for (const [i, { channel, latest }] of chunk.entries()) {
        if (latest === 0) continue;
        const oldest = await this.oldestHeld(channel, fronts.responses[i]!.response_range, latest);
        summaries.push({ channel, latest, held: Math.max(0, latest - oldest + 1) });
      }
    }
    return summaries;
  }

  /**
   * The oldest position still held: the first message, from the front, young enough to keep
   * (messages behind it count as gone even if etcd still has them), or latest + 1.
   */
  private async oldestHeld(
    channel: string,
    front: { kvs: IKeyValue[]; more: boolean },
    latest: number,
  ): Promise<number> {
    const cutoff = Date.now() - this.limits.maxAgeMs;
    let { kvs, more } = front;
    let agedThrough = 0;
    for (;;) {
      for (const kv of kvs) {
        if (parseStored(kv).t >= cutoff) {
          this.trimAged(channel, agedThrough);
          return positionOf(kv);
        }
        agedThrough = positionOf(kv);
      }
      if (!more || kvs.length === 0) break;
      ({ kvs, more } = await this.range(channel, agedThrough + 1, FRONT_SCAN * 16));
    }
    this.trimAged(channel, agedThrough);
    return latest + 1;
  }

  /** Deletes messages a reader found too old, in the background. */
  private trimAged(channel: string, through: number): void {
    const state = this.states.get(channel);
    if (through === 0 || (state !== undefined && through <= state.trimmedThrough)) return;
    if (state !== undefined) state.trimmedThrough = through;
    this.connection
      .call(`trim of channel ${channel}`, ({ options }) =>
        this.connection.client.kv.deleteRange(this.through(channel, through), options),
      )
      .catch((error: unknown) => {
        if (state !== undefined && state.trimmedThrough === through) state.trimmedThrough = 0;
        this.options.onBackgroundError(error, `trim of channel ${channel}`);
      });
  }

  /** Messages from position `from` on, at most `limit`, optionally as of `revision`. */
  range(
    channel: string,
    from: number,
    limit: number,
    revision?: number,
  ): Promise<{ kvs: IKeyValue[]; more: boolean }> {
    const request = this.span(channel, from, limit);
    if (revision !== undefined) request.revision = revision;
    return this.connection.call(`read of channel ${channel}`, ({ options }) =>
      this.connection.client.kv.range(request, options),
    );
  }

  private async snapshot(channel: string): Promise<Snapshot> {
    const response = await this.connection.call(`watch of channel ${channel}`, ({ options }) =>
      this.connection.client.kv.txn(
        {
          success: [
            { request_range: { key: Buffer.from(this.keys.head(channel)) } },
            { request_range: this.front(channel) },
          ],
        },
        options,
      ),
    );
    const latest = latestOf(response.responses[0]?.response_range.kvs[0]);
    const oldest =
      latest === 0
        ? 1
        : await this.oldestHeld(channel, response.responses[1]!.response_range, latest);
    return { revision: Number(response.header.revision), latest, oldest };
  }

  /** The store's current revision (a cheap linearizable read). */
  currentRevision(): Promise<number> {
    return this.connection.currentRevision(this.keys.heads);
  }

  private front(channel: string): IRangeRequest {
    const prefix = this.keys.channel(channel);
    return { key: Buffer.from(prefix), range_end: prefixEnd(prefix), limit: FRONT_SCAN };
  }

  private span(channel: string, from: number, limit: number): IRangeRequest {
    return {
      key: Buffer.from(this.keys.message(channel, Math.max(1, from))),
      range_end: prefixEnd(this.keys.channel(channel)),
      limit,
    };
  }

  private through(channel: string, position: number): { key: Buffer; range_end: Buffer } {
    return {
      key: Buffer.from(this.keys.channel(channel)),
      range_end: Buffer.from(this.keys.message(channel, position + 1)),
    };
  }

  // ------------------------------------------------------------------ watch

  async watch(
    channel: string,
    after: number | undefined,
    listener: (event: ChannelWatchEvent) => void,
  ): Promise<ChannelWatch> {
    checkChannel(channel);
    if (after !== undefined) checkPosition(after);
    const snapshot = await this.snapshot(channel);
    if (after !== undefined && after > snapshot.latest) {
      throw new StreamhealError(
        'position_from_future',
        `position ${after} on ${channel} is ahead of the latest position ${snapshot.latest}`,
      );
    }
    this.connection.checkOpen();
    const mailbox = new Mailbox(listener, this.options.onListenerError);
    const follower = new ChannelFollower(this, channel, mailbox, after ?? snapshot.latest);
    if (after !== undefined && snapshot.oldest > after + 1) {
      mailbox.push({ type: 'lost', oldest: snapshot.oldest });
      follower.lastDelivered = snapshot.oldest - 1;
    }
    const state = this.state(channel);
    const feed = (state.feed ??= new ChannelFeed(
      this,
      this.connection,
      this.keys,
      state,
      snapshot.revision + 1,
    ));
    const catchUp = follower.lastDelivered < snapshot.latest;
    if (catchUp) follower.hold();
    // Messages the shared feed passed on before this follower joined must come from the log.
    const passedOn = feed.lastPosition;
    feed.add(follower);
    const close = () => {
      follower.close();
      feed.remove(follower);
      if (feed.empty) {
        feed.close();
        if (state.feed === feed) state.feed = undefined;
      }
    };
    if (catchUp) {
      try {
        await follower.replay(snapshot.latest, snapshot.revision);
      } catch (error) {
        close();
        throw error;
      }
    }
    follower.reach(passedOn);
    return { startedAfter: after ?? snapshot.latest, close };
  }

  reportBackground(error: unknown, what: string): void {
    this.options.onBackgroundError(error, what);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    this.closed = true;
    for (const state of this.states.values()) {
      state.feed?.closeAll();
      state.feed = undefined;
      for (const pending of state.queue.splice(0)) {
        pending.reject(new StoreUnavailableError('etcd store closed'));
      }
    }
  }

  private state(channel: string): ChannelState {
    let state = this.states.get(channel);
    if (state === undefined) {
      if (this.states.size >= MAX_IDLE_STATES) this.forgetIdle();
      state = {
        name: channel,
        head: undefined,
        queue: [],
        flushing: false,
        samples: [],
        agedThrough: 0,
        trimmedThrough: 0,
        feed: undefined,
      };
      this.states.set(channel, state);
    }
    return state;
  }

  private forgetIdle(): void {
    for (const [name, state] of this.states) {
      if (!state.flushing && state.queue.length === 0 && state.feed === undefined) {
        this.states.delete(name);
        if (this.states.size < MAX_IDLE_STATES / 2) return;
      }
    }
  }
}

/** One etcd watch on a channel's messages, fanned out to this process's listeners. */
class ChannelFeed {
  private readonly followers = new Set<ChannelFollower>();
  /** Highest position passed on to followers. */
  lastPosition = 0;
  private watch: ResumableWatch | undefined;
  private closed = false;

  constructor(
    private readonly logs: ChannelLogs,
    private readonly connection: EtcdConnection,
    private readonly keys: KeyLayout,
    private readonly state: ChannelState,
    startRevision: number,
  ) {
    this.open(startRevision);
  }

  get empty(): boolean {
    return this.followers.size === 0;
  }

  add(follower: ChannelFollower): void {
    this.followers.add(follower);
  }

  remove(follower: ChannelFollower): void {
    this.followers.delete(follower);
  }

  close(): void {
    this.closed = true;
    this.watch?.close();
  }

  closeAll(): void {
    for (const follower of this.followers) follower.close();
    this.followers.clear();
    this.close();
  }

  private open(startRevision: number): void {
    const channel = this.state.name;
    this.watch = new ResumableWatch(this.connection, {
      prefix: this.keys.channel(channel),
      startRevision,
      onlyPuts: true,
      onEvents: (events) => {
        for (const event of events) {
          const message = decode(channel, event.kv);
          this.lastPosition = Math.max(this.lastPosition, message.position);
          for (const follower of this.followers) follower.offer(message);
        }
      },
      onBroken: (error) => void this.recover(error),
    });
  }

  /** etcd could not resume the watch (history compacted): restart now, followers fill the gap. */
  private async recover(error: Error): Promise<void> {
    this.logs.reportBackground(error, `watch of channel ${this.state.name} restarted`);
    for (let pause = 100; !this.closed; pause = Math.min(2_000, pause * 2)) {
      try {
        const revision = await this.logs.currentRevision();
        if (this.closed) return;
        this.open(revision + 1);
        for (const follower of this.followers) follower.resync();
        return;
      } catch {
        await sleep(pause);
      }
    }
  }
}

/** One listener's place in a channel: what it has been given, what it still has to fetch. */
class ChannelFollower {
  private buffer: ChannelMessage[] = [];
  private filling = false;
  /** A watch restart happened during a fill: look at the log again once it is done. */
  private resyncPending = false;
  private closed = false;

  constructor(
    private readonly logs: ChannelLogs,
    private readonly channel: string,
    private readonly mailbox: Mailbox<ChannelWatchEvent>,
    public lastDelivered: number,
  ) {}

  /** Buffers live messages until the replay is done. */
  hold(): void {
    this.filling = true;
  }

  offer(message: ChannelMessage): void {
    if (this.closed) return;
    if (this.filling) this.buffer.push(message);
    else this.accept(message);
  }

  /** Delivers the log up to `through` as of `revision`; errors go to the caller. */
  async replay(through: number, revision: number): Promise<void> {
    this.filling = true;
    try {
      await this.fill(through, revision);
    } finally {
      this.release();
    }
  }

  /** Makes sure everything up to `position` gets delivered, fetching it from the log if needed. */
  reach(position: number): void {
    if (this.filling || this.closed || position <= this.lastDelivered) return;
    void this.fillInBackground(position);
  }

  /** After a watch restart: fetch whatever was written since the last delivery. */
  resync(): void {
    if (this.closed) return;
    if (this.filling) this.resyncPending = true;
    else void this.fillInBackground(Number.MAX_SAFE_INTEGER);
  }

  close(): void {
    this.closed = true;
    this.buffer = [];
    this.mailbox.close();
  }

  private accept(message: ChannelMessage): void {
    if (message.position <= this.lastDelivered) return;
    if (message.position === this.lastDelivered + 1) {
      this.deliver(message);
      return;
    }
    // The feed skipped some positions (it started after our snapshot, or resumed after a
    // compaction): fetch them from the log before going on.
    this.buffer.push(message);
    void this.fillInBackground(message.position - 1);
  }

  private async fillInBackground(through: number): Promise<void> {
    this.filling = true;
    try {
      for (let pause = 100; !this.closed; pause = Math.min(2_000, pause * 2)) {
        try {
          await this.fill(through);
          return;
        } catch (error) {
          this.logs.reportBackground(error, `catch-up of channel ${this.channel}`);
          await sleep(pause);
        }
      }
    } finally {
      this.release();
    }
  }

  /** Delivers messages after lastDelivered up to `through`, reporting any the log no longer has. */
  private async fill(through: number, revision?: number): Promise<void> {
    while (this.lastDelivered < through && !this.closed) {
      const limit = Math.min(REPLAY_PAGE, through - this.lastDelivered);
      let page: { kvs: IKeyValue[]; more: boolean };
      try {
        page = await this.logs.range(this.channel, this.lastDelivered + 1, limit, revision);
      } catch (error) {
        if (revision === undefined || !/compacted/.test(String(error))) throw error;
        // The snapshot's revision is gone: read the present instead.
        revision = undefined;
        continue;
      }
      if (this.closed) return;
      if (page.kvs.length === 0) {
        if (through !== Number.MAX_SAFE_INTEGER) {
          this.mailbox.push({ type: 'lost', oldest: through + 1 });
          this.lastDelivered = through;
        }
        return;
      }
      for (const kv of page.kvs) {
        const position = positionOf(kv);
        if (position > through) return;
        if (position > this.lastDelivered + 1) {
          this.mailbox.push({ type: 'lost', oldest: position });
        }
        this.deliver(decode(this.channel, kv));
      }
      if (!page.more) return;
    }
  }

  private release(): void {
    this.filling = false;
    const buffered = this.buffer;
    this.buffer = [];
    for (let i = 0; i < buffered.length; i++) {
      if (this.filling) {
        // A gap started another fill: keep the rest for after it.
        this.buffer.push(...buffered.slice(i));
        return;
      }
      this.accept(buffered[i]!);
    }
    if (this.resyncPending && !this.filling) {
      this.resyncPending = false;
      this.resync();
    }
  }

  private deliver(message: ChannelMessage): void {
    this.lastDelivered = message.position;
    this.mailbox.push({ type: 'message', message });
  }
}

function parseStored(kv: IKeyValue): StoredMessage {
  return JSON.parse(kv.value.toString()) as StoredMessage;
}

function positionOf(kv: IKeyValue): number {
  return trailingNumber(kv.key.toString());
}

function decode(channel: string, kv: IKeyValue): ChannelMessage {
  const stored = parseStored(kv);
  const message: ChannelMessage = {
    channel,
    position: positionOf(kv),
    data: stored.d,
    time: stored.t,
  };
  if (stored.tr !== undefined) message.trace = stored.tr;
  return message;
}

function latestOf(kv: IKeyValue | undefined): number {
  return kv === undefined ? 0 : Number(kv.value.toString());
}
