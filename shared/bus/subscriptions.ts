/**
 * The subscriptions of a bus that calls its handlers in this process (InProcessBus, EtcdBus),
 * and how events reach them: per subscription, serially and in the order offered. A handler
 * sees the next event only after its previous call settled, so a slow handler delays only its
 * own subscription, whose queue grows until it catches up.
 *
 * Events travel as JSON: each is serialized once when it is put, and every handler parses its
 * own copy, as it would over the network (a handler cannot change what another one sees).
 */
import type { BusEvent, EventPattern } from './EventBus.js';
import { matchesPattern, validatePattern } from './eventPattern.js';
import { InvalidEventError, validateEvent } from './events.js';

export type Handler = (event: BusEvent) => void | Promise<void>;

export interface Subscription {
  readonly pattern: EventPattern;
  readonly handler: Handler;
  /** Serialized events waiting for this handler, oldest first. */
  queue: string[];
  draining: boolean;
}

/**
 * `S` lets a bus keep its own fields on each subscription (EtcdBus: the revision it starts
 * after), which it can test in `offer`'s `admits`.
 */
export class Subscriptions<S extends Subscription = Subscription> implements Iterable<S> {
  private readonly all = new Set<S>();
  private readonly onHandlerError: (error: unknown, event: BusEvent) => void;

  /** `onHandlerError` is told about every handler that throws or rejects (console.error if not given). */
  constructor(onHandlerError?: (error: unknown, event: BusEvent) => void) {
    this.onHandlerError =
      onHandlerError ??
      ((error, event) => console.error(`event bus handler failed on ${event.id}`, error));
  }

  get size(): number {
    return this.all.size;
  }

  [Symbol.iterator](): Iterator<S> {
    return this.all.values();
  }

  /** Checks `pattern` and keeps a copy of it, so later changes by the caller do not count. */
  add(pattern: EventPattern, handler: Handler, fields: Omit<S, keyof Subscription>): S {
    validatePattern(pattern);
    const subscription = {
      ...fields,
      pattern: structuredClone(pattern),
      handler,
      queue: [],
      draining: false,
    } as unknown as S;
    this.all.add(subscription);
    return subscription;
  }

  /** Ends delivery to `subscription`; a handler call already running is left to finish. */
  remove(subscription: S): void {
    this.all.delete(subscription);
    subscription.queue.length = 0;
  }

  removeAll(): void {
    for (const subscription of this.all) this.remove(subscription);
  }

  /**
   * Queues `json` (the serialized `event`) for every subscription whose pattern matches it and
   * that `admits` it, when given.
   */
  offer(event: unknown, json: string, admits?: (subscription: S) => boolean): void {
    for (const subscription of this.all) {
      if (admits !== undefined && !admits(subscription)) continue;
      if (matchesPattern(subscription.pattern, event)) this.enqueue(subscription, json);
    }
  }

  private enqueue(subscription: S, json: string): void {
    subscription.queue.push(json);
    if (subscription.draining) return;
    subscription.draining = true;
    // setImmediate, not a microtask: handlers never run inside put(), and a burst of events
    // yields to I/O between deliveries.
    setImmediate(() => void this.drain(subscription));
  }

  private async drain(subscription: S): Promise<void> {
    let json: string | undefined;
    while ((json = subscription.queue.shift()) !== undefined) {
      const event = JSON.parse(json) as BusEvent;
      try {
        await subscription.handler(event);
      } catch (error) {
        this.reportHandlerError(error, event);
      }
    }
    subscription.draining = false;
  }

  private reportHandlerError(error: unknown, event: BusEvent): void {
    try {
      this.onHandlerError(error, event);
    } catch {
      // A failing error reporter must not stop delivery to this subscriber.
    }
  }
}

/** Checks `event` and serializes it; `label` names it in errors (`events[2]`). */
export function serializeEvent(event: BusEvent, label: string): string {
  validateEvent(event, label);
  try {
    return JSON.stringify(event);
  } catch (error) {
    throw new InvalidEventError(`${label}: must be JSON-serializable (${String(error)})`);
  }
}
