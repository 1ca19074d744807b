/**
 * Leader election on etcd with a lease-held key, so that exactly one orchestrator acts.
 *
 * Every candidate holds a lease of `leaseMs`, renewed every third of it. Campaigning is one
 * transaction: "if the leader key does not exist, put it (our id, on our lease)". The winner
 * leads for as long as the key exists with the create revision it got: that revision is the
 * term's number and fences its writes (the checkpoint is written only if the key still has it).
 * The others watch the key and try again the moment it is deleted: when the leader resigns
 * (it revokes its lease) or dies (etcd ends its lease `leaseMs` to `leaseMs` + ~0.5 s after its
 * last renewal).
 *
 * A leader steps down by itself, before etcd could end its lease, when a renewal is overdue:
 * if it has not renewed for `stepDownAfter` (0.8 x leaseMs, from the time the last successful
 * renewal was sent) it stops acting, revokes its lease if it can, and campaigns again with a
 * new one. So two leaders never act at once by the clocks of their own machines; a paused
 * process (SIGSTOP, a long GC) that comes back after its lease ended finds its term over at its
 * next check, and whatever it still writes is either fenced (checkpoint) or idempotent (the
 * functions key their effects on event ids).
 */
import { randomBytes } from 'node:crypto';
import type { IEvent } from 'etcd3';
import { errorCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/telemetry/logger.js';
import { sleep, type EtcdConnection } from '../../shared/store/etcd/connection.js';
import { Leases } from '../../shared/store/etcd/leases.js';
import { ResumableWatch } from '../../shared/store/etcd/watch.js';

export interface LeaderInfo {
  /** The candidate's id (unique per process start). */
  candidate: string;
  /** The orchestrator's name (STREAMHEAL_NODE_ID). */
  name: string;
  pid: number;
  /** Its status URL, when it serves one. */
  url?: string;
  /** When it was elected (ISO-8601). */
  since: string;
}

export interface Term {
  /** The leader key's create revision: grows with every election, fences the leader's writes. */
  readonly number: number;
  readonly lease: string;
  /** Date.now() when elected. */
  readonly since: number;
  /** Aborted when the term ends (deposed, resigned, lease lost, closed). */
  readonly signal: AbortSignal;
}

export interface ElectionOptions {
  connection: EtcdConnection;
  /** Full etcd key of the leader record. */
  key: string;
  name: string;
  url?: string;
  /** Lease TTL (ms); etcd rounds up to whole seconds and to its minimum. @default 2000 */
  leaseMs?: number;
  logger: Logger;
  onElected: (term: Term) => void;
  onDeposed: (term: Term, reason: string) => void;
}

export type Role = 'starting' | 'leader' | 'standby' | 'stopped';

export class LeaderElection {
  readonly candidate = randomBytes(9).toString('base64url');
  private readonly leases: Leases;
  private readonly leaseMs: number;
  private readonly renewEveryMs: number;
  private readonly stepDownAfterMs: number;
  private readonly keyBuffer: Buffer;
  private lease: string | undefined;
  /** Date.now() when the last successful renewal (or the grant) was sent. */
  private renewedAt = 0;
  private renewTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private renewing = false;
  private current: { term: Term; abort: AbortController } | undefined;
  private observed: LeaderInfo | undefined;
  private wake: (() => void) | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  private roleNow: Role = 'starting';

  constructor(private readonly options: ElectionOptions) {
    this.leases = new Leases(options.connection);
    this.leaseMs = options.leaseMs ?? 2_000;
    this.renewEveryMs = Math.max(100, Math.floor(this.leaseMs / 3));
    this.stepDownAfterMs = Math.floor(this.leaseMs * 0.8);
    this.keyBuffer = Buffer.from(options.key);
  }

  get role(): Role {
    return this.roleNow;
  }

  /** The current term while this candidate leads. */
  get term(): Term | undefined {
    return this.current?.term;
  }

  /** The leader as last seen (this candidate or another). */
  get leader(): LeaderInfo | undefined {
    return this.observed;
  }

  start(): void {
    if (this.running) return;
    this.watchdog = setInterval(() => this.checkOverdue(), 50);
    this.running = this.campaign();
  }

  /**
   * Whether `term` is still this candidate's, checked now: also false when its lease renewal
   * is overdue (which ends it). Called before every action of the leader, so a process that was
   * paused past its lease does nothing more as leader, whatever callback runs first on waking.
   */
  isLeading(term: Term): boolean {
    this.checkOverdue();
    return this.current?.term === term && !term.signal.aborted;
  }

  /**
   * Stops campaigning. A leader revokes its lease, which deletes the leader key, so a standby
   * takes over at once instead of after the lease ends.
   */
  async resign(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.roleNow = 'stopped';
    this.endTerm('resigned');
    this.wake?.();
    clearTimeout(this.renewTimer);
    clearInterval(this.watchdog);
    await this.running?.catch(() => undefined);
    const lease = this.lease;
    this.lease = undefined;
    if (lease) await this.leases.revoke(lease).catch(() => undefined);
    this.leases.close();
  }

  // ------------------------------------------------------------------ campaign

  private async campaign(): Promise<void> {
    for (let pause = 100; !this.stopped;) {
      try {
        const lease = await this.ensureLease();
        const outcome = await this.tryAcquire(lease);
        pause = 100;
        if (outcome.won) {
          await this.lead(outcome.revision, lease);
        } else {
          this.roleNow = 'standby';
          await this.waitForVacancy(outcome.revision);
        }
      } catch (error) {
        if (this.stopped) return;
        this.options.logger.warn({ err: error }, 'leader election: etcd did not answer; retrying');
        if (this.roleNow === 'leader') this.endTerm('etcd unreachable');
        await sleep(pause * (0.5 + Math.random() / 2));
        pause = Math.min(2_000, pause * 2);
      }
    }
  }

  /** One transaction: put the key on our lease if absent, else read who holds it. */
  private async tryAcquire(
    lease: string,
  ): Promise<{ won: true; revision: number } | { won: false; revision: number }> {
    const mine = (): LeaderInfo => ({
      candidate: this.candidate,
      name: this.options.name,
      pid: process.pid,
      ...(this.options.url ? { url: this.options.url } : {}),
      since: new Date().toISOString(),
    });
    const value = mine();
    const { connection } = this.options;
    return connection.call('leader campaign', async ({ options }) => {
      const response = await connection.client.kv.txn(
        {
          compare: [{ key: this.keyBuffer, target: 'Create', result: 'Equal', create_revision: 0 }],
          success: [
            {
              request_put: {
                key: this.keyBuffer,
                value: Buffer.from(JSON.stringify(value)),
                lease,
              },
            },
          ],
          failure: [{ request_range: { key: this.keyBuffer } }],
        },
        options,
      );
      const header = Number(response.header.revision);
      if (response.succeeded) {
        this.observed = value;
        return { won: true, revision: header };
      }
      const kv = response.responses[0]?.response_range.kvs[0];
      const holder = kv ? parseLeader(kv.value) : undefined;
      this.observed = holder;
      // An earlier try of ours that was applied, whose answer was lost.
      if (kv && holder?.candidate === this.candidate && String(kv.lease) === lease) {
        return { won: true, revision: Number(kv.create_revision) };
      }
      return { won: false, revision: header };
    });
  }

  /** Leads until the term ends; resolves then. */
  private async lead(revision: number, lease: string): Promise<void> {
    const abort = new AbortController();
    const term: Term = { number: revision, lease, since: Date.now(), signal: abort.signal };
    this.current = { term, abort };
    this.roleNow = 'leader';
    this.options.logger.info(
      { term: revision, leader: this.options.name },
      `elected leader (term ${revision})`,
    );
    // The key going away (lease ended, deleted by hand) ends the term at once.
    const watch = new ResumableWatch(this.options.connection, {
      prefix: this.options.key,
      startRevision: revision + 1,
      onEvents: (events) => {
        if (events.some((event) => gone(event, revision))) this.endTerm('leader key gone');
      },
      onBroken: () => void this.recheck(term),
    });
    try {
      this.options.onElected(term);
    } catch (error) {
      this.options.logger.error({ err: error }, 'onElected failed');
      this.endTerm('onElected failed');
    }
    try {
      await new Promise<void>((resolve) => {
        if (abort.signal.aborted) resolve();
        else abort.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      watch.close();
    }
  }

  /** The watch on our key broke: read it again. */
  private async recheck(term: Term): Promise<void> {
    try {
      const response = await this.options.connection.call('leader check', ({ options }) =>
        this.options.connection.client.kv.range({ key: this.keyBuffer }, options),
      );
      const kv = response.kvs[0];
      if (!kv || Number(kv.create_revision) !== term.number) this.endTerm('leader key gone');
    } catch {
      this.endTerm('leader key unreadable');
    }
  }

  /** Waits until the leader key is deleted (or a while passes: the caller tries again). */
  private async waitForVacancy(afterRevision: number): Promise<void> {
    const leader = this.observed;
    this.options.logger.debug(
      { leader: leader?.name },
      `standby: ${leader?.name ?? 'another orchestrator'} leads`,
    );
    await new Promise<void>((resolve) => {
      const finish = { done: () => {} };
      const watch = new ResumableWatch(this.options.connection, {
        prefix: this.options.key,
        startRevision: afterRevision + 1,
        onEvents: (events) => {
          if (events.some((event) => event.type === 'Delete')) finish.done();
        },
        onBroken: () => finish.done(),
      });
      const timer = setTimeout(() => finish.done(), Math.max(5_000, this.leaseMs * 3));
      finish.done = () => {
        clearTimeout(timer);
        watch.close();
        resolve();
      };
      this.wake = finish.done;
    });
    this.wake = undefined;
  }

  // ------------------------------------------------------------------ lease

  private async ensureLease(): Promise<string> {
    if (this.lease !== undefined) return this.lease;
    const sentAt = Date.now();
    const lease = await this.leases.grant(this.leaseMs);
    this.lease = lease;
    this.renewedAt = sentAt;
    this.scheduleRenewal();
    return lease;
  }

  private scheduleRenewal(delayMs = this.renewEveryMs): void {
    clearTimeout(this.renewTimer);
    if (this.stopped) return;
    this.renewTimer = setTimeout(() => void this.renew(), delayMs);
  }

  private async renew(): Promise<void> {
    const lease = this.lease;
    if (lease === undefined || this.renewing || this.stopped) return;
    this.renewing = true;
    const sentAt = Date.now();
    let failed = false;
    try {
      await this.leases.keepAlive(lease);
      if (this.lease === lease) this.renewedAt = sentAt;
    } catch (error) {
      failed = true;
      if (this.lease === lease && errorCode(error) === 'lease_expired') {
        this.options.logger.warn({ lease }, 'election lease expired');
        this.dropLease(lease, 'lease expired');
      }
    } finally {
      this.renewing = false;
    }
    this.checkOverdue();
    // After a failure, try again soon: the lease has little time left.
    if (this.lease !== undefined) this.scheduleRenewal(failed ? 100 : this.renewEveryMs);
  }

  private checkOverdue(): void {
    const lease = this.lease;
    if (lease === undefined || Date.now() - this.renewedAt < this.stepDownAfterMs) return;
    this.options.logger.warn(
      { lease, sinceRenewalMs: Date.now() - this.renewedAt },
      'election lease renewal overdue',
    );
    this.dropLease(lease, 'lease renewal overdue');
  }

  /** Forgets the lease (revoking it if etcd answers) and ends any term held on it. */
  private dropLease(lease: string, reason: string): void {
    if (this.lease !== lease) return;
    this.lease = undefined;
    clearTimeout(this.renewTimer);
    if (this.current?.term.lease === lease) this.endTerm(reason);
    void this.leases.revoke(lease).catch(() => undefined);
    this.wake?.();
  }

  private endTerm(reason: string): void {
    const current = this.current;
    if (!current) return;
    this.current = undefined;
    if (!this.stopped) this.roleNow = 'standby';
    this.options.logger.warn(
      { term: current.term.number, reason },
      `leadership ended (term ${current.term.number}): ${reason}`,
    );
    current.abort.abort(new Error(reason));
    try {
      this.options.onDeposed(current.term, reason);
    } catch (error) {
      this.options.logger.error({ err: error }, 'onDeposed failed');
    }
  }

  /** Ends the current term from outside (a fenced write found the key changed). */
  depose(term: Term, reason: string): void {
    if (this.current?.term === term) {
      const lease = term.lease;
      this.endTerm(reason);
      this.dropLease(lease, reason);
    }
  }
}

function gone(event: IEvent, revision: number): boolean {
  return event.type === 'Delete' || Number(event.kv.create_revision) !== revision;
}

function parseLeader(value: Buffer): LeaderInfo | undefined {
  try {
    const parsed = JSON.parse(value.toString()) as LeaderInfo;
    return typeof parsed.candidate === 'string' ? parsed : undefined;
  } catch {
    return undefined;
  }
}
