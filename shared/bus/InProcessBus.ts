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
import { InvalidEventError } from './events.js';
import { serializeEvent, Subscriptions, type Handler } from './subscriptions.js';

export class BusClosedError extends StreamhealError {
  constructor() {
    super('bus_closed', 'the event bus is closed');
  }
}

export interface InProcessBusOptions {
  /** Told about every handler that throws or rejects; defaults to console.error. */
  onHandlerError?: (error: unknown, event: BusEvent) => void;
}

export class InProcessBus implements EventBus {
  private readonly subscriptions: Subscriptions;
  private closed = false;

  constructor(options: InProcessBusOptions = {}) {
    this.subscriptions = new Subscriptions(options.onHandlerError);
  }

  async put(events: BusEvent[]): Promise<void> {
    if (this.closed) throw new BusClosedError();
    if (!Array.isArray(events)) throw new InvalidEventError('put expects an array of events');
    // Validate and snapshot the whole batch first: a bad event rejects the batch before any
    // delivery, and the snapshot hides later changes the publisher makes to its objects.
    const snapshots = events.map((event, index) => serializeEvent(event, `events[${index}]`));
    for (const serialized of snapshots) {
      this.subscriptions.offer(JSON.parse(serialized), serialized);
    }
  }

  subscribe(pattern: EventPattern, handler: Handler): () => void {
    if (this.closed) throw new BusClosedError();
    const subscription = this.subscriptions.add(pattern, handler, {});
    return () => this.subscriptions.remove(subscription);
  }

  /** Stops all delivery at once; a handler call already running is left to finish. */
  async close(): Promise<void> {
    this.closed = true;
    this.subscriptions.removeAll();
  }
}
