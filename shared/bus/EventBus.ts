/**
 * The event bus port, with EventBridge's envelope in every shape: the in-process router
 * (InProcessBus), the control link (RemoteBus), and later EventBridge and etcd watch.
 */
export interface BusEvent<D = Record<string, unknown>> {
  /** Unique id, used for idempotency by consumers. */
  id: string;
  source: string;
  'detail-type': string;
  /** ISO-8601 time of the event. */
  time: string;
  detail: D;
  /** Node or resource the event is about. */
  resources?: string[];
}

/** An EventBridge event pattern (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html). */
export type EventPattern = Record<string, unknown>;

export interface EventBus {
  put(events: BusEvent[]): Promise<void>;
  /** Calls `handler` for every event matching `pattern`; returns an unsubscribe function. */
  subscribe(pattern: EventPattern, handler: (event: BusEvent) => void | Promise<void>): () => void;
  close(): Promise<void>;
}
