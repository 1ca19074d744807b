/**
 * A small typed event emitter: no Node `events` import, so the SDK runs unchanged in browsers.
 */

export type Listener<T> = (payload: T) => void;

export class TypedEmitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  on<E extends keyof Events>(event: E, listener: Listener<Events[E]>): this {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return this;
  }

  off<E extends keyof Events>(event: E, listener: Listener<Events[E]>): this {
    const set = this.listeners.get(event);
    set?.delete(listener as Listener<never>);
    if (set?.size === 0) this.listeners.delete(event);
    return this;
  }

  /** Listeners registered for `event` (all events when omitted). */
  listenerCount(event?: keyof Events): number {
    if (event !== undefined) return this.listeners.get(event)?.size ?? 0;
    let count = 0;
    for (const set of this.listeners.values()) count += set.size;
    return count;
  }

  removeAllListeners(): void {
    this.listeners.clear();
  }

  /**
   * Calls every listener. A listener that throws does not stop the others nor corrupt the
   * caller's state: the exception is rethrown from a microtask, where the host reports it.
   */
  protected emit<E extends keyof Events>(event: E, payload: Events[E]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[E]>)(payload);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
