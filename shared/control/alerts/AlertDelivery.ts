/**
 * Delivers decision events to alert targets, losing none while a receiver is down:
 *
 *   1. Per target, an event already delivered (`alerts/sent/<target>/<eventId>`) is not sent
 *      again: redelivered and duplicated bus events page once.
 *   2. Each attempt has a deadline; a network error, a timeout, 408, 425, 429 or a 5xx answer is
 *      retried after the seed's backoff (shared/backoff.ts; a longer Retry-After wins, up to the
 *      cap), up to `maxAttempts`. Any other 4xx is final: the receiver refuses this request.
 *   3. What still failed goes to the dead-letter records `alerts/dead/<target>/<seq>` (kept
 *      `deadLetterTtlMs`), with the error. While a target has dead letters, its new events join
 *      the end of that queue, so a receiver sees them in order once it is back.
 *   4. `redeliver()` (on a timer locally, on a schedule on AWS, and before every delivery to a
 *      target) sends the queue in order, one try each, spacing tries per record with the
 *      backoff; it stops at the first that still fails. Refused requests (final 4xx) are kept for
 *      inspection and skipped.
 * Calls for one target are serialised in this process. Across processes (concurrent Lambdas)
 * delivery is at least once; webhook receivers dedupe on `X-Streamheal-Event-Id`.
 */
import { seedBackoff, SEED_BACKOFF, type BackoffOptions } from '../../backoff.js';
import type { BusEvent } from '../../bus/EventBus.js';
import { errorCode } from '../../errors.js';
import type { StateStore } from '../../store/StateStore.js';
import type { Logger } from '../../telemetry/logger.js';
import { alertRequest } from './formats.js';
import { targetWants, type AlertTarget } from './targets.js';

export const SENT_PREFIX = 'alerts/sent/';
export const DEAD_LETTER_PREFIX = 'alerts/dead/';

export interface AlertDeliveryOptions {
  store: StateStore;
  targets: readonly AlertTarget[];
  logger: Logger;
  /** Attempts per event and target before it is dead-lettered. @default 5 */
  maxAttempts?: number;
  /** @default SEED_BACKOFF (0.5 s doubling, 60 s cap, 30 % jitter) */
  backoff?: BackoffOptions;
  /** Deadline of one HTTP attempt. @default 5000 */
  timeoutMs?: number;
  /** @default 86_400_000 (24 h) */
  sentTtlMs?: number;
  /** @default 604_800_000 (7 days) */
  deadLetterTtlMs?: number;
  now?: () => number;
  /** @default global fetch */
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
}

export type DeliveryOutcome = 'sent' | 'duplicate' | 'skipped' | 'dead_lettered';

export interface DeliveryReport {
  target: string;
  outcome: DeliveryOutcome;
  attempts: number;
  error?: string;
}

export interface DeadLetter {
  target: string;
  event: BusEvent;
  attempts: number;
  redeliveries: number;
  firstFailedAt: string;
  lastAttemptAt: string;
  /** Epoch ms before which redelivery does not try it again. */
  nextAttemptAt: number;
  lastError: string;
  /** The receiver refused it for good (a final 4xx): kept for inspection, not retried. */
  refused?: boolean;
  /** Queued behind earlier dead letters without being tried. */
  queued?: boolean;
}

export interface RedeliveryReport {
  sent: number;
  failed: number;
  remaining: number;
}

type AttemptResult =
  { ok: true } | { ok: false; retry: boolean; error: string; retryAfterMs?: number };

export class AlertDelivery {
  private readonly now: () => number;
  private readonly fetch: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Per target: the tail of its chain of calls, so one target's calls never overlap here. */
  private readonly chains = new Map<string, Promise<unknown>>();
  private seq = 0;

  constructor(private readonly options: AlertDeliveryOptions) {
    this.now = options.now ?? Date.now;
    this.fetch = options.fetch ?? fetch;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  get targets(): readonly AlertTarget[] {
    return this.options.targets;
  }

  /** Delivers one decision event to every target that wants it. */
  deliver(event: BusEvent): Promise<DeliveryReport[]> {
    return Promise.all(
      this.options.targets.map((target) =>
        this.serial(target.name, () => this.deliverTo(target, event)),
      ),
    );
  }

  /** Sends dead letters again, per target in order; see the header. */
  async redeliver(): Promise<RedeliveryReport> {
    const reports = await Promise.all(
      this.options.targets.map((target) =>
        this.serial(target.name, () => this.redeliverTo(target)),
      ),
    );
    return reports.reduce(
      (sum, r) => ({
        sent: sum.sent + r.sent,
        failed: sum.failed + r.failed,
        remaining: sum.remaining + r.remaining,
      }),
      { sent: 0, failed: 0, remaining: 0 },
    );
  }

  /** The dead letters of a target, oldest first. */
  async deadLetters(
    target: string,
  ): Promise<{ key: string; version: number; value: DeadLetter }[]> {
    const records = await this.options.store.list<DeadLetter>(`${DEAD_LETTER_PREFIX}${target}/`);
    return records.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  private serial<T>(target: string, run: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(target) ?? Promise.resolve();
    const next = previous.then(run, run);
    const tail = next.catch(() => undefined);
    this.chains.set(target, tail);
    void tail.then(() => {
      if (this.chains.get(target) === tail) this.chains.delete(target);
    });
    return next;
  }

  private async deliverTo(target: AlertTarget, event: BusEvent): Promise<DeliveryReport> {
    const name = target.name;
    if (!targetWants(target, event['detail-type'])) {
      return { target: name, outcome: 'skipped', attempts: 0 };
    }
    if (await this.wasSent(target, event.id))
      return { target: name, outcome: 'duplicate', attempts: 0 };
    // Earlier events waiting for this target go first; if they cannot, this one waits too.
    const backlog = await this.redeliverTo(target);
    if (backlog.remaining > 0) {
      await this.deadLetter(target, event, 0, 'queued behind earlier undelivered events', {
        queued: true,
      });
      return { target: name, outcome: 'dead_lettered', attempts: 0, error: 'queued' };
    }
    const maxAttempts = this.options.maxAttempts ?? 5;
    let last: AttemptResult = { ok: false, retry: true, error: 'not tried' };
    let attempts = 0;
    while (attempts < maxAttempts) {
      last = await this.attempt(target, event);
      attempts++;
      if (last.ok) {
        await this.markSent(target, event.id);
        return { target: name, outcome: 'sent', attempts };
      }
      if (!last.retry || attempts >= maxAttempts) break;
      await this.sleep(this.delay(attempts - 1, last.retryAfterMs));
    }
    const error = last.ok ? '' : last.error;
    await this.deadLetter(
      target,
      event,
      attempts,
      error,
      last.ok || last.retry ? {} : { refused: true },
    );
    this.options.logger.error(
      { target: name, event: event.id, detailType: event['detail-type'], attempts, error },
      `alert ${event['detail-type']} to ${name} failed after ${attempts} attempts (${error}); dead-lettered`,
    );
    return { target: name, outcome: 'dead_lettered', attempts, error };
  }

  private async redeliverTo(target: AlertTarget): Promise<RedeliveryReport> {
    const report: RedeliveryReport = { sent: 0, failed: 0, remaining: 0 };
    const letters = await this.deadLetters(target.name);
    for (let i = 0; i < letters.length; i++) {
      const { key, version, value } = letters[i]!;
      if (value.refused) continue;
      const pending = letters.slice(i).filter((l) => !l.value.refused).length;
      if (await this.wasSent(target, value.event.id)) {
        await this.drop(key, version);
        continue;
      }
      if (value.nextAttemptAt > this.now()) {
        report.remaining = pending;
        return report;
      }
      const result = await this.attempt(target, value.event);
      if (result.ok) {
        await this.markSent(target, value.event.id);
        await this.drop(key, version);
        report.sent++;
        this.options.logger.info(
          { target: target.name, event: value.event.id, redeliveries: value.redeliveries + 1 },
          `alert ${value.event['detail-type']} to ${target.name} delivered from the dead-letter queue`,
        );
        continue;
      }
      report.failed++;
      const redeliveries = value.redeliveries + 1;
      const next: DeadLetter = {
        ...value,
        attempts: value.attempts + 1,
        redeliveries,
        lastAttemptAt: new Date(this.now()).toISOString(),
        nextAttemptAt: this.now() + this.delay(redeliveries - 1, result.retryAfterMs),
        lastError: result.error,
        ...(result.retry ? {} : { refused: true }),
      };
      delete next.queued;
      await this.options.store
        .put(key, next, { ifVersion: version, ttlMs: this.deadLetterTtl() })
        .catch((error: unknown) => {
          if (errorCode(error) !== 'condition_failed') throw error;
        });
      if (!result.retry) continue;
      report.remaining = pending;
      return report;
    }
    return report;
  }

  private delay(attempt: number, retryAfterMs: number | undefined): number {
    const backoff = this.options.backoff ?? SEED_BACKOFF;
    const delay = seedBackoff(attempt, backoff);
    return retryAfterMs === undefined
      ? delay
      : Math.max(delay, Math.min(retryAfterMs, backoff.capMs));
  }

  private async attempt(target: AlertTarget, event: BusEvent): Promise<AttemptResult> {
    const request = alertRequest(target, event, this.now());
    try {
      const response = await this.fetch(request.url, {
        method: 'POST',
        headers: request.headers,
        body: request.body,
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 5_000),
      });
      const text = await response.text().catch(() => '');
      if (response.status >= 200 && response.status < 300) return { ok: true };
      const retryAfter = Number(response.headers.get('retry-after'));
      const s = response.status;
      return {
        ok: false,
        retry: s === 408 || s === 425 || s === 429 || s >= 500,
        error: `HTTP ${s}${text ? `: ${text.slice(0, 200)}` : ''}`,
        ...(Number.isFinite(retryAfter) && retryAfter > 0
          ? { retryAfterMs: retryAfter * 1000 }
          : {}),
      };
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause;
      const name = (error as Error).name;
      return {
        ok: false,
        retry: true,
        error: name === 'TimeoutError' ? 'timed out' : (cause?.code ?? (error as Error).message),
      };
    }
  }

  private async wasSent(target: AlertTarget, eventId: string): Promise<boolean> {
    return (await this.options.store.get(`${SENT_PREFIX}${target.name}/${eventId}`)) !== undefined;
  }

  private async markSent(target: AlertTarget, eventId: string): Promise<void> {
    await this.options.store
      .put(
        `${SENT_PREFIX}${target.name}/${eventId}`,
        { at: this.now() },
        { ifVersion: 0, ttlMs: this.options.sentTtlMs ?? 86_400_000 },
      )
      .catch((error: unknown) => {
        if (errorCode(error) !== 'condition_failed') throw error;
      });
  }

  private async deadLetter(
    target: AlertTarget,
    event: BusEvent,
    attempts: number,
    lastError: string,
    flags: { refused?: boolean; queued?: boolean },
  ): Promise<void> {
    const now = this.now();
    // Keys sort in the order letters were written: time, then a per-process counter.
    const seq = `${String(now).padStart(15, '0')}-${String(++this.seq % 1e6).padStart(6, '0')}-${event.id}`;
    const letter: DeadLetter = {
      target: target.name,
      event,
      attempts,
      redeliveries: 0,
      firstFailedAt: new Date(now).toISOString(),
      lastAttemptAt: new Date(now).toISOString(),
      nextAttemptAt: flags.queued ? now : now + this.delay(0, undefined),
      lastError,
      ...flags,
    };
    await this.options.store.put(`${DEAD_LETTER_PREFIX}${target.name}/${seq}`, letter, {
      ifVersion: 0,
      ttlMs: this.deadLetterTtl(),
    });
  }

  private async drop(key: string, version: number): Promise<void> {
    await this.options.store.delete(key, { ifVersion: version }).catch((error: unknown) => {
      if (errorCode(error) !== 'condition_failed') throw error;
    });
  }

  private deadLetterTtl(): number {
    return this.options.deadLetterTtlMs ?? 604_800_000;
  }
}
