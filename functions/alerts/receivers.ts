/**
 * The alerts function's receivers (alert targets), from one of:
 *   STREAMHEAL_ALERT_TARGETS_SECRET_ARN  a Secrets Manager secret whose SecretString is the JSON
 *                                        list STREAMHEAL_ALERT_TARGETS takes (same parser,
 *                                        parseAlertTargets); read on first use and again once
 *                                        older than STREAMHEAL_ALERT_TARGETS_CACHE_MS (300,000),
 *                                        so an edited secret takes effect without a redeploy
 *   STREAMHEAL_ALERT_TARGETS / _FILE     inline JSON or a JSON/YAML file (alertTargetsFromEnv),
 *                                        read once
 *   none of them                         no receivers
 * A secret that cannot be read, or whose text is not a valid receiver list, fails `get()` with
 * AlertReceiversError naming the secret and the problem (never a value), so the invocation fails
 * and Lambda retries it, then dead-letters it. One exception: when Secrets Manager cannot be
 * reached on a re-read, the list read before is kept (and the failure logged), so alerts keep
 * flowing through an outage of Secrets Manager; a malformed edit is never papered over that way.
 */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import {
  alertTargetsFromEnv,
  AlertConfigError,
  parseAlertTargets,
  type AlertTarget,
} from '../../shared/control/alerts/targets.js';
import { errorCode, StreamhealError } from '../../shared/errors.js';
import {
  cacheMsFromEnv,
  parseJsonQuietly,
  readSecretString,
  Refreshing,
  secretsManagerClient,
  type SecretSourceOptions,
} from '../secrets.js';

export const ALERT_TARGETS_SECRET_ARN_ENV = 'STREAMHEAL_ALERT_TARGETS_SECRET_ARN';
export const ALERT_TARGETS_CACHE_MS_ENV = 'STREAMHEAL_ALERT_TARGETS_CACHE_MS';
export const DEFAULT_ALERT_TARGETS_CACHE_MS = 300_000;

export class AlertReceiversError extends StreamhealError {
  constructor(
    message: string,
    /** `unreadable`: Secrets Manager failed or the secret has no text; `malformed`: its text. */
    readonly reason: 'unreadable' | 'malformed',
    options?: ErrorOptions,
  ) {
    super('alert_receivers_unavailable', message, options);
  }
}

export class AlertReceivers {
  private readonly env: NodeJS.ProcessEnv;
  private readonly secretArn: string | undefined;
  private readonly fromSecret?: Refreshing<readonly AlertTarget[]>;
  private fromEnv?: readonly AlertTarget[];
  private client?: SecretsManagerClient;
  /** The last text parsed and its list: an unchanged secret gives the same list (same object). */
  private parsed?: { text: string; targets: readonly AlertTarget[] };

  /** `cacheMs` defaults to $STREAMHEAL_ALERT_TARGETS_CACHE_MS, else 300_000. */
  constructor(private readonly options: SecretSourceOptions = {}) {
    this.env = options.env ?? process.env;
    this.secretArn = this.env[ALERT_TARGETS_SECRET_ARN_ENV] || undefined;
    if (this.secretArn === undefined) return;
    this.fromSecret = new Refreshing({
      load: () => this.readSecret(this.secretArn!),
      cacheMs:
        options.cacheMs ??
        cacheMsFromEnv(this.env[ALERT_TARGETS_CACHE_MS_ENV], DEFAULT_ALERT_TARGETS_CACHE_MS),
      ...(options.now ? { now: options.now } : {}),
      keepStaleOn: (error) => (error as AlertReceiversError).reason === 'unreadable',
      onStale: (error, loadedAt) =>
        this.options.logger?.error(
          {
            secret: this.secretArn,
            code: errorCode(error),
            error: (error as Error).message,
            readAt: new Date(loadedAt).toISOString(),
          },
          `alert receivers not re-read (${(error as Error).message}); delivering to the ${this.parsed?.targets.length ?? 0} read at ${new Date(loadedAt).toISOString()}`,
        ),
    });
  }

  /** Where the receivers come from. */
  get origin(): 'secretsmanager' | 'env' | 'none' {
    if (this.secretArn !== undefined) return 'secretsmanager';
    return this.env.STREAMHEAL_ALERT_TARGETS || this.env.STREAMHEAL_ALERT_TARGETS_FILE
      ? 'env'
      : 'none';
  }

  /** The current receivers; throws AlertConfigError or AlertReceiversError (see the header). */
  async get(): Promise<readonly AlertTarget[]> {
    if (!this.fromSecret) return (this.fromEnv ??= alertTargetsFromEnv(this.env));
    if (this.env.STREAMHEAL_ALERT_TARGETS || this.env.STREAMHEAL_ALERT_TARGETS_FILE) {
      throw new AlertConfigError(
        `set ${ALERT_TARGETS_SECRET_ARN_ENV} or STREAMHEAL_ALERT_TARGETS / STREAMHEAL_ALERT_TARGETS_FILE, not both`,
      );
    }
    return this.fromSecret.get();
  }

  private async readSecret(arn: string): Promise<readonly AlertTarget[]> {
    this.client ??= this.options.secretsManager ?? secretsManagerClient();
    let text: string;
    try {
      text = await readSecretString(this.client, arn);
    } catch (error) {
      throw new AlertReceiversError(`alert receivers: ${(error as Error).message}`, 'unreadable', {
        cause: error,
      });
    }
    if (this.parsed?.text === text) return this.parsed.targets;
    const json = parseJsonQuietly(text);
    if (!json.ok) {
      throw new AlertReceiversError(
        `alert receivers in ${arn}: ${json.error}; expected a JSON list of receivers (docs/control-plane.md, "Targets")`,
        'malformed',
      );
    }
    let targets: AlertTarget[];
    try {
      targets = parseAlertTargets(json.value);
    } catch (error) {
      // parseAlertTargets names paths and rules, not values.
      throw new AlertReceiversError(
        `alert receivers in ${arn}: ${(error as Error).message}`,
        'malformed',
        {
          cause: error,
        },
      );
    }
    this.parsed = { text, targets };
    return targets;
  }

  /** Destroys a Secrets Manager client it made. */
  close(): void {
    if (!this.options.secretsManager) this.client?.destroy();
    this.client = undefined;
  }
}
