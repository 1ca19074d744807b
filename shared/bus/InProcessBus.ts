/**
 * The embedded event bus: routes events between the parts of one process with EventBridge
 * pattern matching, so the same subscriptions work here and on EventBridge.
 *
 * Delivery is asynchronous and, per subscriber, serial and in put order: a handler sees the next
 * event only after its previous call settled. A slow handler therefore delays only its own
 * subscription, whose queue grows without bound until it catches up.
 */
import { StreamhealError } from '../errors.js';
import type { BusEvent, EventBus, EventPattern } from './EventBus.js';
import { matchesPattern, validatePattern } from './eventPattern.js';
import { InvalidEventError, validateEvent } from './events.js';

export class BusClosedError extends StreamhealError {
  constructor() {
    super('bus_closed', 'the event bus is closed');
  }
}

export interface InProcessBusOptions {
  /** Told about every handler that throws or rejects; defaults to console.error. */
  onHandlerError?: (error: unknown, event: BusEvent) => void;
}

type Handler = (event: BusEvent) => void | Promise<void>;

interface Subscription {
  pattern: EventPattern;
  handler: Handler;
  /** Serialized events waiting for this handler, oldest first. */
  queue: string[];
  draining: boolean;
}

export class InProcessBus implements EventBus {
  private readonly subscriptions = new Set<Subscription>();
  private readonly onHandlerError: (error: unknown, event: BusEvent) => void;
  private closed = false;

  constructor(options: InProcessBusOptions = {}) {
    this.onHandlerError =
      options.onHandlerError ??
      ((error, event) => console.error(`event bus handler failed on ${event.id}`, error));
  }

  async put(events: BusEvent[]): Promise<void> {
    if (this.closed) throw new BusClosedError();
    if (!Array.isArray(events)) throw new InvalidEventError('put expects an array of events');
    // Validate and snapshot the whole batch first: a bad event rejects the batch before any
    // delivery, and the snapshot hides later changes the publisher makes to its objects.
    const snapshots = events.map((event, index) => snapshot(event, `events[${index}]`));
    for (const serialized of snapshots) {
      const event: unknown = JSON.parse(serialized);
      for (const subscription of this.subscriptions) {
        if (matchesPattern(subscription.pattern, event)) this.enqueue(subscription, serialized);
      }
    }
  }

  subscribe(pattern: EventPattern, handler: Handler): () => void {
    if (this.closed) throw new BusClosedError();
    validatePattern(pattern);
    const subscription: Subscription = {
      pattern: structuredClone(pattern),
      handler,
      queue: [],
      draining: false,
    };
    this.subscriptions.add(subscription);
    return () => this.unsubscribe(subscription);
  }

  /** Stops all delivery at once; a handler call already running is left to finish. */
  async close(): Promise<void> {
    this.closed = true;
    for (const subscription of this.subscriptions) this.unsubscribe(subscription);
  }

  private unsubscribe(subscription: Subscription): void {
    this.subscriptions.delete(subscription);
    subscription.queue.length = 0;
  }

  private enqueue(subscription: Subscription, serialized: string): void {
    subscription.queue.push(serialized);
    if (subscription.draining) return;
    subscription.draining = true;
    // setImmediate, not a microtask: handlers never run inside put(), and a burst of events
    // yields to I/O between deliveries.
    setImmediate(() => void this.drain(subscription));
  }

  private async drain(subscription: Subscription): Promise<void> {
    let serialized: string | undefined;
    while ((serialized = subscription.queue.shift()) !== undefined) {
      // Each handler gets its own copy, as it would over the network.
      const event = JSON.parse(serialized) as BusEvent;
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

function snapshot(event: BusEvent, label: string): string {
  validateEvent(event, label);
  try {
    return JSON.stringify(event);
  } catch (error) {
    throw new InvalidEventError(`${label}: must be JSON-serializable (${String(error)})`);
  }
}
