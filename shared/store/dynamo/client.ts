/**
 * The DynamoDB client the store uses, and one `send` that every call goes through.
 *
 * - Timeouts: a connection timeout and a request timeout on the HTTP handler (the SDK only
 *   warns on a request timeout unless `throwOnRequestTimeout` is set), and a deadline for the
 *   whole operation, retries included, as an AbortSignal. No call waits forever.
 * - Retries: our own RetryStrategyV2 on shared/backoff.ts (full jitter, a longer base for
 *   throttling, a small cap so a store outage is reported in about a second, not after the
 *   SDK's 20 s cap), with a retry budget so an outage does not turn into a retry storm.
 *   Throttling, transient network errors and 5xx are retried; everything else is not.
 * - Errors: a conditional check failure is passed through for the caller to interpret; the
 *   rest become StoreUnavailableError (cannot reach, timed out, throttled past the retries,
 *   missing table) or StreamhealError 'invalid_argument' (DynamoDB refused the request as
 *   invalid, e.g. an item over 400 KB), with the SDK error as `cause`.
 * - Endpoint and region: when none is given, the SDK resolves them itself, which includes
 *   AWS_ENDPOINT_URL_DYNAMODB and AWS_ENDPOINT_URL (SDK v3 service-specific endpoints).
 */
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { fullJitterBackoff, type BackoffOptions } from '../../backoff.js';
import { StoreUnavailableError, StreamhealError } from '../../errors.js';

export interface DynamoClientOptions {
  /** @default the SDK's resolution (AWS_REGION, profile) */
  region?: string;
  /** @default the SDK's resolution (AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL, AWS) */
  endpoint?: string;
  /** @default the SDK's default credential chain */
  credentials?: DynamoDBClientConfig['credentials'];
  /** Time to open a TCP/TLS connection. @default 1000 */
  connectionTimeoutMs?: number;
  /** Time for one HTTP attempt once connected. @default 1000 */
  requestTimeoutMs?: number;
  /** Attempts per call, the first included. @default 4 */
  maxAttempts?: number;
  /** Backoff between attempts. @default STORE_RETRY_BACKOFF */
  backoff?: BackoffOptions;
  /** Backoff after a throttling answer. @default STORE_THROTTLE_BACKOFF */
  throttleBackoff?: BackoffOptions;
}

/** 25, 50, 100 ms envelopes (full jitter), capped at 1 s. */
export const STORE_RETRY_BACKOFF: BackoffOptions = {
  baseMs: 25,
  capMs: 1_000,
  jitter: 0,
  floorMs: 5,
};
/** Throttling: 100, 200, 400 ms envelopes, capped at 2 s; DynamoDB needs time to adapt. */
export const STORE_THROTTLE_BACKOFF: BackoffOptions = {
  baseMs: 100,
  capMs: 2_000,
  jitter: 0,
  floorMs: 20,
};

export const DEFAULT_CLIENT_OPTIONS = {
  connectionTimeoutMs: 1_000,
  requestTimeoutMs: 1_000,
  maxAttempts: 4,
} as const;

/** What the store counts about its calls (exposed by DynamoStore.stats()). */
export interface CallStats {
  calls: number;
  retries: number;
  throttled: number;
  failures: number;
}

type RetryStrategyV2 = Extract<
  NonNullable<DynamoDBClientConfig['retryStrategy']>,
  { acquireInitialRetryToken: unknown }
>;
type RetryToken = Awaited<ReturnType<RetryStrategyV2['acquireInitialRetryToken']>>;
type RetryErrorInfo = Parameters<RetryStrategyV2['refreshRetryTokenForRetry']>[1];

/**
 * A retry budget shared by all calls (the SDK's standard figures): a retry costs 5, a retry
 * after a timeout 10, a success refunds; once it is spent, failures are not retried, so an
 * outage fails fast instead of multiplying the load.
 */
const RETRY_BUDGET = 500;
const RETRY_COST = 5;
const TIMEOUT_RETRY_COST = 10;

/**
 * RetryStrategyV2 for the SDK's retry middleware: the token carries the delay and the
 * middleware sleeps it (racing the call's AbortSignal, so a deadline cuts the wait short).
 */
export class StoreRetryStrategy implements RetryStrategyV2 {
  private budget = RETRY_BUDGET;

  constructor(
    private readonly maxAttempts: number,
    private readonly backoff: BackoffOptions,
    private readonly throttleBackoff: BackoffOptions,
    private readonly stats: CallStats,
  ) {}

  async acquireInitialRetryToken(): Promise<RetryToken> {
    return token(0, 0, 0);
  }

  async refreshRetryTokenForRetry(previous: RetryToken, info: RetryErrorInfo): Promise<RetryToken> {
    const type = info.errorType;
    if (type === 'THROTTLING') this.stats.throttled++;
    const retryable = type === 'THROTTLING' || type === 'TRANSIENT' || type === 'SERVER_ERROR';
    const attempt = previous.getRetryCount() + 1;
    const cost = isTimeout(info.error) ? TIMEOUT_RETRY_COST : RETRY_COST;
    if (!retryable || attempt >= this.maxAttempts || this.budget < cost) {
      throw new Error('no retry');
    }
    this.budget -= cost;
    this.stats.retries++;
    const options = type === 'THROTTLING' ? this.throttleBackoff : this.backoff;
    return token(attempt, fullJitterBackoff(attempt - 1, options), cost);
  }

  recordSuccess(used: RetryToken): void {
    const cost = (used as { cost?: number }).cost ?? 0;
    this.budget = Math.min(RETRY_BUDGET, this.budget + Math.max(1, cost));
  }
}

function token(count: number, delay: number, cost: number): RetryToken {
  return {
    getRetryCount: () => count,
    getRetryDelay: () => delay,
    cost,
  } as RetryToken;
}

function isTimeout(error: unknown): boolean {
  const e = error as { name?: string; code?: string } | undefined;
  return e?.name === 'TimeoutError' || e?.code === 'ETIMEDOUT';
}

export function createDynamoClient(options: DynamoClientOptions, stats: CallStats): DynamoDBClient {
  const maxAttempts = options.maxAttempts ?? DEFAULT_CLIENT_OPTIONS.maxAttempts;
  const config: DynamoDBClientConfig = {
    maxAttempts,
    retryStrategy: new StoreRetryStrategy(
      maxAttempts,
      options.backoff ?? STORE_RETRY_BACKOFF,
      options.throttleBackoff ?? STORE_THROTTLE_BACKOFF,
      stats,
    ),
    requestHandler: {
      connectionTimeout: options.connectionTimeoutMs ?? DEFAULT_CLIENT_OPTIONS.connectionTimeoutMs,
      requestTimeout: options.requestTimeoutMs ?? DEFAULT_CLIENT_OPTIONS.requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  };
  if (options.region !== undefined) config.region = options.region;
  if (options.endpoint !== undefined) config.endpoint = options.endpoint;
  if (options.credentials !== undefined) config.credentials = options.credentials;
  return new DynamoDBClient(config);
}

/** A command the DynamoDB client can send (kept loose: the store builds its own inputs). */
export interface Sendable {
  readonly input: object;
}

/** True for DynamoDB's answer to a failed ConditionExpression. */
export function isConditionFailure(error: unknown): error is { Item?: Record<string, unknown> } {
  return (error as { name?: string } | undefined)?.name === 'ConditionalCheckFailedException';
}

/**
 * Sends commands with a deadline and turns failures into store errors. `closing` aborts
 * whatever is in flight when the store closes.
 */
export class DynamoCaller {
  constructor(
    readonly client: DynamoDBClient,
    private readonly operationTimeoutMs: number,
    private readonly closing: AbortSignal,
    private readonly stats: CallStats,
  ) {}

  /** `what` names the operation in error messages, e.g. "append to news". */
  async send<T>(command: Sendable, what: string): Promise<T> {
    if (this.closing.aborted) throw new StoreUnavailableError('DynamoDB store closed');
    this.stats.calls++;
    const deadline = AbortSignal.timeout(this.operationTimeoutMs);
    const abortSignal = AbortSignal.any([deadline, this.closing]);
    try {
      // The SDK's send is typed per command; the store's commands are all DynamoDB ones.
      return (await this.client.send(command as never, { abortSignal })) as T;
    } catch (error) {
      if (isConditionFailure(error)) throw error;
      this.stats.failures++;
      throw this.translate(error, what, deadline.aborted);
    }
  }

  private translate(error: unknown, what: string, timedOut: boolean): Error {
    if (this.closing.aborted) {
      return new StoreUnavailableError(`DynamoDB store closed during ${what}`, { cause: error });
    }
    const e = (error ?? {}) as {
      name?: string;
      message?: string;
      code?: string;
      $metadata?: { attempts?: number; httpStatusCode?: number };
    };
    const name = e.name ?? 'Error';
    const attempts = e.$metadata?.attempts;
    const tries = attempts !== undefined && attempts > 1 ? ` after ${attempts} attempts` : '';
    if (timedOut || name === 'AbortError') {
      return new StoreUnavailableError(
        `DynamoDB did not answer ${what} within ${this.operationTimeoutMs} ms`,
        { cause: error },
      );
    }
    if (name === 'ValidationException' || name === 'SerializationException') {
      return new StreamhealError(
        'invalid_argument',
        `DynamoDB refused ${what}: ${e.message ?? name}`,
        { cause: error },
      );
    }
    if (name === 'ResourceNotFoundException') {
      return new StoreUnavailableError(
        `DynamoDB table missing for ${what} (${e.message ?? name}); create the tables ` +
          '(DynamoStore createTables(), or deploy the stack) or check the table names',
        { cause: error },
      );
    }
    const code = e.code !== undefined ? ` ${e.code}` : '';
    return new StoreUnavailableError(
      `DynamoDB unavailable for ${what}${tries}: ${name}${code}: ${e.message ?? ''}`.trim(),
      { cause: error },
    );
  }
}
