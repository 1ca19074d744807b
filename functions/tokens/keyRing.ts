/**
 * The key ring redirect tokens are signed with, from a secret:
 *   STREAMHEAL_TOKEN_KEYS             `kid:secret,kid:secret` (current first) or one bare secret
 *   STREAMHEAL_TOKEN_KEYS_SECRET_ARN  a Secrets Manager secret holding the same text (SecretString),
 *                                     or JSON `{ "keys": "kid:secret,…" }`; read through
 *                                     @aws-sdk/client-secrets-manager and cached
 *                                     (STREAMHEAL_TOKEN_KEYS_CACHE_MS, default 300,000)
 *   STREAMHEAL_CLUSTER_SECRET         fallback: the ring the gateways verify with
 * A rotation adds the new key first in the secret; cached rings pick it up within the cache
 * time, and tokens signed by the old key verify while it stays in the ring.
 */
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { StreamhealError } from '../../shared/errors.js';
import { keyRingFromSecret, type KeyRing } from '../../shared/tokens.js';
import type { Logger } from '../../shared/telemetry/logger.js';

export class KeyRingConfigError extends StreamhealError {
  constructor(message: string, options?: ErrorOptions) {
    super('key_ring_unavailable', message, options);
  }
}

export interface KeyRingSourceOptions {
  env?: NodeJS.ProcessEnv;
  /** @default a client from the SDK's usual configuration */
  secretsManager?: SecretsManagerClient;
  /** @default $STREAMHEAL_TOKEN_KEYS_CACHE_MS or 300_000 */
  cacheMs?: number;
  now?: () => number;
  logger?: Logger;
}

export class KeyRingSource {
  private readonly env: NodeJS.ProcessEnv;
  private readonly now: () => number;
  private readonly cacheMs: number;
  private cached?: { ring: KeyRing; at: number };
  private loading?: Promise<KeyRing>;
  private client?: SecretsManagerClient;

  constructor(private readonly options: KeyRingSourceOptions = {}) {
    this.env = options.env ?? process.env;
    this.now = options.now ?? Date.now;
    const fromEnv = Number(this.env.STREAMHEAL_TOKEN_KEYS_CACHE_MS);
    this.cacheMs =
      options.cacheMs ?? (Number.isFinite(fromEnv) && fromEnv >= 0 ? fromEnv : 300_000);
  }

  /** Where the ring comes from: `env`, `secretsmanager` or `cluster-secret`. */
  get origin(): 'env' | 'secretsmanager' | 'cluster-secret' {
    if (this.env.STREAMHEAL_TOKEN_KEYS) return 'env';
    if (this.env.STREAMHEAL_TOKEN_KEYS_SECRET_ARN) return 'secretsmanager';
    return 'cluster-secret';
  }

  async get(): Promise<KeyRing> {
    if (this.cached && this.now() - this.cached.at < this.cacheMs) return this.cached.ring;
    this.loading ??= this.load().finally(() => (this.loading = undefined));
    try {
      const ring = await this.loading;
      this.cached = { ring, at: this.now() };
      return ring;
    } catch (error) {
      // A secret that cannot be read right now: keep signing with the ring we had.
      if (this.cached) {
        this.options.logger?.warn(
          { err: error },
          'token key ring not refreshed; using the cached one',
        );
        return this.cached.ring;
      }
      throw error;
    }
  }

  private async load(): Promise<KeyRing> {
    const text = await this.secretText();
    try {
      return keyRingFromSecret(text);
    } catch (error) {
      throw new KeyRingConfigError(`token keys (${this.origin}): ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  private async secretText(): Promise<string> {
    switch (this.origin) {
      case 'env':
        return this.env.STREAMHEAL_TOKEN_KEYS!;
      case 'cluster-secret': {
        const secret = this.env.STREAMHEAL_CLUSTER_SECRET;
        if (!secret) {
          throw new KeyRingConfigError(
            'no token keys: set STREAMHEAL_TOKEN_KEYS, STREAMHEAL_TOKEN_KEYS_SECRET_ARN or STREAMHEAL_CLUSTER_SECRET',
          );
        }
        return secret;
      }
      case 'secretsmanager': {
        this.client ??= this.options.secretsManager ?? new SecretsManagerClient({});
        const arn = this.env.STREAMHEAL_TOKEN_KEYS_SECRET_ARN!;
        let answer;
        try {
          answer = await this.client.send(new GetSecretValueCommand({ SecretId: arn }));
        } catch (error) {
          throw new KeyRingConfigError(`reading ${arn}: ${(error as Error).message}`, {
            cause: error,
          });
        }
        const text = answer.SecretString;
        if (!text) throw new KeyRingConfigError(`${arn} has no SecretString`);
        if (text.trimStart().startsWith('{')) {
          const keys = (JSON.parse(text) as { keys?: unknown }).keys;
          if (typeof keys !== 'string') throw new KeyRingConfigError(`${arn}: JSON without "keys"`);
          return keys;
        }
        return text;
      }
    }
  }

  /** Destroys a Secrets Manager client it made. */
  close(): void {
    if (!this.options.secretsManager) this.client?.destroy();
  }
}
