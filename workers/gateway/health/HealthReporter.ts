/**
 * Sends the gateway's health events to the bus: batched, in order, and kept (bounded) while
 * the bus is down, then sent when it answers again. Reporting never throws and never blocks
 * the caller; a full queue drops its oldest events and counts them.
 */
import type { BusEvent, EventBus } from '../../../shared/bus/EventBus.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import { seedBackoff } from '../../../shared/backoff.js';
import type { Logger } from '../../../shared/telemetry/logger.js';

export interface HealthReporterOptions {
  bus: EventBus;
  nodeId: string;
  logger: Logger;
  /** How long events wait to be sent together. @default 250 */
  flushMs?: number;
  /** Events kept while the bus is down. @default 1000 */
  maxQueued?: number;
}

/** EventBridge takes at most 10 entries per PutEvents call; keep batches within that everywhere. */
const BATCH = 10;

export class HealthReporter {
  private queue: BusEvent[] = [];
  private timer?: NodeJS.Timeout;
  private sending = false;
  private failures = 0;
  private closed = false;
  /** Events dropped because the queue was full while the bus was down. */
  dropped = 0;

  constructor(private readonly options: HealthReporterOptions) {}

  get queued(): number {
    return this.queue.length;
  }

  report(detailType: string, detail: Record<string, unknown>): void {
    if (this.closed) return;
    const { nodeId } = this.options;
    this.queue.push(makeEvent(Sources.gateway, detailType, { node: nodeId, ...detail }, [nodeId]));
    this.trim();
    this.schedule(this.options.flushMs ?? 250);
  }

  private trim(): void {
    const overflow = this.queue.length - (this.options.maxQueued ?? 1_000);
    if (overflow > 0) {
      this.queue.splice(0, overflow);
      this.dropped += overflow;
    }
  }

  /** Sends what is queued now (best effort); later reports are ignored. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.flush();
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.sending) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delayMs).unref();
  }

  private async flush(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    let batch: BusEvent[] = [];
    try {
      while (this.queue.length > 0) {
        batch = this.queue.splice(0, BATCH);
        await this.options.bus.put(batch);
        batch = [];
        this.failures = 0;
      }
    } catch (error) {
      // Back at the front, in order; the oldest go first if the queue is now over its bound.
      this.queue.unshift(...batch);
      this.trim();
      this.failures++;
      this.options.logger.warn(
        { err: error, queued: this.queue.length },
        'health events not sent; will retry',
      );
    } finally {
      this.sending = false;
    }
    if (this.queue.length > 0 && !this.closed) this.schedule(seedBackoff(this.failures - 1));
  }
}
