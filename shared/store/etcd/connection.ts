/**
 * One etcd client with the fault handling streamheal needs: every operation has a deadline,
 * transient failures (no leader, leader changed, a member down, a timed-out attempt) are retried
 * on another member until the operation's time budget runs out, and then surface as
 * StoreUnavailableError naming the endpoints and the last cause. Nothing hangs.
 *
 * etcd3's own policies are replaced: its global retry would re-send writes we cannot tell apart
 * from the first attempt, and its default circuit breaker keeps a member out for 5 s and its
 * watch backoff grows to 30 s, both far slower to recover than we want. Callers that write
 * make their retries safe themselves (a nonce in the value, checked when a compare fails).
 */
import { Etcd3, isRecoverableError, type IOptions } from 'etcd3';
import type { CallOptions } from '@grpc/grpc-js';
import { StoreUnavailableError, StreamhealError } from '../../errors.js';

export interface EtcdConnectionOptions {
  /** Client URLs of the members, e.g. `['http://127.0.0.1:2379']` (`https://` turns on TLS). */
  endpoints: string[];
  /**
   * Time budget of one store operation, retries included (ms). A leader election must fit in
   * it for writes to ride through one without an error: etcd's default election timeout is 1 s.
   * @default 3000
   */
  timeoutMs?: number;
  /**
   * Deadline of one attempt (ms); a member that does not answer in time is tried again. A
   * request forwarded to a leader that just died is never answered, so this bounds the pause
   * of a leader change as much as the election does.
   * @default timeoutMs / 4, between 250 and 1000
   */
  attemptTimeoutMs?: number;
  /** etcd's `--max-request-bytes` (batches and single values are kept below it). @default 1572864 */
  maxRequestBytes?: number;
  auth?: { username: string; password: string };
  /** TLS material for `https://` endpoints. */
  tls?: { ca: Buffer; key?: Buffer; cert?: Buffer };
}

/** Settings of an attempt, passed to each try of an operation. */
export interface Attempt {
  /** gRPC call options carrying this attempt's deadline. */
  readonly options: CallOptions;
  /** Whether an earlier attempt of the same operation failed in a way that may have applied it. */
  readonly ambiguous: boolean;
}

const DEFAULT_TIMEOUT_MS = 3_000;
/** A member that failed is skipped this long, so retries go to the others first. */
const HOST_SKIP_MS = 500;
const RETRY_BASE_MS = 25;
const RETRY_MAX_MS = 250;

/** A failure that says nothing about etcd's state: try again (on another member). */
export class TransientError extends Error {}

class AttemptTimeoutError extends TransientError {}

/** Thrown in place of a call to a member that failed a moment ago; never reaches callers. */
class MemberSkippedError extends TransientError {}

export class EtcdConnection {
  readonly client: Etcd3;
  readonly timeoutMs: number;
  readonly attemptTimeoutMs: number;
  readonly maxRequestBytes: number;
  private readonly where: string;
  private closed = false;

  constructor(options: EtcdConnectionOptions) {
    if (!Array.isArray(options.endpoints) || options.endpoints.length === 0) {
      throw new StreamhealError('invalid_argument', 'etcd needs at least one endpoint');
    }
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.attemptTimeoutMs =
      options.attemptTimeoutMs ?? Math.min(1_000, Math.max(250, this.timeoutMs / 4));
    this.maxRequestBytes = options.maxRequestBytes ?? 1_572_864;
    this.where = `etcd at ${options.endpoints.join(', ')}`;
    const clientOptions: IOptions = {
      hosts: options.endpoints,
      grpcOptions: {
        // etcd may answer a large range in one message; gRPC's default cap is 4 MiB.
        'grpc.max_receive_message_length': 256 * 1024 * 1024,
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
        // Finds a member that vanished without a reset (power loss, cut cable) under a watch.
        // etcd refuses pings more often than its --grpc-keepalive-min-time (5 s).
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
      },
      faultHandling: {
        host: () => memberBreaker(),
        global: passThrough,
        watchBackoff: cappedBackoff(100, 2_000),
      },
    };
    if (options.auth) clientOptions.auth = options.auth;
    if (options.tls) {
      clientOptions.credentials = {
        rootCertificate: options.tls.ca,
        ...(options.tls.key ? { privateKey: options.tls.key } : {}),
        ...(options.tls.cert ? { certChain: options.tls.cert } : {}),
      };
    }
    this.client = new Etcd3(clientOptions);
  }

  /**
   * Runs `attempt` until it succeeds, fails for good, or the time budget is spent. Transient
   * failures are retried with a short backoff; the last one becomes a StoreUnavailableError.
   */
  async call<T>(what: string, attempt: (attempt: Attempt) => Promise<T>): Promise<T> {
    this.checkOpen();
    const deadline = Date.now() + this.timeoutMs;
    let ambiguous = false;
    let tries = 0;
    for (;;) {
      const remaining = deadline - Date.now();
      const budget = Math.max(1, Math.min(this.attemptTimeoutMs, remaining));
      try {
        return await withTimeout(
          attempt({ options: { deadline: Date.now() + budget }, ambiguous }),
          budget + 50,
        );
      } catch (error) {
        this.checkOpen();
        if (!isTransient(error)) throw this.translate(error, what);
        // Only a refused or skipped connection proves the request never reached etcd.
        if (!(error instanceof MemberSkippedError) && !refusedConnection(error)) ambiguous = true;
        tries++;
        const pause = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(tries, 4));
        if (Date.now() + pause >= deadline) {
          throw new StoreUnavailableError(
            `${this.where} did not complete ${what} within ${this.timeoutMs} ms ` +
              `(${tries} attempts; last: ${describe(error)})`,
            { cause: error },
          );
        }
        await sleep(pause * (0.5 + Math.random() / 2));
      }
    }
  }

  /**
   * etcd's current revision, by the cheapest linearizable read there is: a count of `key`
   * (any key will do; callers name one they are allowed to read).
   */
  async currentRevision(key: string): Promise<number> {
    const response = await this.call('revision check', ({ options }) =>
      this.client.kv.range({ key: Buffer.from(key), count_only: true }, options),
    );
    return Number(response.header.revision);
  }

  checkOpen(): void {
    if (this.closed) throw new StoreUnavailableError('etcd client closed');
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }

  /** Turns a non-transient etcd failure into the port's errors. */
  private translate(error: unknown, what: string): Error {
    if (error instanceof StreamhealError) return error;
    const message = describe(error);
    if (/database space exceeded/.test(message)) {
      return new StoreUnavailableError(
        `${this.where} is out of space (NOSPACE alarm) during ${what}: compact, defragment and ` +
          `disarm the alarm (docs/etcd.md, "Limits")`,
        { cause: error },
      );
    }
    if (/request is too large/.test(message)) {
      return new StreamhealError('too_large', `${what}: request larger than etcd accepts`, {
        cause: error,
      });
    }
    return new StoreUnavailableError(`${this.where} refused ${what}: ${message}`, { cause: error });
  }
}

export function isTransient(error: unknown): boolean {
  if (error instanceof TransientError) return true;
  if (!(error instanceof Error)) return false;
  // ResourceExhausted is marked recoverable by etcd3, but a full database does not heal by retrying.
  if (/database space exceeded/.test(error.message)) return false;
  return (
    isRecoverableError(error) ||
    /etcdserver: (request timed out|leader changed|no leader|too many requests)/.test(error.message)
  );
}

/** Whether the failure happened before any byte reached etcd (safe to treat as not applied). */
function refusedConnection(error: unknown): boolean {
  return error instanceof Error && /ECONNREFUSED|No connection established/.test(error.message);
}

function describe(error: unknown): string {
  if (error instanceof TransientError) return error.message;
  if (error instanceof Error) return `${error.constructor.name}: ${error.message}`;
  return String(error);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new AttemptTimeoutError(`no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// Minimal fault-handling policies in the shape etcd3 expects (cockatiel's IPolicy), so we need no
// direct dependency on cockatiel.

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
type Backoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>;

const noEvent = () => ({ dispose: () => {} });

function policy(execute: <T>(fn: () => PromiseLike<T> | T) => Promise<T>): Policy {
  return {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: (fn: (context: { signal: AbortSignal }) => unknown) =>
      execute(() => fn({ signal: new AbortController().signal })),
  } as unknown as Policy;
}

/** Calls straight through: our `call` loop does the retrying. */
const passThrough = policy(async (fn) => fn());

/** After a transient failure the member is skipped briefly; etcd3 then tries the next one. */
function memberBreaker(): Policy {
  let skipUntil = 0;
  return policy(async (fn) => {
    if (Date.now() < skipUntil) throw new MemberSkippedError('member skipped after a failure');
    try {
      const result = await fn();
      skipUntil = 0;
      return result;
    } catch (error) {
      if (error instanceof Error && isRecoverableError(error))
        skipUntil = Date.now() + HOST_SKIP_MS;
      throw error;
    }
  });
}

/** Doubling backoff for watch reconnects, capped low so a watch resumes soon after recovery. */
function cappedBackoff(initialMs: number, maxMs: number): Backoff {
  const make = (ms: number): { duration: number; next: () => unknown } => ({
    duration: ms * (0.5 + Math.random() / 2),
    next: () => make(Math.min(maxMs, ms * 2)),
  });
  return { next: () => make(initialMs) } as unknown as Backoff;
}
