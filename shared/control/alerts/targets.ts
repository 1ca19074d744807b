/**
 * Where decision events are delivered: a list of targets, from `STREAMHEAL_ALERT_TARGETS` (JSON)
 * or a file named by `STREAMHEAL_ALERT_TARGETS_FILE` (JSON or YAML). None by default.
 *
 *   [
 *     { "name": "ops-hook", "type": "webhook", "url": "https://…", "secret": "…" },
 *     { "name": "chat", "type": "slack", "url": "https://hooks.slack.com/services/…" },
 *     { "name": "pager", "type": "pagerduty", "routingKey": "…" }
 *   ]
 *
 * `detailTypes` narrows a target to some decision events; PagerDuty targets default to the ones
 * worth waking someone for (DEFAULT_PAGERDUTY_DETAIL_TYPES).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DecisionEvents } from '../../bus/controlEvents.js';
import { StreamhealError } from '../../errors.js';

export const PAGERDUTY_EVENTS_URL = 'https://events.pagerduty.com/v2/enqueue';

export const DEFAULT_PAGERDUTY_DETAIL_TYPES: readonly string[] = [
  DecisionEvents.nodeIsolated,
  DecisionEvents.nodeReinstated,
  DecisionEvents.isolationSuppressed,
  DecisionEvents.nodeDeclaredLost,
  DecisionEvents.migrationFailed,
];

/** Target names become store keys (`alerts/dead/<name>/…`). */
const TargetName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, . _ -; at most 64');
const HttpUrl = z.url({ protocol: /^https?$/ });
const common = { name: TargetName, detailTypes: z.array(z.string().min(1)).optional() };

const AlertTargetSchema = z.discriminatedUnion('type', [
  z.strictObject({
    ...common,
    type: z.literal('webhook'),
    url: HttpUrl,
    /** Shared with the receiver; signs every request (signature.ts). */
    secret: z.string().min(16),
  }),
  z.strictObject({ ...common, type: z.literal('slack'), url: HttpUrl }),
  z.strictObject({
    ...common,
    type: z.literal('pagerduty'),
    /** The integration key of a PagerDuty service (Events API v2). */
    routingKey: z.string().min(1),
    url: HttpUrl.default(PAGERDUTY_EVENTS_URL),
  }),
]);

export type AlertTarget = z.output<typeof AlertTargetSchema>;

const AlertTargetsSchema = z.array(AlertTargetSchema).superRefine((targets, ctx) => {
  const seen = new Set<string>();
  targets.forEach((target, i) => {
    if (seen.has(target.name)) {
      ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate name ${target.name}` });
    }
    seen.add(target.name);
  });
});

export class AlertConfigError extends StreamhealError {
  constructor(message: string) {
    super('invalid_alert_targets', message);
  }
}

/** Validates target data; throws AlertConfigError naming every problem's path. */
export function parseAlertTargets(data: unknown): AlertTarget[] {
  const result = AlertTargetsSchema.safeParse(data);
  if (result.success) return result.data;
  throw new AlertConfigError(
    `invalid alert targets: ${result.error.issues
      .map((issue) => `[${issue.path.join('.')}]: ${issue.message}`)
      .join('; ')}`,
  );
}

/** Targets from the environment; [] when neither variable is set. */
export function alertTargetsFromEnv(env: NodeJS.ProcessEnv = process.env): AlertTarget[] {
  const inline = env.STREAMHEAL_ALERT_TARGETS;
  const file = env.STREAMHEAL_ALERT_TARGETS_FILE;
  if (inline && file) {
    throw new AlertConfigError(
      'set STREAMHEAL_ALERT_TARGETS or STREAMHEAL_ALERT_TARGETS_FILE, not both',
    );
  }
  if (!inline && !file) return [];
  let data: unknown;
  try {
    data = inline ? JSON.parse(inline) : parseYaml(readFileSync(file!, 'utf8'));
  } catch (error) {
    throw new AlertConfigError(
      `${inline ? 'STREAMHEAL_ALERT_TARGETS' : file}: ${(error as Error).message}`,
    );
  }
  return parseAlertTargets(data);
}

/** Whether `target` takes events of `detailType`. */
export function targetWants(target: AlertTarget, detailType: string): boolean {
  const wanted =
    target.detailTypes ??
    (target.type === 'pagerduty' ? DEFAULT_PAGERDUTY_DETAIL_TYPES : undefined);
  return wanted === undefined || wanted.includes(detailType);
}

/**
 * Delivery settings from the environment: STREAMHEAL_ALERT_MAX_ATTEMPTS (5),
 * STREAMHEAL_ALERT_BACKOFF_BASE_MS (500; cap 60 s, 30 % jitter as the seed's backoff),
 * STREAMHEAL_ALERT_TIMEOUT_MS (5000 per attempt).
 */
export function alertDeliveryFromEnv(env: NodeJS.ProcessEnv = process.env): {
  maxAttempts?: number;
  timeoutMs?: number;
  backoff?: { baseMs: number; capMs: number; jitter: number; floorMs: number };
} {
  const int = (name: string): number | undefined => {
    const value = env[name];
    if (value === undefined || value === '') return undefined;
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n <= 0) {
      throw new AlertConfigError(`${name} must be a whole number > 0, got "${value}"`);
    }
    return n;
  };
  const maxAttempts = int('STREAMHEAL_ALERT_MAX_ATTEMPTS');
  const timeoutMs = int('STREAMHEAL_ALERT_TIMEOUT_MS');
  const baseMs = int('STREAMHEAL_ALERT_BACKOFF_BASE_MS');
  return {
    ...(maxAttempts === undefined ? {} : { maxAttempts }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    ...(baseMs === undefined
      ? {}
      : { backoff: { baseMs, capMs: 60_000, jitter: 0.3, floorMs: Math.min(100, baseMs) } }),
  };
}
