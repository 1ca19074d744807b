import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';
import { createLogger } from '../../../shared/telemetry/logger.js';
import {
  ChannelHub,
  Subscription,
  type OutgoingMessage,
  type SubscriptionSink,
} from '../../../workers/gateway/ChannelHub.js';
import { range } from './harness.js';

/** Records what the hub writes; can pause its own subscription after N messages, like a full socket. */
class RecordingSink implements SubscriptionSink {
  readonly positions: number[] = [];
  pauseAfter = Infinity;
  constructor(private readonly hub: () => ChannelHub) {}
  subscribed(): void {}
  message(subscription: Subscription, message: OutgoingMessage): void {
    this.positions.push(message.message.position);
    if (this.positions.length >= this.pauseAfter) this.hub().pause(subscription);
  }
  lost(): void {}
  failed(): void {}
}

const until = async (check: () => boolean, timeoutMs = 3_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

describe('ChannelHub', () => {
  const store = new MemoryStore();
  const hub = new ChannelHub({ store, logger: createLogger('test', 'silent'), catchUpPageSize: 7 });
  afterEach(() => hub.close());

  it('holds a paused subscription back and delivers its backlog, in order, on resume', async () => {
    const sink = new RecordingSink(() => hub);
    const subscription = new Subscription('paused', sink);
    await hub.subscribe(subscription, undefined);
    for (let i = 0; i < 3; i++) await store.append('paused', i);
    await until(() => sink.positions.length === 3);
    hub.pause(subscription);
    for (let i = 0; i < 20; i++) await store.append('paused', i);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sink.positions).toEqual([1, 2, 3]);
    hub.resume(subscription);
    await store.append('paused', 'live');
    await until(() => sink.positions.length === 24);
    expect(sink.positions).toEqual(range(1, 24));
  });

  it('stops a catch-up when the client pauses mid-page and resumes without a gap or duplicate', async () => {
    for (let i = 0; i < 30; i++) await store.append('mid', i);
    const sink = new RecordingSink(() => hub);
    sink.pauseAfter = 10;
    const subscription = new Subscription('mid', sink);
    await hub.subscribe(subscription, 0);
    await until(() => sink.positions.length === 10);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sink.positions).toEqual(range(1, 10));
    sink.pauseAfter = Infinity;
    hub.resume(subscription);
    await until(() => sink.positions.length === 30);
    expect(sink.positions).toEqual(range(1, 30));
  });
});
