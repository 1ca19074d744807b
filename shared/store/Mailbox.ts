/**
 * How every state store hands watch events to a listener: each listener owns one Mailbox, a
 * queue drained in a microtask. Events therefore arrive in order, never inside the call that
 * caused them (an append or put), without a timer per event; a throwing listener is reported
 * and does not stop the others.
 */
import type { Logger } from 'pino';

/** A queue that grew past this during a burst is replaced after the drain, giving memory back. */
const SHRINK_AFTER = 1024;

export class Mailbox<E> {
  private queue: E[] = [];
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly listener: (event: E) => void,
    private readonly onError: (error: unknown) => void,
  ) {}

  push(event: E): void {
    if (this.closed) return;
    this.queue.push(event);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.drain);
    }
  }

  close(): void {
    this.closed = true;
    this.queue = [];
  }

  private readonly drain = (): void => {
    const queue = this.queue;
    // Events pushed by a listener during the drain are picked up by this same loop.
    for (let i = 0; i < queue.length && !this.closed; i++) {
      try {
        this.listener(queue[i] as E);
      } catch (error) {
        this.onError(error);
      }
    }
    if (queue.length > SHRINK_AFTER) this.queue = [];
    else queue.length = 0;
    this.scheduled = false;
  };
}

/** Where a store reports errors thrown by watch listeners: its logger, else the console. */
export function listenerErrorReporter(logger: Logger | undefined): (error: unknown) => void {
  return logger
    ? (error) => logger.warn({ err: error }, 'store watch listener threw')
    : (error) => console.error('streamheal: store watch listener threw', error);
}
