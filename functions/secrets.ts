/**
 * Secrets the functions read by ARN at run time (never from a variable in clear): the text of a
 * Secrets Manager secret, and a cache that re-reads it after a while so a rotated or edited
 * secret takes effect without a redeploy. Used by the token key ring (tokens/keyRing.ts) and the
 * alert receivers (alerts/receivers.ts).
 *
 * Errors name the secret and what went wrong, never its value.
 */
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { StreamhealError } from '../shared/errors.js';
import type { Logger } from '../shared/telemetry/logger.js';

/** What a source read from a secret (the token key ring, the alert receivers) is built with. */
export interface SecretSourceOptions {
  env?: NodeJS.ProcessEnv;
  /** @default a client from the SDK's usual configuration (secretsManagerClient()) */
  secretsManager?: SecretsManagerClient;
  /** How long a read is kept. @default the source's own variable, else 300_000 */
  cacheMs?: number;
  now?: () => number;
  logger?: Logger;
}

/** Secrets Manager could not be asked, refused, or the secret holds no text. */
export class SecretUnavailableError extends StreamhealError {
  constructor(message: string, options?: ErrorOptions) {
    super('secret_unavailable', message, options);
  }
}

/**
 * A client from the SDK's usual configuration (region, credentials, AWS_ENDPOINT_URL_SECRETS_MANAGER),
 * with deadlines that fit a function's timeout: the SDK's default socket timeout is minutes.
 */
export function secretsManagerClient(): SecretsManagerClient {
  return new SecretsManagerClient({
    maxAttempts: 2,
    requestHandler: {
      connectionTimeout: 2_000,
      requestTimeout: 3_000,
      throwOnRequestTimeout: true,
    },
  });
}

/** The SecretString of the secret's current version. */
export async function readSecretString(
  client: SecretsManagerClient,
  secretId: string,
): Promise<string> {
  let answer;
  try {
    answer = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
  } catch (error) {
    throw new SecretUnavailableError(`reading ${secretId}: ${describeError(error)}`, {
      cause: error,
    });
  }
  const text = answer.SecretString;
  if (!text) throw new SecretUnavailableError(`${secretId} has no SecretString`);
  return text;
}

/** An error's message, or its code or name when it has none (Node's AggregateError). */
function describeError(error: unknown): string {
  const { message, code, name } = error as { message?: string; code?: string; name?: string };
  return message || code || name || String(error);
}

/**
 * A JSON parse error without the text it quotes: V8's messages repeat part of the input
 * (`Unexpected token 'h', "{"a": hunter2}" is not valid JSON`), which may be a secret.
 */
export function parseJsonQuietly(
  text: string,
): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    const position = /at position (\d+)/.exec((error as Error).message)?.[1];
    return {
      ok: false,
      error: `not valid JSON${position === undefined ? '' : ` (at character ${position})`}`,
    };
  }
}

export interface RefreshingOptions<T> {
  load: () => Promise<T>;
  /** How long a loaded value is used before it is loaded again. */
  cacheMs: number;
  now?: () => number;
  /**
   * Whether a failed reload keeps the last value (returned, and `onStale` told) instead of
   * failing. @default () => true
   */
  keepStaleOn?: (error: unknown) => boolean;
  onStale?: (error: unknown, loadedAt: number) => void;
}

/**
 * A value loaded on first use and again once it is older than `cacheMs`; concurrent callers
 * share one load. A value that was never loaded has nothing to fall back on: its error is thrown.
 */
export class Refreshing<T> {
  private readonly now: () => number;
  private cached?: { value: T; at: number };
  private loading?: Promise<T>;

  constructor(private readonly options: RefreshingOptions<T>) {
    this.now = options.now ?? Date.now;
  }

  async get(): Promise<T> {
    if (this.cached && this.now() - this.cached.at < this.options.cacheMs) return this.cached.value;
    this.loading ??= this.options.load().finally(() => (this.loading = undefined));
    try {
      const value = await this.loading;
      this.cached = { value, at: this.now() };
      return value;
    } catch (error) {
      if (this.cached && (this.options.keepStaleOn?.(error) ?? true)) {
        this.options.onStale?.(error, this.cached.at);
        return this.cached.value;
      }
      throw error;
    }
  }
}

/** A cache time from a variable (milliseconds, 0 or more), else `fallback`. */
export function cacheMsFromEnv(value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}
