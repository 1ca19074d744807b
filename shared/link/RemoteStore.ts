/**
 * The state store of the control process, reached over the control link (LinkClient).
 *
 * Plain requests spread over the link's pooled connections; each watch stays on one connection
 * and its own requests go there. Watches outlive a reconnect (or the loss of their connection):
 * - a channel watch subscribes again after the last position it delivered (or the position a
 *   `lost` event reported), so the server's replay closes the gap with no duplicate, or says
 *   `lost` when its history no longer reaches back;
 * - a record watch keeps the version of every key it has reported; on a new connection it
 *   takes a fresh list and reports, as put and delete events, what changed meanwhile.
 *
 * `close()` ends this store's watches; the LinkClient belongs to the caller, who may share it
 * with a RemoteBus, and closes it separately.
 */
import { errorCode } from '../errors.js';
import type {
  ChannelMessage,
  ChannelSummary,
  ChannelWatch,
  ChannelWatchEvent,
  HistoryPage,
  PutOptions,
  RecordWatchEvent,
  StateStore,
  StoredRecord,
  Watch,
} from '../store/StateStore.js';
import type { LinkClient, LinkStream } from './LinkClient.js';

export class RemoteStore implements StateStore {
  private readonly watches = new Set<{ close(): void }>();

  constructor(private readonly client: LinkClient) {}

  append(channel: string, data: unknown, trace?: Record<string, string>): Promise<ChannelMessage> {
    return this.client.request<ChannelMessage>(
      'append',
      trace === undefined ? [channel, data] : [channel, data, trace],
    );
  }

  read(channel: string, after: number, limit: number): Promise<HistoryPage> {
    return this.client.request<HistoryPage>('read', [channel, after, limit]);
  }

  async watchChannel(
    channel: string,
    after: number | undefined,
    listener: (event: ChannelWatchEvent) => void,
  ): Promise<ChannelWatch> {
    const stream = new ChannelStream(this.client, channel, after, listener);
    await stream.start();
    const watch: ChannelWatch = {
      startedAfter: stream.startedAfter,
      close: () => {
        this.watches.delete(watch);
        stream.close();
      },
    };
    this.watches.add(watch);
    return watch;
  }

  channels(): Promise<ChannelSummary[]> {
    return this.client.request<ChannelSummary[]>('channels', []);
  }

  async get<T = unknown>(key: string): Promise<StoredRecord<T> | undefined> {
    return (await this.client.request<StoredRecord<T> | null>('get', [key])) ?? undefined;
  }

  put(key: string, value: unknown, options?: PutOptions): Promise<number> {
    return this.client.request<number>(
      'put',
      options === undefined ? [key, value] : [key, value, options],
    );
  }

  delete(key: string, options?: { ifVersion?: number }): Promise<boolean> {
    return this.client.request<boolean>('delete', options === undefined ? [key] : [key, options]);
  }

  list<T = unknown>(prefix: string): Promise<StoredRecord<T>[]> {
    return this.client.request<StoredRecord<T>[]>('list', [prefix]);
  }

  async watch(prefix: string, listener: (event: RecordWatchEvent) => void): Promise<Watch> {
    const stream = new RecordStream(this.client, prefix, listener);
    await stream.start();
    const watch: Watch = {
      close: () => {
        this.watches.delete(watch);
        stream.close();
      },
    };
    this.watches.add(watch);
    return watch;
  }

  grantLease(ttlMs: number): Promise<string> {
    return this.client.request<string>('grantLease', [ttlMs]);
  }

  async keepAlive(lease: string): Promise<void> {
    await this.client.request('keepAlive', [lease]);
  }

  async revokeLease(lease: string): Promise<void> {
    await this.client.request('revokeLease', [lease]);
  }

  async close(): Promise<void> {
    for (const watch of [...this.watches]) watch.close();
  }
}

/** Shared lifecycle: registered with the client for events, live once the server said yes. */
abstract class Stream implements LinkStream {
  protected readonly id: number;
  protected live = false;
  protected closed = false;

  constructor(protected readonly client: LinkClient) {
    this.id = client.addStream(this);
  }

  abstract event(event: unknown): void;
  protected abstract subscribe(first: boolean): Promise<void>;

  async start(): Promise<void> {
    try {
      await this.subscribe(true);
      this.live = true;
    } catch (error) {
      this.closed = true;
      this.client.removeStream(this.id);
      throw error;
    }
  }

  resubscribe(): Promise<void> {
    // Not yet live: the first subscription is still on its way (and fails with the old link).
    if (!this.live || this.closed) return Promise.resolve();
    return this.subscribe(false);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.endStream(this.id);
  }
}

class ChannelStream extends Stream {
  /** Last position delivered (or known to be gone); -1 until the server told where it started. */
  private last: number;
  startedAfter = 0;

  constructor(
    client: LinkClient,
    private readonly channel: string,
    private readonly after: number | undefined,
    private readonly listener: (event: ChannelWatchEvent) => void,
  ) {
    super(client);
    this.last = after ?? -1;
  }

  event(raw: unknown): void {
    if (this.closed) return;
    const event = raw as ChannelWatchEvent;
    if (event.type === 'message') {
      const position = event.message.position;
      if (position <= this.last) return; // already delivered before a reconnect
      this.last = position;
    } else {
      this.last = Math.max(this.last, event.oldest - 1);
    }
    this.listener(event);
  }

  protected async subscribe(first: boolean): Promise<void> {
    const after = first ? (this.after ?? null) : this.last;
    try {
      const answer = await this.client.request<{ startedAfter: number }>(
        'watchChannel',
        [this.id, this.channel, after],
        this.id,
      );
      if (first) {
        this.startedAfter = answer.startedAfter;
        this.last = Math.max(this.last, answer.startedAfter);
      }
    } catch (error) {
      if (first || errorCode(error) !== 'position_from_future') throw error;
      // The server's store no longer knows our position (it was replaced by an empty one):
      // say so explicitly and go on live from wherever it is now.
      const answer = await this.client.request<{ startedAfter: number }>(
        'watchChannel',
        [this.id, this.channel, null],
        this.id,
      );
      this.last = answer.startedAfter;
      if (!this.closed) this.listener({ type: 'lost', oldest: answer.startedAfter + 1 });
    }
  }
}

class RecordStream extends Stream {
  /** Version of every key the listener has been told about (and not told deleted). */
  private known = new Map<string, number>();
  /** Events that arrived before the list answering the current subscription. */
  private buffer: RecordWatchEvent[] | undefined;
  private subscription = 0;

  constructor(
    client: LinkClient,
    private readonly prefix: string,
    private readonly listener: (event: RecordWatchEvent) => void,
  ) {
    super(client);
  }

  event(raw: unknown): void {
    if (this.closed) return;
    const event = raw as RecordWatchEvent;
    if (this.buffer !== undefined) this.buffer.push(event);
    else if (apply(this.known, event)) this.listener(event);
  }

  protected async subscribe(first: boolean): Promise<void> {
    const subscription = ++this.subscription;
    this.buffer = [];
    const { records } = await this.client.request<{ records: StoredRecord[] }>(
      'watch',
      [this.id, this.prefix],
      this.id,
    );
    if (subscription !== this.subscription || this.closed) return;
    const buffered = this.buffer;
    this.buffer = undefined;
    // The list was taken after the watch started, so the final state is the list with every
    // buffered event applied on top in order (stale puts lose on version).
    const state = new Map<string, StoredRecord>();
    for (const record of records) state.set(record.key, record);
    for (const event of buffered) {
      if (event.type === 'delete') state.delete(event.key);
      else {
        const current = state.get(event.record.key);
        if (current === undefined || event.record.version > current.version) {
          state.set(event.record.key, event.record);
        }
      }
    }
    const known = new Map<string, number>();
    for (const [key, record] of state) known.set(key, record.version);
    const previous = this.known;
    this.known = known;
    if (first) {
      // Everything buffered happened after the watch started: report it as it came.
      for (const event of buffered) this.listener(event);
      return;
    }
    for (const key of previous.keys()) {
      if (!state.has(key) && !this.closed) this.listener({ type: 'delete', key });
    }
    for (const [key, record] of state) {
      if (previous.get(key) !== record.version && !this.closed) {
        this.listener({ type: 'put', record });
      }
    }
  }

  override close(): void {
    super.close();
    this.buffer = undefined;
    this.known.clear();
  }
}

/** Applies a live event to the known versions; false when it is stale or a repeat. */
function apply(known: Map<string, number>, event: RecordWatchEvent): boolean {
  if (event.type === 'delete') return known.delete(event.key);
  const current = known.get(event.record.key);
  if (current !== undefined && current >= event.record.version) return false;
  known.set(event.record.key, event.record.version);
  return true;
}
