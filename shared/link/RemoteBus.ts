/**
 * The control process's event bus, reached over the control link (LinkClient).
 *
 * - `put` checks every envelope here (the same checks as every bus) and serializes the batch at
 *   once. With the link open it waits for the server's answer. With the link down it keeps the
 *   events in a bounded spool (oldest dropped and counted in `dropped`) and resolves; the spool
 *   is sent in order as soon as the link is open again. Every put takes one lane (one pooled
 *   connection at a time, see LinkClient) so the server runs them in order; when the lane's
 *   connection is lost, its unanswered batches go back to the spool and the spool follows the
 *   lane to the next connection. A batch whose answer is lost with the
 *   link goes back into the spool, so delivery is at least once: consumers dedupe on `id`.
 * - Subscriptions are made again on every new connection (events put while the link was down
 *   by other processes are not replayed: the bus is not a log). Each subscription calls its
 *   handler serially, in the order events arrived, like the in-process bus.
 * - `close()` ends this bus's subscriptions; the LinkClient belongs to the caller.
 */
import { pino, type Logger } from 'pino';
import { errorCode, StreamhealError } from '../errors.js';
import type { BusEvent, EventBus, EventPattern } from '../bus/EventBus.js';
import { validatePattern } from '../bus/eventPattern.js';
import { validateEvent } from '../bus/events.js';
import type { LinkClient, LinkStream } from './LinkClient.js';

export interface RemoteBusOptions {
  /** Events kept while the link is down (default 10,000); beyond it the oldest are dropped. */
  spoolLimit?: number;
  /** Events per request when the spool is sent (default 500). */
  batchSize?: number;
  logger?: Logger;
}

interface Batch {
  seq: number;
  /** Each event's JSON, made at put time. */
  events: string[];
}

type Handler = (event: BusEvent) => void | Promise<void>;

export class RemoteBus implements EventBus {
  private readonly spoolLimit: number;
  private readonly batchSize: number;
  private readonly logger: Logger;
  private readonly subscriptions = new Set<Subscription>();
  /** Batches waiting for the link, oldest first. */
  private spool: Batch[] = [];
  private spooled = 0;
  private readonly inflight = new Map<number, Batch>();
  private seq = 0;
  private droppedCount = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The lane all bus puts take: one connection, so the server keeps their order. */
  private readonly lane: number;

  constructor(
    private readonly client: LinkClient,
    options: RemoteBusOptions = {},
  ) {
    this.spoolLimit = options.spoolLimit ?? 10_000;
    this.batchSize = options.batchSize ?? 500;
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.lane = client.addStream({
      // On a connection again (the first, or another after the lane's was lost): send the spool.
      resubscribe: () => {
        this.flush();
        return Promise.resolve();
      },
      event: () => undefined,
      lost: () => this.requeueInflight(),
    });
  }

  /** Events dropped from a full spool since this bus was made. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Events waiting in the spool. */
  get spooledEvents(): number {
    return this.spooled;
  }

  async put(events: BusEvent[]): Promise<void> {
    if (this.closed) throw new StreamhealError('bus_closed', 'the event bus is closed');
    if (!Array.isArray(events)) {
      throw new StreamhealError('invalid_event', 'put expects an array of events');
    }
    const serialized = events.map((event, index) => {
      validateEvent(event, `events[${index}]`);
      return JSON.stringify(event);
    });
    if (serialized.length === 0) return;
    const batch: Batch = { seq: ++this.seq, events: serialized };
    if (!this.client.isOpen) {
      this.enspool(batch);
    } else if (this.spool.length > 0) {
      this.enspool(batch); // behind older spooled events
      this.flush();
    } else {
      await this.send(batch, true);
    }
  }

  subscribe(pattern: EventPattern, handler: Handler): () => void {
    if (this.closed) throw new StreamhealError('bus_closed', 'the event bus is closed');
    validatePattern(pattern);
    const subscription = new Subscription(this.client, structuredClone(pattern), handler, this);
    this.subscriptions.add(subscription);
    subscription.start();
    return () => {
      this.subscriptions.delete(subscription);
      subscription.close();
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.client.removeStream(this.lane);
    for (const subscription of this.subscriptions) subscription.close();
    this.subscriptions.clear();
    if (this.spooled > 0) {
      this.logger.warn({ events: this.spooled }, 'event bus closed with events still spooled');
    }
    this.spool = [];
    this.spooled = 0;
  }

  /** @internal */
  reportHandlerError(error: unknown, event: BusEvent): void {
    this.logger.warn({ err: error, event: event.id }, 'event bus handler failed');
  }

  /** Sends a batch; a batch that may not have arrived goes back to the spool. */
  private send(batch: Batch, fromPut: boolean): Promise<void> {
    this.inflight.set(batch.seq, batch);
    return this.client.requestJson('busPut', `[[${batch.events.join(',')}]]`, this.lane).then(
      () => {
        this.inflight.delete(batch.seq);
      },
      (error: unknown) => {
        // Not in flight any more: the link went down and the batch is already spooled again.
        if (!this.inflight.delete(batch.seq)) return;
        if (errorCode(error) === 'store_unavailable' && !this.closed) {
          this.enspool(batch); // a timeout: it may or may not have arrived
          this.scheduleRetry();
          return;
        }
        // The server refused the batch itself: tell the caller (spooled batches: log it).
        if (fromPut) throw error;
        this.logger.error({ err: error, events: batch.events.length }, 'spooled events refused');
      },
    );
  }

  /** Puts a batch back in the spool at its place in put order, dropping the oldest if full. */
  private enspool(batch: Batch): void {
    let index = this.spool.length;
    while (index > 0 && (this.spool[index - 1] as Batch).seq > batch.seq) index--;
    this.spool.splice(index, 0, batch);
    this.spooled += batch.events.length;
    while (this.spooled > this.spoolLimit) {
      const oldest = this.spool[0] as Batch;
      const excess = this.spooled - this.spoolLimit;
      if (oldest.events.length <= excess) {
        this.spool.shift();
        this.spooled -= oldest.events.length;
        this.droppedCount += oldest.events.length;
      } else {
        oldest.events.splice(0, excess);
        this.spooled -= excess;
        this.droppedCount += excess;
      }
    }
  }

  private requeueInflight(): void {
    const batches = [...this.inflight.values()];
    this.inflight.clear();
    for (const batch of batches) this.enspool(batch);
  }

  private flush(): void {
    if (this.closed) return;
    const spool = this.spool;
    this.spool = [];
    this.spooled = 0;
    for (const batch of spool) {
      // Large batches go out in parts, renumbered in order. The server runs one connection's
      // bus puts in arrival order and they all take the lane, so sending them at once keeps it.
      for (let start = 0; start < batch.events.length; start += this.batchSize) {
        const events =
          batch.events.length <= this.batchSize
            ? batch.events
            : batch.events.slice(start, start + this.batchSize);
        this.send({ seq: ++this.seq, events }, false).catch(() => undefined);
      }
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.client.isOpen) this.flush();
    }, 200);
    this.retryTimer.unref();
  }
}

/** One subscription: made again on every connection, handler called serially. */
class Subscription implements LinkStream {
  private readonly id: number;
  private queue: BusEvent[] = [];
  private draining = false;
  private closed = false;

  constructor(
    private readonly client: LinkClient,
    private readonly pattern: EventPattern,
    private readonly handler: Handler,
    private readonly bus: RemoteBus,
  ) {
    this.id = client.addStream(this);
  }

  /** Subscribes now if the link is open; otherwise the next connection does it. */
  start(): void {
    this.client.subscribeStream(this.id);
  }

  resubscribe(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return this.client.request('subscribe', [this.id, this.pattern], this.id).then(() => undefined);
  }

  event(event: unknown): void {
    if (this.closed) return;
    this.queue.push(event as BusEvent);
    if (!this.draining) {
      this.draining = true;
      void this.drain();
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.client.endStream(this.id);
  }

  private async drain(): Promise<void> {
    let event: BusEvent | undefined;
    while (!this.closed && (event = this.queue.shift()) !== undefined) {
      try {
        await this.handler(event);
      } catch (error) {
        this.bus.reportHandlerError(error, event);
      }
    }
    this.draining = false;
  }
}
