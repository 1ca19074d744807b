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
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { StreamhealError } from '../../shared/errors.js';
import { keyRingFromSecret, type KeyRing } from '../../shared/tokens.js';
import {
  cacheMsFromEnv,
  parseJsonQuietly,
  readSecretString,
  Refreshing,
  secretsManagerClient,
  type SecretSourceOptions,
} from '../secrets.js';

export class KeyRingConfigError extends StreamhealError {
  constructor(message: string, options?: ErrorOptions) {
    super('key_ring_unavailable', message, options);
  }
}

export class KeyRingSource {
  private readonly env: NodeJS.ProcessEnv;
  private readonly ring: Refreshing<KeyRing>;
  private client?: SecretsManagerClient;

  /** `cacheMs` defaults to $STREAMHEAL_TOKEN_KEYS_CACHE_MS, else 300_000. */
  constructor(private readonly options: SecretSourceOptions = {}) {
    this.env = options.env ?? process.env;
    this.ring = new Refreshing({
      load: () => this.load(),
      cacheMs: options.cacheMs ?? cacheMsFromEnv(this.env.STREAMHEAL_TOKEN_KEYS_CACHE_MS, 300_000),
      ...(options.now ? { now: options.now } : {}),
      // A secret that cannot be read right now: keep signing with the ring we had.
      onStale: (error) =>
        this.options.logger?.warn(
          { err: error },
          'token key ring not refreshed; using the cached one',
        ),
    });
  }

  /** Where the ring comes from: `env`, `secretsmanager` or `cluster-secret`. */
  get origin(): 'env' | 'secretsmanager' | 'cluster-secret' {
    if (this.env.STREAMHEAL_TOKEN_KEYS) return 'env';
    if (this.env.STREAMHEAL_TOKEN_KEYS_SECRET_ARN) return 'secretsmanager';
    return 'cluster-secret';
  }

  get(): Promise<KeyRing> {
    return this.ring.get();
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
        this.client ??= this.options.secretsManager ?? secretsManagerClient();
        const arn = this.env.STREAMHEAL_TOKEN_KEYS_SECRET_ARN!;
        let text;
        try {
          text = await readSecretString(this.client, arn);
        } catch (error) {
          throw new KeyRingConfigError((error as Error).message, { cause: error });
        }
        if (text.trimStart().startsWith('{')) {
          // Quietly: a syntax error's message would quote the keys.
          const parsed = parseJsonQuietly(text);
          if (!parsed.ok) throw new KeyRingConfigError(`${arn}: ${parsed.error}`);
          const keys = (parsed.value as { keys?: unknown } | null)?.keys;
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
