/**
 * The EventBus port on Amazon EventBridge (or anything speaking its PutEvents API: LocalStack,
 * the test emulator). Publishing only: on AWS, events reach handlers through EventBridge rules
 * whose targets are Lambda functions (shared/bus/catalogue.ts), so `subscribe` throws.
 *
 * `put` validates the events, snapshots them into a local spool and returns; a single sender
 * drains the spool with PutEvents calls of at most 10 entries and MAX_REQUEST_BYTES (sizes
 * counted the way EventBridge counts them). Every entry's result is checked, not just the call:
 * - accepted (EventId): done;
 * - InternalFailure, ThrottlingException, or a call that failed on the network, timed out,
 *   was throttled or answered 5xx: kept in place and retried after the seed backoff;
 * - a documented non-retryable entry code (AccessDeniedException, MalformedDetail, ...): dropped
 *   at once, reason "rejected";
 * - anything else (unknown entry codes, other 4xx answers for the whole call): retried up to
 *   `maxUnclassifiedAttempts` times, then dropped, reason "rejected".
 *
 * Order per source: with `ordering: 'strict'` (default) a call carries at most one entry per
 * source, and a source's next entry is sent only once the previous one was accepted, so
 * EventBridge accepts each source's events exactly in put order even when single entries fail.
 * With `ordering: 'batched'` a call carries up to 10 entries of one source; a failed entry is
 * retried before any newer entry of its source, but entries after it in the same call may
 * already have been accepted, so it can land up to 9 places late. EventBridge itself does not
 * promise to deliver to targets in order; consumers order by their own fields.
 *
 * The spool is bounded (`maxSpooled` events, `maxSpooledBytes`): while EventBridge cannot be
 * reached nothing within the bound is lost; past it the oldest events not in flight are dropped,
 * counted in `dropped` / `droppedBy` and reported to `onDrop`. Delivery is at least once: a call
 * whose answer is lost is sent again, and EventBridge then holds two copies with different
 * EventBridge ids but the same `detail.streamhealEventId` (see eventBridgeEntry.ts).
 *
 * Call `close()` before the process exits: it waits up to `closeTimeoutMs` for the spool to
 * drain, then drops what is left (reason "closed"). Retry timers do not keep a process alive.
 */
import {
  EventBridgeClient,
  PutEventsCommand,
  type EventBridgeClientConfig,
  type PutEventsResultEntry,
} from '@aws-sdk/client-eventbridge';
import { SEED_BACKOFF, seedBackoff, type BackoffOptions, type Random } from '../backoff.js';
import { StreamhealError } from '../errors.js';
import type { BusEvent, EventBus, EventPattern } from './EventBus.js';
import { BusClosedError } from './InProcessBus.js';
import {
  entrySize,
  MAX_ENTRIES_PER_CALL,
  MAX_REQUEST_BYTES,
  toPutEventsEntry,
  type PutEventsEntry,
} from './eventBridgeEntry.js';
import { InvalidEventError, validateEvent } from './events.js';

export class EventTooLargeError extends StreamhealError {
  constructor(label: string, size: number, limit: number) {
    super(
      'event_too_large',
      `${label}: ${size} bytes as EventBridge counts them, over the ${limit}-byte PutEvents limit; ` +
        'put the payload somewhere else (S3, the store) and send a reference',
    );
  }
}

export class SubscribeNotSupportedError extends StreamhealError {
  constructor() {
    super(
      'subscribe_not_supported',
      'EventBridgeBus cannot subscribe: on EventBridge, events reach handlers through rules whose ' +
        'targets are Lambda functions (the catalogue in shared/bus/catalogue.ts, deployed by ' +
        'infra/). Subscribe on an InProcessBus or etcd bus instead.',
    );
  }
}

export type DropReason = 'spool_full' | 'rejected' | 'closed';

export interface Drop {
  reason: DropReason;
  events: BusEvent[];
  /** For "rejected": the entry's ErrorCode, or the error name of the failed call. */
  errorCode?: string;
  errorMessage?: string;
}

export interface Retry {
  /** Consecutive rounds that needed a retry, this one included. */
  attempt: number;
  delayMs: number;
  /** Entries that will be sent again. */
  entries: number;
  /** Entry error codes of this round, or the failed call's error. */
  errorCodes: string[];
  error?: unknown;
}

export type Ordering = 'strict' | 'batched';

export interface EventBridgeBusOptions {
  /** A client to use (not destroyed by close). @default one built from `clientConfig` */
  client?: EventBridgeClient;
  /**
   * Settings for the client built here. Region, credentials and endpoint come from the usual
   * SDK sources (AWS_REGION, AWS_ENDPOINT_URL_EVENTBRIDGE, AWS_ENDPOINT_URL, profiles) unless
   * given. The SDK's own retries are off (`maxAttempts: 1`) so the spool's backoff governs.
   */
  clientConfig?: EventBridgeClientConfig;
  /** @default 'default' */
  eventBusName?: string;
  /** @default 'strict' */
  ordering?: Ordering;
  /** Events kept while EventBridge cannot take them. @default 1000 */
  maxSpooled?: number;
  /** Bytes (entry sizes) kept while EventBridge cannot take them. @default 8 MiB */
  maxSpooledBytes?: number;
  /** Total entry size per PutEvents call; also the largest event accepted. @default 256 KiB */
  maxRequestBytes?: number;
  /** Retry delays: the seed formula with these constants. @default SEED_BACKOFF */
  backoff?: BackoffOptions;
  random?: Random;
  /** Attempts for failures that are neither known transient nor known permanent. @default 5 */
  maxUnclassifiedAttempts?: number;
  /** How long close() waits for the spool to drain. @default 5000 */
  closeTimeoutMs?: number;
  /**
   * How long one PutEvents call may take before it counts as failed and is retried, for the
   * client built here (`clientConfig.requestHandler` overrides it). @default 5000
   */
  requestTimeoutMs?: number;
  onDrop?: (drop: Drop) => void;
  onRetry?: (retry: Retry) => void;
}

/** Entry error codes the PutEvents reference lists as retryable. */
const TRANSIENT_ENTRY_CODES = new Set(['InternalFailure', 'ThrottlingException']);
/** Entry error codes the PutEvents reference lists as not retryable. */
const PERMANENT_ENTRY_CODES = new Set([
  'AccessDeniedException',
  'InvalidAccountIdException',
  'InvalidArgument',
  'MalformedDetail',
  'RedactionFailure',
  'NotAuthorizedForSourceException',
  'NotAuthorizedForDetailTypeException',
]);
/** Whole-call errors that mean "later", whatever their HTTP status. */
const THROTTLING_ERRORS = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestThrottledException',
]);

type Failure = 'transient' | 'permanent' | 'unclassified';

interface Spooled {
  event: BusEvent;
  entry: PutEventsEntry;
  source: string;
  size: number;
  /** Unclassified failures so far. */
  attempts: number;
  inFlight: boolean;
  /** Delivered or dropped: no longer in the spool. */
  done: boolean;
}

export class EventBridgeBus implements EventBus {
  /** Events EventBridge accepted. */
  delivered = 0;
  /** Events dropped, all reasons. */
  dropped = 0;
  readonly droppedBy: Record<DropReason, number> = { spool_full: 0, rejected: 0, closed: 0 };

  private readonly client: EventBridgeClient;
  private readonly ownsClient: boolean;
  private readonly eventBusName: string;
  private readonly strict: boolean;
  private readonly maxSpooled: number;
  private readonly maxSpooledBytes: number;
  private readonly maxRequestBytes: number;
  private readonly maxUnclassifiedAttempts: number;
  private readonly closeTimeoutMs: number;

  private spool: Spooled[] = [];
  private bytesSpooled = 0;
  /** Spooled events per source, so a batch stops looking once every source is blocked. */
  private readonly perSource = new Map<string, number>();
  private pumping = false;
  /** Consecutive rounds with at least one entry to retry. */
  private failures = 0;
  private closed = false;
  private closing?: Promise<void>;
  /** Set at the end of close(): the sender stops and nothing more is sent. */
  private stopped = false;
  private inFlight?: AbortController;
  private wake?: () => void;
  private readonly drainWaiters = new Set<() => void>();

  constructor(private readonly options: EventBridgeBusOptions = {}) {
    this.ownsClient = options.client === undefined;
    this.client =
      options.client ??
      new EventBridgeClient({
        maxAttempts: 1,
        // The SDK's default socket timeout is minutes: a hung call would stall the spool.
        requestHandler: {
          connectionTimeout: Math.min(options.requestTimeoutMs ?? 5_000, 2_000),
          requestTimeout: options.requestTimeoutMs ?? 5_000,
          // Without it the SDK only logs a warning when requestTimeout passes.
          throwOnRequestTimeout: true,
        },
        ...options.clientConfig,
      });
    this.eventBusName = options.eventBusName ?? 'default';
    this.strict = (options.ordering ?? 'strict') === 'strict';
    this.maxSpooled = options.maxSpooled ?? 1_000;
    this.maxSpooledBytes = options.maxSpooledBytes ?? 8 * 1024 * 1024;
    this.maxRequestBytes = options.maxRequestBytes ?? MAX_REQUEST_BYTES;
    this.maxUnclassifiedAttempts = options.maxUnclassifiedAttempts ?? 5;
    this.closeTimeoutMs = options.closeTimeoutMs ?? 5_000;
  }

  /** Events waiting to be accepted by EventBridge (in flight included). */
  get spooled(): number {
    return this.spool.length;
  }

  /** Their entry sizes, as EventBridge counts them. */
  get spooledBytes(): number {
    return this.bytesSpooled;
  }

  /**
   * Spools the events for sending and returns; rejects, spooling none of them, when one is
   * invalid or larger than `maxRequestBytes`. Delivery problems are reported through
   * `onRetry` / `onDrop` and the counters, never here.
   */
  async put(events: BusEvent[]): Promise<void> {
    if (this.closed) throw new BusClosedError();
    if (!Array.isArray(events)) throw new InvalidEventError('put expects an array of events');
    const items = events.map((event, index) => this.prepare(event, `events[${index}]`));
    for (const item of items) {
      this.spool.push(item);
      this.bytesSpooled += item.size;
      this.perSource.set(item.source, (this.perSource.get(item.source) ?? 0) + 1);
    }
    this.enforceBounds();
    this.startSending();
  }

  subscribe(_pattern: EventPattern, _handler: (event: BusEvent) => void): () => void {
    throw new SubscribeNotSupportedError();
  }

  /**
   * Resolves true once every event put so far was accepted or dropped, or false when
   * `timeoutMs` passes first.
   */
  flush(timeoutMs = Infinity): Promise<boolean> {
    if (this.spool.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const drained = () => {
        clearTimeout(timer);
        this.drainWaiters.delete(drained);
        resolve(true);
      };
      this.drainWaiters.add(drained);
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          this.drainWaiters.delete(drained);
          resolve(false);
        }, timeoutMs);
      }
    });
  }

  /** Refuses new events, sends the spool for up to `closeTimeoutMs`, drops the rest. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    const drained = await this.flush(this.closeTimeoutMs);
    this.stopped = true;
    this.inFlight?.abort();
    this.wake?.();
    if (!drained) this.drop('closed', this.spool.splice(0));
    if (this.ownsClient) this.client.destroy();
  }

  private prepare(event: BusEvent, label: string): Spooled {
    validateEvent(event, label);
    let snapshot: BusEvent;
    try {
      snapshot = JSON.parse(JSON.stringify(event)) as BusEvent;
    } catch (error) {
      throw new InvalidEventError(`${label}: must be JSON-serializable (${String(error)})`);
    }
    const entry = toPutEventsEntry(snapshot, this.eventBusName, label);
    const size = entrySize(entry);
    if (size > this.maxRequestBytes)
      throw new EventTooLargeError(label, size, this.maxRequestBytes);
    return {
      event: snapshot,
      entry,
      source: entry.Source,
      size,
      attempts: 0,
      inFlight: false,
      done: false,
    };
  }

  /** Drops the oldest events not in flight until the spool is within both bounds. */
  private enforceBounds(): void {
    const overflow: Spooled[] = [];
    let index = 0;
    while (
      (this.spool.length - overflow.length > this.maxSpooled ||
        this.bytesSpooled > this.maxSpooledBytes) &&
      index < this.spool.length
    ) {
      const item = this.spool[index++]!;
      if (item.inFlight) continue;
      this.release(item);
      overflow.push(item);
    }
    if (overflow.length === 0) return;
    this.spool = this.spool.filter((item) => !item.done);
    this.drop('spool_full', overflow);
  }

  private startSending(): void {
    if (this.pumping || this.stopped || this.spool.length === 0) return;
    this.pumping = true;
    void this.send().finally(() => {
      this.pumping = false;
      // Events put while the last round finished.
      this.startSending();
    });
  }

  private async send(): Promise<void> {
    while (!this.stopped) {
      const batch = this.nextBatch();
      if (batch.length === 0) return;
      const { retrying, errorCodes, error } = await this.sendBatch(batch);
      if (retrying === 0) {
        this.failures = 0;
        continue;
      }
      this.failures++;
      const delayMs = seedBackoff(
        this.failures - 1,
        this.options.backoff ?? SEED_BACKOFF,
        this.options.random,
      );
      this.notify(() =>
        this.options.onRetry?.({
          attempt: this.failures,
          delayMs,
          entries: retrying,
          errorCodes,
          ...(error === undefined ? {} : { error }),
        }),
      );
      await this.sleep(delayMs);
    }
  }

  /**
   * The next call's entries, oldest first: at most 10 and maxRequestBytes; in strict mode at
   * most one per source. Once a source's entry is skipped, its later entries are too, so no
   * entry overtakes an older one of its source.
   */
  private nextBatch(): Spooled[] {
    const batch: Spooled[] = [];
    const blocked = new Set<string>();
    let bytes = 0;
    for (const item of this.spool) {
      if (batch.length === MAX_ENTRIES_PER_CALL || blocked.size === this.perSource.size) break;
      if (blocked.has(item.source)) continue;
      if (bytes + item.size > this.maxRequestBytes) {
        blocked.add(item.source);
        continue;
      }
      batch.push(item);
      bytes += item.size;
      if (this.strict) blocked.add(item.source);
    }
    return batch;
  }

  private async sendBatch(
    batch: Spooled[],
  ): Promise<{ retrying: number; errorCodes: string[]; error?: unknown }> {
    for (const item of batch) item.inFlight = true;
    const controller = new AbortController();
    this.inFlight = controller;
    let results: PutEventsResultEntry[] | undefined;
    let callError: unknown;
    try {
      const output = await this.client.send(
        new PutEventsCommand({ Entries: batch.map((item) => item.entry) }),
        { abortSignal: controller.signal },
      );
      results = output.Entries ?? [];
    } catch (error) {
      callError = error;
    } finally {
      this.inFlight = undefined;
      for (const item of batch) item.inFlight = false;
    }

    const pending = batch.filter((item) => !item.done); // close() may have dropped them
    const errorCodes: string[] = [];
    let retrying = 0;
    const settle = (item: Spooled, failure: Failure, code: string, message?: string) => {
      errorCodes.push(code);
      if (failure === 'unclassified') item.attempts++;
      const giveUp =
        failure === 'permanent' ||
        (failure === 'unclassified' && item.attempts >= this.maxUnclassifiedAttempts);
      if (!giveUp) {
        retrying++;
        return;
      }
      this.drop('rejected', [item], code, message);
    };

    if (results === undefined) {
      const failure = classifyCallError(callError);
      const { code, message } = describeError(callError);
      for (const item of pending) settle(item, failure, code, message);
    } else {
      for (const item of pending) {
        const result = results[batch.indexOf(item)];
        if (typeof result?.EventId === 'string' && result.EventId !== '') {
          this.release(item);
          this.delivered++;
        } else {
          const code = result?.ErrorCode ?? 'MissingResultEntry';
          settle(item, classifyEntryCode(code), code, result?.ErrorMessage);
        }
      }
    }
    this.spool = this.spool.filter((item) => !item.done);
    this.notifyIfDrained();
    return { retrying, errorCodes, ...(results === undefined ? { error: callError } : {}) };
  }

  /** Takes an event out of the spool's accounting (the array is filtered separately). */
  private release(item: Spooled): void {
    if (item.done) return;
    item.done = true;
    this.bytesSpooled -= item.size;
    const left = (this.perSource.get(item.source) ?? 1) - 1;
    if (left === 0) this.perSource.delete(item.source);
    else this.perSource.set(item.source, left);
  }

  private drop(reason: DropReason, items: Spooled[], errorCode?: string, message?: string): void {
    if (items.length === 0) return;
    for (const item of items) this.release(item);
    this.dropped += items.length;
    this.droppedBy[reason] += items.length;
    const drop: Drop = {
      reason,
      events: items.map((item) => item.event),
      ...(errorCode === undefined ? {} : { errorCode }),
      ...(message === undefined ? {} : { errorMessage: message }),
    };
    this.notify(() => this.options.onDrop?.(drop));
    this.notifyIfDrained();
  }

  private notifyIfDrained(): void {
    if (this.spool.some((item) => !item.done)) return;
    for (const waiter of [...this.drainWaiters]) waiter();
  }

  /** Hooks must not break the sender. */
  private notify(call: () => void): void {
    try {
      call();
    } catch {
      // A throwing onDrop / onRetry is the caller's bug; the spool carries on.
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.wake = done;
    });
  }
}

function classifyEntryCode(code: string): Failure {
  if (TRANSIENT_ENTRY_CODES.has(code)) return 'transient';
  if (PERMANENT_ENTRY_CODES.has(code)) return 'permanent';
  return 'unclassified';
}

/**
 * A call that never got an answer (refused, reset, timed out), was throttled or failed on the
 * server side is transient; other client-side answers (403, 400 ...) are unclassified: they may
 * be fixed (credentials rotating, a policy being deployed) or may not.
 */
function classifyCallError(error: unknown): Failure {
  const { code } = describeError(error);
  if (THROTTLING_ERRORS.has(code)) return 'transient';
  const sdk = error as { $fault?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  const status = sdk?.$metadata?.httpStatusCode;
  if (status === undefined) return 'transient';
  if (status >= 500 || sdk?.$fault === 'server') return 'transient';
  return 'unclassified';
}

function describeError(error: unknown): { code: string; message?: string } {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { code: typeof code === 'string' ? code : error.name, message: error.message };
  }
  return { code: 'UnknownError', message: String(error) };
}
