/**
 * The catalogue's functions as the orchestrator calls them. `routeCatalogue` (shared/bus/router.ts)
 * subscribes one handler per catalogue entry on this bus, exactly as it does on the in-process
 * bus of the local control process; the orchestrator's feed then hands each event to
 * `targets(event)` and awaits every matching handler itself, so it knows when an event is done
 * (and which entries failed and must be tried again) before it moves its checkpoint past it.
 *
 * `put` goes to the real bus: decision events the functions publish reach etcd (and from there
 * every subscriber, alerts included).
 */
import type { BusEvent, EventBus, EventPattern } from '../../shared/bus/EventBus.js';
import { matchesPattern, validatePattern } from '../../shared/bus/eventPattern.js';

type Handler = (event: BusEvent) => void | Promise<void>;

export interface Target {
  /** Which subscription (for logs): its catalogue entry's name. */
  readonly name: string;
  run(event: BusEvent): Promise<void>;
}

export class CatalogueDispatcher implements EventBus {
  private readonly subscriptions = new Map<number, { pattern: EventPattern; handler: Handler }>();
  private next = 1;

  /**
   * `names`: what to call the subscriptions in logs, in subscription order (routeCatalogue
   * subscribes in catalogue order, so the entries' names).
   */
  constructor(
    private readonly out: EventBus,
    private readonly names: readonly string[] = [],
  ) {}

  subscribe(pattern: EventPattern, handler: Handler): () => void {
    validatePattern(pattern);
    const id = this.next++;
    this.subscriptions.set(id, { pattern: structuredClone(pattern), handler });
    return () => this.subscriptions.delete(id);
  }

  put(events: BusEvent[]): Promise<void> {
    return this.out.put(events);
  }

  /** The subscriptions `event` matches, in subscription (catalogue) order. */
  targets(event: BusEvent): Target[] {
    const targets: Target[] = [];
    for (const [id, { pattern, handler }] of this.subscriptions) {
      if (!matchesPattern(pattern, event)) continue;
      targets.push({
        name: this.names[id - 1] ?? `subscription ${id}`,
        // Each call gets its own copy, as on the other buses.
        run: async (e) => {
          await handler(structuredClone(e));
        },
      });
    }
    return targets;
  }

  /** Closes nothing: the real bus belongs to the orchestrator. */
  async close(): Promise<void> {
    this.subscriptions.clear();
  }
}
