/**
 * Records on etcd: one key each under `<prefix>rec/`, the record's version is the key's
 * mod_revision (it grows on every write and, unlike etcd's per-key version, keeps growing when a
 * key is deleted and written again). Conditional writes are transactions comparing
 * mod_revision (0 for "absent"). The stored value carries the writer's nonce, so a write whose
 * answer was lost and that is sent again is recognised as ours instead of failing its compare.
 */
import { randomBytes } from 'node:crypto';
import type { IKeyValue, ITxnResponse } from 'etcd3';
import { EtcdLeaseInvalidError } from 'etcd3';
import { ConditionFailedError, LeaseExpiredError, StreamhealError } from '../../errors.js';
import { checkKey } from '../checks.js';
import { Mailbox } from '../Mailbox.js';
import {
  byKey,
  type PutOptions,
  type RecordWatchEvent,
  type StoredRecord,
  type Watch,
} from '../StateStore.js';
import { sleep, type EtcdConnection } from './connection.js';
import { prefixEnd, type KeyLayout } from './keys.js';
import { leaseId, ttlSeconds, type TtlLeases } from './leases.js';
import { ResumableWatch } from './watch.js';

interface Envelope {
  /** Nonce of the write. */
  w: string;
  v?: unknown;
}

export interface RecordsOptions {
  connection: EtcdConnection;
  keys: KeyLayout;
  ttlLeases: TtlLeases;
  onListenerError: (error: unknown) => void;
  onBackgroundError: (error: unknown, what: string) => void;
}

export class Records {
  private readonly connection: EtcdConnection;
  private readonly keys: KeyLayout;
  private readonly watchers = new Set<RecordWatcher>();

  constructor(private readonly options: RecordsOptions) {
    this.connection = options.connection;
    this.keys = options.keys;
  }

  async get<T>(key: string): Promise<StoredRecord<T> | undefined> {
    const response = await this.connection.call(`get of ${key}`, ({ options }) =>
      this.connection.client.kv.range({ key: Buffer.from(this.keys.record(key)) }, options),
    );
    const kv = response.kvs[0];
    return kv === undefined ? undefined : (this.toRecord(kv) as StoredRecord<T>);
  }

  async put(key: string, value: unknown, options: PutOptions = {}): Promise<number> {
    checkKey(key);
    if (options.lease !== undefined && options.ttlMs !== undefined) {
      throw new StreamhealError(
        'invalid_argument',
        'etcd attaches one lease per key: give a record a lease or a ttlMs, not both',
      );
    }
    if (options.ttlMs !== undefined) ttlSeconds(options.ttlMs);
    const nodeLease = options.lease === undefined ? undefined : leaseId(options.lease);
    const nonce = randomBytes(9).toString('base64url');
    const json = JSON.stringify(value);
    const body = Buffer.from(`{"w":"${nonce}"${json === undefined ? '' : `,"v":${json}`}}`);
    if (body.length > this.connection.maxRequestBytes - 4_096) {
      throw new StreamhealError('too_large', `record ${key} is over etcd's request limit`);
    }
    const etcdKey = Buffer.from(this.keys.record(key));
    for (let round = 0; ; round++) {
      const lease =
        options.ttlMs === undefined
          ? nodeLease
          : await this.options.ttlLeases.leaseFor(options.ttlMs);
      const outcome = await this.connection.call(`put of ${key}`, async ({ options: call }) => {
        let response: ITxnResponse;
        try {
          response = await this.connection.client.kv.txn(
            {
              compare:
                options.ifVersion === undefined
                  ? []
                  : [
                      {
                        key: etcdKey,
                        target: 'Mod',
                        result: 'Equal',
                        mod_revision: options.ifVersion,
                      },
                    ],
              success: [{ request_put: { key: etcdKey, value: body, lease: lease ?? 0 } }],
              failure: [{ request_range: { key: etcdKey } }],
            },
            call,
          );
        } catch (error) {
          if (!(error instanceof EtcdLeaseInvalidError)) throw error;
          if (options.lease !== undefined) throw new LeaseExpiredError(options.lease);
          return 'ttl-lease-gone' as const;
        }
        if (response.succeeded) return Number(response.header.revision);
        const current = response.responses[0]?.response_range.kvs[0];
        // Our own earlier attempt, applied before its answer was lost.
        if (current !== undefined && parse(current).w === nonce)
          return Number(current.mod_revision);
        throw new ConditionFailedError(key);
      });
      if (outcome !== 'ttl-lease-gone') return outcome;
      this.options.ttlLeases.forget(lease as string);
      if (round >= 2) throw new LeaseExpiredError(lease as string);
    }
  }

  async delete(key: string, options: { ifVersion?: number } = {}): Promise<boolean> {
    const etcdKey = Buffer.from(this.keys.record(key));
    return this.connection.call(`delete of ${key}`, async ({ options: call, ambiguous }) => {
      const response = await this.connection.client.kv.txn(
        {
          compare:
            options.ifVersion === undefined
              ? []
              : [{ key: etcdKey, target: 'Mod', result: 'Equal', mod_revision: options.ifVersion }],
          success: [{ request_delete_range: { key: etcdKey } }],
          failure: [{ request_range: { key: etcdKey, keys_only: true } }],
        },
        call,
      );
      if (response.succeeded) {
        return Number(response.responses[0]?.response_delete_range.deleted ?? 0) > 0;
      }
      // Gone after an attempt that may have been applied: that attempt deleted it.
      if (ambiguous && response.responses[0]?.response_range.kvs.length === 0) return true;
      throw new ConditionFailedError(key);
    });
  }

  async list<T>(prefix: string): Promise<StoredRecord<T>[]> {
    const start = this.keys.record(prefix);
    const response = await this.connection.call(`list of ${prefix}`, ({ options }) =>
      this.connection.client.kv.range(
        { key: Buffer.from(start), range_end: prefixEnd(start) },
        options,
      ),
    );
    return response.kvs.map((kv) => this.toRecord(kv) as StoredRecord<T>).sort(byKey);
  }

  async watch(prefix: string, listener: (event: RecordWatchEvent) => void): Promise<Watch> {
    const start = this.keys.record(prefix);
    // The keys present now, so that a watch which must be rebuilt can report deletes it missed.
    const present = await this.connection.call(`watch of ${prefix}`, ({ options }) =>
      this.connection.client.kv.range(
        { key: Buffer.from(start), range_end: prefixEnd(start), keys_only: true },
        options,
      ),
    );
    this.connection.checkOpen();
    const watcher = new RecordWatcher(
      this,
      this.connection,
      start,
      new Set(present.kvs.map((kv) => this.keyOf(kv))),
      new Mailbox(listener, this.options.onListenerError),
      Number(present.header.revision) + 1,
    );
    this.watchers.add(watcher);
    return {
      close: () => {
        watcher.close();
        this.watchers.delete(watcher);
      },
    };
  }

  close(): void {
    for (const watcher of this.watchers) watcher.close();
    this.watchers.clear();
  }

  toRecord(kv: IKeyValue): StoredRecord {
    const record: StoredRecord = {
      key: this.keyOf(kv),
      value: parse(kv).v,
      version: Number(kv.mod_revision),
    };
    if (kv.lease !== '0' && kv.lease !== '') record.lease = kv.lease;
    return record;
  }

  keyOf(kv: IKeyValue): string {
    return kv.key.toString().slice(this.keys.records.length);
  }

  reportBackground(error: unknown, what: string): void {
    this.options.onBackgroundError(error, what);
  }
}

class RecordWatcher {
  private watch: ResumableWatch | undefined;
  private closed = false;

  constructor(
    private readonly records: Records,
    private readonly connection: EtcdConnection,
    private readonly prefix: string,
    private readonly known: Set<string>,
    private readonly mailbox: Mailbox<RecordWatchEvent>,
    startRevision: number,
  ) {
    this.open(startRevision);
  }

  close(): void {
    this.closed = true;
    this.watch?.close();
    this.mailbox.close();
  }

  private open(startRevision: number): void {
    this.watch = new ResumableWatch(this.connection, {
      prefix: this.prefix,
      startRevision,
      onEvents: (events) => {
        for (const event of events) {
          if (event.type === 'Put') {
            const record = this.records.toRecord(event.kv);
            this.known.add(record.key);
            this.mailbox.push({ type: 'put', record });
          } else {
            const key = this.records.keyOf(event.kv);
            this.known.delete(key);
            this.mailbox.push({ type: 'delete', key });
          }
        }
      },
      onBroken: (error) => void this.rebuild(error),
    });
  }

  /**
   * etcd could not resume (the history was compacted while we were away): compare the records
   * now with what we knew, report the differences, and watch on from the present.
   */
  private async rebuild(error: Error): Promise<void> {
    const missedFrom = this.watch?.nextRevision ?? 0;
    this.records.reportBackground(error, `record watch on ${this.prefix} rebuilt`);
    for (let pause = 100; !this.closed; pause = Math.min(2_000, pause * 2)) {
      try {
        const now = await this.connection.call(`watch of ${this.prefix}`, ({ options }) =>
          this.connection.client.kv.range(
            { key: Buffer.from(this.prefix), range_end: prefixEnd(this.prefix) },
            options,
          ),
        );
        if (this.closed) return;
        const seen = new Set<string>();
        for (const kv of now.kvs) {
          const record = this.records.toRecord(kv);
          seen.add(record.key);
          if (Number(kv.mod_revision) >= missedFrom) {
            this.mailbox.push({ type: 'put', record });
          }
        }
        for (const key of this.known) {
          if (!seen.has(key)) this.mailbox.push({ type: 'delete', key });
        }
        this.known.clear();
        for (const key of seen) this.known.add(key);
        this.open(Number(now.header.revision) + 1);
        return;
      } catch {
        await sleep(pause);
      }
    }
  }
}

function parse(kv: IKeyValue): Envelope {
  const text = kv.value.toString();
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed === 'object' && parsed !== null && 'w' in parsed) return parsed as Envelope;
    return { w: '', v: parsed };
  } catch {
    // Written by something else than streamheal: hand the text over as it is.
    return { w: '', v: text };
  }
}
