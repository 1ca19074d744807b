/**
 * The behaviour every EventBus adapter must share. Run it from an adapter's test file:
 *
 *   eventBusContract('RemoteBus', async () => ({ bus, cleanup: () => ... }));
 *
 * `factory` is called before each test; `cleanup` after it, also when the test closed the bus.
 * Each test tags its events with a fresh run id and subscribes to that id only, so adapters that
 * share a broker between tests do not see each other's events.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { BusEvent, EventBus, EventPattern } from '../../../shared/bus/EventBus.js';
import { makeEvent } from '../../../shared/bus/events.js';

const SOURCE = 'streamheal.contract-test';
/** Long enough for a network adapter, short enough that a lost event fails fast. */
const DELIVERY_TIMEOUT_MS = 5_000;
/**
 * How long to keep listening before asserting that something did NOT arrive. Tests first wait
 * for a later event on the same subscription (order per subscriber makes that proof enough);
 * this margin covers the cases that compare different subscriptions.
 */
const SETTLE_MS = 100;

export function eventBusContract(
  name: string,
  factory: () => Promise<{ bus: EventBus; cleanup: () => Promise<void> }>,
): void {
  describe(`EventBus contract: ${name}`, () => {
    let bus: EventBus;
    let cleanup: () => Promise<void>;
    let run: string;

    beforeEach(async () => {
      ({ bus, cleanup } = await factory());
      run = randomUUID();
    });

    afterEach(async () => {
      await cleanup();
    });

    function event(detailType: string, detail: Record<string, unknown> = {}): BusEvent {
      return makeEvent(SOURCE, detailType, { run, ...detail });
    }

    function patternFor(pattern: EventPattern = {}): EventPattern {
      return { source: [SOURCE], ...pattern, detail: { run: [run], ...(pattern.detail ?? {}) } };
    }

    function record(pattern?: EventPattern): BusEvent[] {
      const received: BusEvent[] = [];
      bus.subscribe(patternFor(pattern), (delivered) => {
        received.push(delivered);
      });
      return received;
    }

    async function waitForCount(received: BusEvent[], count: number): Promise<void> {
      await vi.waitFor(() => expect(received).toHaveLength(count), {
        timeout: DELIVERY_TIMEOUT_MS,
        interval: 5,
      });
    }

    function settle(): Promise<void> {
      return new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    }

    it('delivers an event, unchanged, to a subscriber whose pattern matches', async () => {
      const received = record({ 'detail-type': ['node.suspect'] });
      const sent = event('node.suspect', { node: 'gw-1', score: 0.4, tags: ['a'], lost: null });

      await bus.put([sent]);

      await waitForCount(received, 1);
      expect(received[0]).toEqual(sent);
    });

    it('does not deliver events the pattern does not match', async () => {
      const received = record({ 'detail-type': ['wanted'] });

      await bus.put([event('unwanted'), event('wanted')]);

      await waitForCount(received, 1);
      expect(received.map((delivered) => delivered['detail-type'])).toEqual(['wanted']);
    });

    it('delivers to each subscriber in put order, also when the handler is async', async () => {
      const seen: number[] = [];
      bus.subscribe(patternFor(), async (delivered) => {
        const seq = delivered.detail.seq as number;
        // Uneven handler durations would reorder events if calls overlapped.
        await new Promise((resolve) => setTimeout(resolve, seq % 3));
        seen.push(seq);
      });
      const seqs = Array.from({ length: 20 }, (_, seq) => seq);

      await bus.put(seqs.slice(0, 10).map((seq) => event('ordered', { seq })));
      await bus.put(seqs.slice(10).map((seq) => event('ordered', { seq })));

      await vi.waitFor(() => expect(seen).toHaveLength(20), { timeout: DELIVERY_TIMEOUT_MS });
      expect(seen).toEqual(seqs);
    });

    it('delivers one event to every subscriber that matches it', async () => {
      const byType = record({ 'detail-type': ['node.lost'] });
      const byPrefix = record({ 'detail-type': [{ prefix: 'node.' }] });
      const other = record({ 'detail-type': ['session.moved'] });

      await bus.put([event('node.lost', { node: 'gw-2' }), event('session.moved')]);

      await Promise.all([byType, byPrefix, other].map((received) => waitForCount(received, 1)));
      await settle();
      const typesOf = (received: BusEvent[]) => received.map((e) => e['detail-type']);
      expect(typesOf(byType)).toEqual(['node.lost']);
      expect(typesOf(byPrefix)).toEqual(['node.lost']);
      expect(typesOf(other)).toEqual(['session.moved']);
    });

    it('stops delivering to a subscriber once it unsubscribes', async () => {
      const leaving: BusEvent[] = [];
      const unsubscribe = bus.subscribe(patternFor(), (delivered) => {
        leaving.push(delivered);
      });
      const staying = record();

      await bus.put([event('first')]);
      await waitForCount(leaving, 1);
      unsubscribe();
      unsubscribe(); // a second call is harmless
      await bus.put([event('second')]);

      await waitForCount(staying, 2);
      await settle();
      expect(leaving.map((delivered) => delivered['detail-type'])).toEqual(['first']);
    });

    it('keeps delivering when a handler throws or rejects', async () => {
      const throwerCalls: string[] = [];
      bus.subscribe(patternFor(), (delivered) => {
        throwerCalls.push(delivered['detail-type']);
        throw new Error('handler bug');
      });
      bus.subscribe(patternFor(), async () => {
        throw new Error('async handler bug');
      });
      const healthy = record();

      await expect(bus.put([event('one'), event('two')])).resolves.toBeUndefined();

      await waitForCount(healthy, 2);
      await vi.waitFor(() => expect(throwerCalls).toEqual(['one', 'two']), {
        timeout: DELIVERY_TIMEOUT_MS,
      });
    });

    it('rejects an invalid envelope and delivers nothing from its batch', async () => {
      const received = record();
      const valid = event('valid');
      const invalid = (fields: Record<string, unknown>) =>
        ({ ...event('invalid'), ...fields }) as unknown as BusEvent;

      await expect(bus.put([valid, invalid({ 'detail-type': '' })])).rejects.toThrow(/detail-type/);
      await expect(bus.put([invalid({ source: undefined })])).rejects.toThrow(/source/);
      await expect(bus.put([invalid({ detail: 'not an object' })])).rejects.toThrow(/detail/);
      await expect(bus.put([invalid({ detail: [run] })])).rejects.toThrow(/detail/);

      await bus.put([event('after')]);
      await waitForCount(received, 1);
      expect(received[0]?.['detail-type']).toBe('after');
    });

    it('rejects a malformed pattern, naming where it is wrong', () => {
      expect(() => bus.subscribe({ source: SOURCE }, () => {})).toThrow(/\$\.source/);
      expect(() => bus.subscribe({ detail: { n: [{ numeric: ['>'] }] } }, () => {})).toThrow(
        /\$\.detail\.n\[0\]\.numeric/,
      );
    });

    it('delivers the event as it was when put, not as the publisher changed it later', async () => {
      const received = record();
      const sent = event('snapshot', { state: 'healthy' });

      await bus.put([sent]);
      sent.detail.state = 'changed after put';

      await waitForCount(received, 1);
      expect(received[0]?.detail.state).toBe('healthy');
    });

    it('rejects put and delivers nothing after close', async () => {
      const received = record();

      await bus.close();

      await expect(bus.put([event('too late')])).rejects.toThrow();
      await settle();
      expect(received).toEqual([]);
    });
  });
}
