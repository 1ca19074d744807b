/**
 * Per-channel fan-out on one gateway. Each channel with local subscribers has one feed: a
 * store watch that delivers the channel's messages in position order. Every subscription
 * keeps a cursor (the last position its client has); a message is written only when it is
 * exactly cursor + 1, so delivery is gap-free and duplicate-free by construction. A
 * subscription that is behind (a resume, or a gap) catches up from the store's history and
 * then rejoins the live feed; the check that ends a catch-up and the live delivery run on the
 * same tick, so nothing slips between them.
 */
import { SpanKind } from '@opentelemetry/api';
import type {
  ChannelMessage,
  ChannelWatch,
  ChannelWatchEvent,
  StateStore,
} from '../../shared/store/StateStore.js';
import { StreamhealError } from '../../shared/errors.js';
import { extractContext, tracer } from '../../shared/telemetry/tracing.js';
import type { Logger } from '../../shared/telemetry/logger.js';

/** A message with its encodings, built once and shared by every subscriber of the feed. */
export class OutgoingMessage {
  private ws?: Buffer;
  constructor(readonly message: ChannelMessage) {}

  /** The WebSocket `message` frame, serialized once for the whole fan-out. */
  get wsFrame(): Buffer {
    const m = this.message;
    this.ws ??= Buffer.from(
      `{"type":"message","channel":${JSON.stringify(m.channel)},"position":${m.position},"time":${m.time},"data":${JSON.stringify(m.data)}}`,
    );
    return this.ws;
  }
}

/** Where a subscription's output goes: a WebSocket session or an SSE response. */
export interface SubscriptionSink {
  /** The subscription starts after `position`; called before any message. */
  subscribed(subscription: Subscription, position: number): void;
  message(subscription: Subscription, message: OutgoingMessage): void;
  /** History no longer reaches the cursor; delivery continues from `oldest`. */
  lost(subscription: Subscription, oldest: number, latest: number): void;
  /** Catch-up failed (store unavailable); the subscription has been removed. */
  failed(subscription: Subscription, error: unknown): void;
}

export class Subscription {
  /** Last position delivered to (or already held by) the client. */
  cursor = 0;
  catchingUp = false;
  /** Not written to while its client cannot keep up; the store's history holds its backlog. */
  paused = false;
  closed = false;
  constructor(
    readonly channel: string,
    readonly sink: SubscriptionSink,
  ) {}
}

export class PositionFromFutureError extends StreamhealError {
  constructor(
    readonly channel: string,
    readonly latest: number,
  ) {
    super('position_from_future', `position is beyond the latest position ${latest} of ${channel}`);
  }
}

class Feed {
  readonly subscribers = new Set<Subscription>();
  /** Last position received from the store watch. */
  position = 0;
  watch?: ChannelWatch;
  ready?: Promise<void>;
  lingerTimer?: NodeJS.Timeout;
  constructor(readonly channel: string) {}
}

export interface ChannelHubOptions {
  store: StateStore;
  logger: Logger;
  /** How long a feed with no subscribers stays open, so resubscribe churn does not thrash watches. */
  lingerMs?: number;
  /** Messages read per history request during a catch-up. */
  catchUpPageSize?: number;
  onDelivered?: (count: number) => void;
}

export class ChannelHub {
  private readonly feeds = new Map<string, Feed>();
  private readonly lingerMs: number;
  private readonly pageSize: number;

  constructor(private readonly options: ChannelHubOptions) {
    this.lingerMs = options.lingerMs ?? 5_000;
    this.pageSize = options.catchUpPageSize ?? 500;
  }

  get channelCount(): number {
    return this.feeds.size;
  }

  /**
   * Adds a subscription. `after` undefined: from now on; otherwise every message after `after`.
   * Rejects with PositionFromFutureError or the store's error; the sink then hears nothing.
   */
  async subscribe(subscription: Subscription, after: number | undefined): Promise<void> {
    const feed = await this.openFeed(subscription.channel);
    try {
      if (after !== undefined && after > feed.position) {
        // The feed may simply lag the store; only the store knows the latest position.
        const { latest } = await this.options.store.read(feed.channel, after, 0);
        if (after > latest) throw new PositionFromFutureError(feed.channel, latest);
      }
    } catch (error) {
      this.releaseIfIdle(feed);
      throw error;
    }
    if (subscription.closed) return this.releaseIfIdle(feed);
    subscription.cursor = after ?? feed.position;
    feed.subscribers.add(subscription);
    subscription.sink.subscribed(subscription, subscription.cursor);
    if (subscription.cursor < feed.position) void this.catchUp(feed, subscription);
  }

  unsubscribe(subscription: Subscription): void {
    subscription.closed = true;
    const feed = this.feeds.get(subscription.channel);
    if (!feed || !feed.subscribers.delete(subscription)) return;
    this.releaseIfIdle(feed);
  }

  /** Stops writing to the subscription; what it misses stays in the store's history. */
  pause(subscription: Subscription): void {
    subscription.paused = true;
  }

  /** Writes again, starting with everything the subscription missed while paused. */
  resume(subscription: Subscription): void {
    if (!subscription.paused) return;
    subscription.paused = false;
    const feed = this.feeds.get(subscription.channel);
    if (feed && !subscription.closed && subscription.cursor < feed.position) {
      void this.catchUp(feed, subscription);
    }
  }

  close(): void {
    for (const feed of this.feeds.values()) {
      clearTimeout(feed.lingerTimer);
      feed.watch?.close();
    }
    this.feeds.clear();
  }

  private async openFeed(channel: string): Promise<Feed> {
    let feed = this.feeds.get(channel);
    if (!feed) {
      const created = new Feed(channel);
      feed = created;
      this.feeds.set(channel, created);
      created.ready = this.options.store
        .watchChannel(channel, undefined, (event) => this.onFeedEvent(created, event))
        .then((watch) => {
          created.watch = watch;
          created.position = Math.max(created.position, watch.startedAfter);
        })
        .catch((error: unknown) => {
          if (this.feeds.get(channel) === created) this.feeds.delete(channel);
          throw error;
        });
    }
    clearTimeout(feed.lingerTimer);
    feed.lingerTimer = undefined;
    await feed.ready;
    return feed;
  }

  private releaseIfIdle(feed: Feed): void {
    if (feed.subscribers.size > 0 || feed.lingerTimer) return;
    feed.lingerTimer = setTimeout(() => {
      if (feed.subscribers.size > 0 || this.feeds.get(feed.channel) !== feed) return;
      this.feeds.delete(feed.channel);
      feed.watch?.close();
    }, this.lingerMs).unref();
  }

  private onFeedEvent(feed: Feed, event: ChannelWatchEvent): void {
    if (event.type === 'lost') {
      // This gateway fell behind the store's history: every live subscriber learns it too.
      feed.position = event.oldest - 1;
      for (const subscription of feed.subscribers) {
        if (subscription.catchingUp || subscription.paused || subscription.cursor >= feed.position)
          continue;
        subscription.sink.lost(subscription, event.oldest, event.oldest - 1);
        subscription.cursor = feed.position;
      }
      return;
    }
    const message = event.message;
    if (message.position <= feed.position) return;
    feed.position = message.position;
    if (feed.subscribers.size === 0) return;
    const span = tracer().startSpan(
      'deliver',
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          'messaging.destination.name': feed.channel,
          'streamheal.position': message.position,
        },
      },
      extractContext(message.trace),
    );
    const outgoing = new OutgoingMessage(message);
    let delivered = 0;
    for (const subscription of feed.subscribers) {
      if (subscription.catchingUp || subscription.paused) continue;
      if (message.position === subscription.cursor + 1) {
        subscription.cursor = message.position;
        subscription.sink.message(subscription, outgoing);
        delivered++;
      } else if (message.position > subscription.cursor + 1) {
        void this.catchUp(feed, subscription);
      }
    }
    span.setAttribute('streamheal.delivered', delivered);
    span.end();
    this.options.onDelivered?.(delivered);
  }

  /** Reads history until the subscription reaches the feed, then hands it back to the feed. */
  private async catchUp(feed: Feed, subscription: Subscription): Promise<void> {
    if (subscription.catchingUp) return;
    subscription.catchingUp = true;
    try {
      while (!subscription.closed && !subscription.paused && subscription.cursor < feed.position) {
        const page = await this.options.store.read(
          feed.channel,
          subscription.cursor,
          this.pageSize,
        );
        if (subscription.closed) return;
        if (page.oldest > subscription.cursor + 1) {
          subscription.sink.lost(subscription, page.oldest, page.latest);
          subscription.cursor = page.oldest - 1;
        }
        let delivered = 0;
        for (const message of page.messages) {
          if (subscription.paused) break;
          if (message.position !== subscription.cursor + 1) continue;
          subscription.cursor = message.position;
          subscription.sink.message(subscription, new OutgoingMessage(message));
          delivered++;
        }
        this.options.onDelivered?.(delivered);
        if (
          !subscription.paused &&
          delivered === 0 &&
          subscription.cursor < feed.position &&
          page.oldest <= subscription.cursor + 1
        ) {
          throw new Error(
            `history of ${feed.channel} has no message after ${subscription.cursor} below ${feed.position}`,
          );
        }
      }
    } catch (error) {
      this.options.logger.warn({ err: error, channel: feed.channel }, 'catch-up failed');
      this.unsubscribe(subscription);
      subscription.sink.failed(subscription, error);
    } finally {
      subscription.catchingUp = false;
    }
  }
}
