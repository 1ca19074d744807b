/**
 * The delivery queue shared by InProcessBus and EtcdBus; the buses' own tests and the bus
 * contract cover it through them. Here: the parts a bus builds on directly (its own fields on
 * a subscription, `admits`, serial calls).
 */
import { describe, expect, it, vi } from 'vitest';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import {
  serializeEvent,
  Subscriptions,
  type Subscription,
} from '../../../shared/bus/subscriptions.js';

const pattern = { source: [Sources.gateway] };

function offer(subscriptions: Subscriptions<Subscription & { since: number }>, revision: number) {
  const event = makeEvent(Sources.gateway, 'node.health', { revision });
  const json = serializeEvent(event, 'event');
  subscriptions.offer(JSON.parse(json), json, (subscription) => revision > subscription.since);
  return event;
}

describe('Subscriptions', () => {
  it('queues an event only for subscriptions that admit it, by their own fields', async () => {
    const subscriptions = new Subscriptions<Subscription & { since: number }>();
    const early: number[] = [];
    const late: number[] = [];
    const detailOf = (event: BusEvent) => event.detail.revision as number;
    subscriptions.add(pattern, (event) => void early.push(detailOf(event)), { since: 0 });
    subscriptions.add(pattern, (event) => void late.push(detailOf(event)), { since: 2 });

    for (const revision of [1, 2, 3, 4]) offer(subscriptions, revision);

    await vi.waitFor(() => expect(early).toEqual([1, 2, 3, 4]));
    await vi.waitFor(() => expect(late).toEqual([3, 4]));
  });

  it('calls a handler again only after its previous call settled', async () => {
    const subscriptions = new Subscriptions<Subscription & { since: number }>();
    const calls: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    subscriptions.add(
      pattern,
      async (event) => {
        calls.push(`start ${event.detail.revision}`);
        if (event.detail.revision === 1) await held;
        calls.push(`end ${event.detail.revision}`);
      },
      { since: 0 },
    );

    offer(subscriptions, 1);
    offer(subscriptions, 2);
    await vi.waitFor(() => expect(calls).toEqual(['start 1']));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toEqual(['start 1']);
    release();

    await vi.waitFor(() => expect(calls).toEqual(['start 1', 'end 1', 'start 2', 'end 2']));
  });

  it('refuses an invalid pattern and keeps a copy of a valid one', () => {
    const subscriptions = new Subscriptions();
    expect(() => subscriptions.add({ source: 'not-an-array' }, () => {}, {})).toThrow();
    const given: { source: string[] } = { source: [Sources.gateway] };
    const subscription = subscriptions.add(given, () => {}, {});
    given.source.push('other');

    expect(subscription.pattern).toEqual({ source: [Sources.gateway] });
    expect(subscriptions.size).toBe(1);
  });

  it('drops what is queued for a removed subscription', async () => {
    const subscriptions = new Subscriptions<Subscription & { since: number }>();
    const handler = vi.fn();
    const subscription = subscriptions.add(pattern, handler, { since: 0 });

    offer(subscriptions, 1);
    subscriptions.remove(subscription);

    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(handler).not.toHaveBeenCalled();
    expect(subscriptions.size).toBe(0);
  });
});
