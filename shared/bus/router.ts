/**
 * The catalogue on a bus that can subscribe (InProcessBus locally, the etcd bus self-hosted):
 * one subscription per catalogue entry, as EventBridge has one rule per entry. An event that
 * matches two entries reaches their functions once per entry, as it would on EventBridge.
 *
 * Handlers are the same functions the Lambda entries call. As on Lambda, a function with
 * several entries (nodeLost) can be called for two events at once; calls for one entry come
 * one at a time, in put order.
 */
import { StreamhealError } from '../errors.js';
import type { CatalogueEntry, TargetFunction } from './catalogue.js';
import type { BusEvent, EventBus } from './EventBus.js';

export type RouteHandler = (event: BusEvent, entry: CatalogueEntry) => void | Promise<void>;

export class RoutingError extends StreamhealError {
  constructor(message: string) {
    super('routing_error', message);
  }
}

/**
 * Subscribes `handlers[entry.target]` to every entry's pattern; returns a function that
 * removes all of them. Every target needs a handler, and every handler an entry: a typo or a
 * forgotten function fails here rather than leaving events unhandled.
 */
export function routeCatalogue(
  bus: EventBus,
  entries: readonly CatalogueEntry[],
  handlers: Partial<Record<TargetFunction, RouteHandler>>,
): () => void {
  const targets = new Set(entries.map((entry) => entry.target));
  const missing = [...targets].filter((target) => typeof handlers[target] !== 'function');
  if (missing.length > 0) {
    throw new RoutingError(`no handler for ${missing.join(', ')}`);
  }
  const unused = Object.keys(handlers).filter((name) => !targets.has(name as TargetFunction));
  if (unused.length > 0) {
    throw new RoutingError(`no catalogue entry targets ${unused.join(', ')}`);
  }

  const unsubscribes: (() => void)[] = [];
  try {
    for (const entry of entries) {
      const handler = handlers[entry.target]!;
      unsubscribes.push(bus.subscribe(entry.pattern, (event) => handler(event, entry)));
    }
  } catch (error) {
    for (const unsubscribe of unsubscribes) unsubscribe();
    throw error;
  }
  return () => {
    for (const unsubscribe of unsubscribes.splice(0)) unsubscribe();
  };
}
