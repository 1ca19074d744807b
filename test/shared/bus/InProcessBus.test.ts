import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { BusClosedError, InProcessBus } from '../../../shared/bus/InProcessBus.js';
import { makeEvent, Sources } from '../../../shared/bus/events.js';
import { eventBusContract } from './eventBusContract.js';

eventBusContract('InProcessBus', async () => {
  // The contract's failing handlers are expected; keep them out of the test output.
  const bus = new InProcessBus({ onHandlerError: () => {} });
  return { bus, cleanup: () => bus.close() };
});

describe('InProcessBus', () => {
  const pattern = { source: [Sources.gateway] };
  const healthEvent = () => makeEvent(Sources.gateway, 'node.health', { node: 'gw-1' });
  let bus: InProcessBus;

  afterEach(async () => {
    await bus.close();
    vi.restoreAllMocks();
  });

  it('never calls a handler inside the put call', async () => {
    bus = new InProcessBus();
    const handler = vi.fn();
    bus.subscribe(pattern, handler);

    const putting = bus.put([healthEvent()]);
    expect(handler).not.toHaveBeenCalled();

    await putting;
    await vi.waitFor(() => expect(handler).toHaveBeenCalledOnce());
  });

  it('reports a failing handler to onHandlerError with the event', async () => {
    const failures: [unknown, BusEvent][] = [];
    bus = new InProcessBus({ onHandlerError: (error, event) => failures.push([error, event]) });
    const bug = new Error('handler bug');
    bus.subscribe(pattern, () => Promise.reject(bug));
    const sent = healthEvent();

    await bus.put([sent]);

    await vi.waitFor(() => expect(failures).toEqual([[bug, sent]]));
  });

  it('reports failing handlers on console.error when no onHandlerError is given', async () => {
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => {});
    bus = new InProcessBus();
    const bug = new Error('handler bug');
    bus.subscribe(pattern, () => {
      throw bug;
    });
    const sent = healthEvent();

    await bus.put([sent]);

    await vi.waitFor(() =>
      expect(consoleError).toHaveBeenCalledWith(expect.stringContaining(sent.id), bug),
    );
  });

  it('keeps delivering when onHandlerError itself throws', async () => {
    bus = new InProcessBus({
      onHandlerError: () => {
        throw new Error('broken reporter');
      },
    });
    const delivered: string[] = [];
    bus.subscribe(pattern, (event) => {
      delivered.push(event.id);
      throw new Error('handler bug');
    });
    const first = healthEvent();
    const second = healthEvent();

    await bus.put([first, second]);

    await vi.waitFor(() => expect(delivered).toEqual([first.id, second.id]));
  });

  it('gives each handler its own copy of the event', async () => {
    bus = new InProcessBus();
    const seenByReader: unknown[] = [];
    bus.subscribe(pattern, (event) => {
      event.detail.node = 'mutated by a handler';
    });
    bus.subscribe(pattern, (event) => {
      seenByReader.push(event.detail.node);
    });

    await bus.put([healthEvent()]);

    await vi.waitFor(() => expect(seenByReader).toEqual(['gw-1']));
  });

  it('drops queued events when a handler unsubscribes itself', async () => {
    bus = new InProcessBus();
    const delivered: string[] = [];
    const unsubscribe = bus.subscribe(pattern, (event) => {
      delivered.push(event.id);
      unsubscribe();
    });
    const first = healthEvent();
    const sentinel = vi.fn();
    bus.subscribe(pattern, sentinel);

    await bus.put([first, healthEvent(), healthEvent()]);

    await vi.waitFor(() => expect(sentinel).toHaveBeenCalledTimes(3));
    expect(delivered).toEqual([first.id]);
  });

  it('delivers nothing still queued once closed', async () => {
    bus = new InProcessBus();
    const handler = vi.fn();
    bus.subscribe(pattern, handler);

    await bus.put([healthEvent()]);
    await bus.close();

    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(handler).not.toHaveBeenCalled();
  });

  it('rejects an event whose detail cannot be serialized', async () => {
    bus = new InProcessBus();
    const event = makeEvent(Sources.gateway, 'node.health', { bytes: 1n });

    await expect(bus.put([event])).rejects.toThrow(/events\[0\]: must be JSON-serializable/);
  });

  it('refuses new subscriptions after close', async () => {
    bus = new InProcessBus();
    await bus.close();

    expect(() => bus.subscribe(pattern, () => {})).toThrow(BusClosedError);
  });
});
