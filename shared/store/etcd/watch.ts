/**
 * An etcd watch that resumes exactly where it stopped. etcd3's Watcher reconnects by itself but
 * resumes from the revision in the last response header, which during a catch-up (a watch
 * started in the past, answered in batches) can be ahead of the events actually received: a
 * reconnect there would skip events. Here the resume point is the revision after the last event
 * delivered (or the header of a progress notice, which etcd sends only to watches that are
 * caught up), written back into the watcher's request before every reconnect.
 *
 * When etcd cannot resume (the revision was compacted away, or it cancelled the watch) the
 * watch reports `onBroken`; the owner re-reads what it needs and opens a new one.
 */
import type { IEvent, IWatchResponse, Watcher } from 'etcd3';
import type { EtcdConnection } from './connection.js';

export interface ResumableWatchOptions {
  prefix: string;
  /** First revision to deliver. */
  startRevision: number;
  /** Deliver only puts (etcd filters deletes out on its side). */
  onlyPuts?: boolean;
  /** Events in revision order, in the order of their operations within a revision. */
  onEvents: (events: IEvent[]) => void;
  onBroken: (error: Error) => void;
}

export class ResumableWatch {
  private readonly watcher: Watcher;
  private next: number;
  private closed = false;

  constructor(connection: EtcdConnection, options: ResumableWatchOptions) {
    this.next = options.startRevision;
    const builder = connection.client
      .watch()
      .prefix(options.prefix)
      .startRevision(String(options.startRevision));
    if (options.onlyPuts) builder.only('put');
    this.watcher = builder.watcher();
    // etcd3's own listeners run first and move start_revision to the header; ours put it back.
    this.watcher.on('connected', () => this.pin());
    this.watcher.on('disconnected', () => this.pin());
    this.watcher.on('data', (response: IWatchResponse) => {
      const last = response.events.at(-1);
      if (last !== undefined) {
        this.next = Number(last.kv.mod_revision) + 1;
      } else if (!response.created && !response.canceled) {
        this.next = Math.max(this.next, Number(response.header.revision) + 1);
      }
      this.pin();
      if (!this.closed && response.events.length > 0) options.onEvents(response.events);
    });
    this.watcher.on('error', (error: Error) => {
      if (this.closed) return;
      // etcd already dropped this watcher: cancelling it again would confuse etcd3.
      this.closed = true;
      options.onBroken(error);
    });
  }

  /** The first revision this watch has not delivered yet. */
  get nextRevision(): number {
    return this.next;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.watcher.cancel().catch(() => {});
  }

  private pin(): void {
    (this.watcher.request as { start_revision?: string | number }).start_revision = String(
      this.next,
    );
  }
}
