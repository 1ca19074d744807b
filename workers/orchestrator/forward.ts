/**
 * Decision events to a second bus as well: on AWS with the etcd store (infra's
 * OrchestratorService), the orchestrator's decisions also go to the deployment's EventBridge bus,
 * where the alerting stack's rules (SNS, webhook API destinations) listen, as they do when the
 * Lambdas decide. Everything else, and every subscription, stays on the etcd bus.
 */
import { DecisionEvents } from '../../shared/bus/controlEvents.js';
import type { BusEvent, EventBus, EventPattern } from '../../shared/bus/EventBus.js';
import { Sources } from '../../shared/bus/events.js';
import type { Logger } from '../../shared/telemetry/logger.js';

const DECISION_TYPES: ReadonlySet<string> = new Set(Object.values(DecisionEvents));

export function isDecisionEvent(event: BusEvent): boolean {
  return event.source === Sources.control && DECISION_TYPES.has(event['detail-type']);
}

export class ForwardingBus implements EventBus {
  constructor(
    private readonly primary: EventBus,
    private readonly decisions: EventBus,
    private readonly logger: Logger,
  ) {}

  async put(events: BusEvent[]): Promise<void> {
    await this.primary.put(events);
    const forwarded = events.filter(isDecisionEvent);
    if (forwarded.length === 0) return;
    // The second bus spools and retries on its own; a refusal is logged, never the caller's.
    await this.decisions
      .put(forwarded)
      .catch((error: unknown) =>
        this.logger.error({ err: error }, 'decision events not forwarded'),
      );
  }

  subscribe(pattern: EventPattern, handler: (event: BusEvent) => void | Promise<void>): () => void {
    return this.primary.subscribe(pattern, handler);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.primary.close(), this.decisions.close()]);
  }
}
