/**
 * etcd leases, three ways:
 * - node leases (grantLease / keepAlive / revokeLease) map one to one onto etcd leases; renewals
 *   go over one shared LeaseKeepAlive stream;
 * - TTL records share a lease per second of expiry, so a burst of single-use token ids costs one
 *   grant, not one per key; a record never expires before its TTL (up to ~1.5 s after);
 * - message history and bus events hang on a rotating lease that outlives its window by the
 *   retention, so idle data is removed by etcd itself without a sweeper.
 *
 * etcd counts TTLs in whole seconds and enforces a minimum (1.5 x the election timeout, rounded
 * up), and its lessor looks for expired leases every 500 ms: a lease ends between its TTL and
 * roughly one second later.
 */
import type { IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';
import { castGrpcError, EtcdLeaseInvalidError } from 'etcd3';
import { LeaseExpiredError } from '../../errors.js';
import { checkPositive } from '../checks.js';
import { TransientError, type EtcdConnection } from './connection.js';

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

interface Waiter {
  resolve: (ttlSeconds: number) => void;
  reject: (error: Error) => void;
}

export function ttlSeconds(ttlMs: number): number {
  return Math.max(1, Math.ceil(checkPositive(ttlMs, 'ttlMs') / 1_000));
}

/** A lease id as etcd wants it, or LeaseExpiredError for anything that cannot be one. */
export function leaseId(lease: string): string {
  if (!/^[1-9]\d{0,18}$/.test(lease)) throw new LeaseExpiredError(lease);
  return lease;
}

export class Leases {
  private stream: Promise<KeepAliveStream> | undefined;
  private readonly waiting = new Map<string, Waiter[]>();

  constructor(private readonly connection: EtcdConnection) {}

  async grant(ttlMs: number): Promise<string> {
    const TTL = ttlSeconds(ttlMs);
    const response = await this.connection.call('lease grant', ({ options }) =>
      this.connection.client.leaseClient.leaseGrant({ TTL }, options),
    );
    return response.ID;
  }

  /** Renews the lease by its TTL; LeaseExpiredError when etcd no longer has it. */
  async keepAlive(lease: string): Promise<void> {
    const ID = leaseId(lease);
    const ttl = await this.connection.call('lease keep-alive', ({ options }) =>
      this.renewOnce(ID, Number(options.deadline)),
    );
    if (ttl <= 0) throw new LeaseExpiredError(lease);
  }

  /** Ends the lease and deletes its keys; a lease already gone is not an error. */
  async revoke(lease: string): Promise<void> {
    const ID = leaseId(lease);
    await this.connection.call('lease revoke', async ({ options }) => {
      try {
        await this.connection.client.leaseClient.leaseRevoke({ ID }, options);
      } catch (error) {
        if (!(error instanceof EtcdLeaseInvalidError)) throw error;
      }
    });
  }

  close(): void {
    this.dropStream(new TransientError('lease stream closed'));
  }

  /** One request on the shared stream; etcd answers each in order, TTL 0 for an unknown lease. */
  private async renewOnce(ID: string, deadline: number): Promise<number> {
    const stream = await this.openStream();
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          // A stream that went quiet is replaced; the next try opens a new one.
          this.dropStream(new TransientError('lease keep-alive got no answer in time'));
        },
        Math.max(1, deadline - Date.now() - 10),
      );
      const queue = this.waiting.get(ID) ?? [];
      queue.push({
        resolve: (ttl) => {
          clearTimeout(timer);
          resolve(ttl);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.waiting.set(ID, queue);
      stream.write({ ID });
    });
  }

  private openStream(): Promise<KeepAliveStream> {
    if (this.stream !== undefined) return this.stream;
    const opening = this.connection.client.leaseClient.leaseKeepAlive().then((stream) => {
      const fail = (error: Error) => {
        if (this.stream === opening) this.dropStream(error);
      };
      stream.on('data', (response) => {
        const queue = this.waiting.get(response.ID);
        const waiter = queue?.shift();
        if (queue?.length === 0) this.waiting.delete(response.ID);
        waiter?.resolve(Number(response.TTL));
      });
      stream.on('error', (error) => fail(castGrpcError(error)));
      stream.on('end', () => fail(new TransientError('lease keep-alive stream ended')));
      return stream;
    });
    opening.catch(() => {
      if (this.stream === opening) this.stream = undefined;
    });
    this.stream = opening;
    return opening;
  }

  private dropStream(error: Error): void {
    const stream = this.stream;
    this.stream = undefined;
    void stream?.then((s) => s.cancel()).catch(() => {});
    const waiters = [...this.waiting.values()].flat();
    this.waiting.clear();
    for (const waiter of waiters) waiter.reject(error);
  }
}

/**
 * Leases for TTL records, one per second of expiry. A record put at `now` with `ttlMs` gets the
 * lease of second ceil((now + ttlMs) / 1000), granted to last at least until that second ends.
 */
export class TtlLeases {
  private readonly bySecond = new Map<number, Promise<string>>();

  constructor(private readonly leases: Leases) {}

  leaseFor(ttlMs: number): Promise<string> {
    ttlSeconds(ttlMs);
    const now = Date.now();
    const second = Math.ceil((now + ttlMs) / 1_000);
    this.prune(now);
    let lease = this.bySecond.get(second);
    if (lease === undefined) {
      lease = this.leases.grant(second * 1_000 - now);
      lease.catch(() => this.bySecond.delete(second));
      this.bySecond.set(second, lease);
    }
    return lease;
  }

  /** Forgets a lease etcd no longer has (e.g. revoked by hand). */
  forget(lease: string): void {
    for (const [second, promise] of this.bySecond) {
      void promise.then((id) => id === lease && this.bySecond.delete(second)).catch(() => {});
    }
  }

  private prune(now: number): void {
    for (const second of this.bySecond.keys()) {
      if (second * 1_000 <= now) this.bySecond.delete(second);
    }
  }
}

/**
 * A lease shared by everything written during one window, lasting `lifetimeMs` past the end of
 * that window: keys attached to it live at least `lifetimeMs`, at most lifetime + 2 windows + 1.5 s.
 */
export class RotatingLease {
  private current: { lease: Promise<string>; until: number } | undefined;
  private readonly windowMs: number;

  constructor(
    private readonly leases: Leases,
    private readonly lifetimeMs: number,
  ) {
    this.windowMs = Math.min(60_000, Math.max(1_000, lifetimeMs / 10));
  }

  get(): Promise<string> {
    const now = Date.now();
    if (this.current === undefined || now >= this.current.until) {
      const lease = this.leases.grant(this.lifetimeMs + 2 * this.windowMs);
      const entry = { lease, until: now + this.windowMs };
      lease.catch(() => {
        if (this.current === entry) this.current = undefined;
      });
      this.current = entry;
    }
    return this.current.lease;
  }

  /** Drops the current lease when etcd says it is gone. */
  forget(): void {
    this.current = undefined;
  }
}
