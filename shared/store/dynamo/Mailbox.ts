/**
 * One listener with its own queue, drained in a microtask: events arrive in order, never inside
 * the call that caused them, and a throwing listener does not stop the others.
 */
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
    for (let i = 0; i < queue.length && !this.closed; i++) {
      try {
        this.listener(queue[i] as E);
      } catch (error) {
        this.onError(error);
      }
    }
    queue.length = 0;
    this.scheduled = false;
  };
}
