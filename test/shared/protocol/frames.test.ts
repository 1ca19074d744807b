import { describe, expect, it } from 'vitest';
import { parseClientFrame } from '../../../shared/protocol/frames.js';
import { CloseCodes, reconnectAdvice } from '../../../shared/protocol/closeCodes.js';

describe('parseClientFrame', () => {
  it('accepts the documented frames', () => {
    expect(parseClientFrame('{"type":"subscribe","id":1,"channel":"a","after":3}')).toEqual({
      ok: true,
      frame: { type: 'subscribe', id: 1, channel: 'a', after: 3 },
    });
    expect(parseClientFrame('{"type":"resume","token":"t","channels":{"a":1,"b.c":0}}').ok).toBe(
      true,
    );
    expect(parseClientFrame('{"type":"unsubscribe","channel":"a"}').ok).toBe(true);
  });

  it('names the problem and echoes the id of a refused frame', () => {
    expect(parseClientFrame('nope')).toMatchObject({ ok: false, error: { code: 'bad_frame' } });
    expect(parseClientFrame('[1]')).toMatchObject({ ok: false, error: { code: 'bad_frame' } });
    expect(parseClientFrame('{"type":"subscribe","id":9,"channel":"a b"}')).toMatchObject({
      ok: false,
      id: 9,
      error: { code: 'invalid_channel', message: expect.stringContaining('channel') },
    });
    expect(parseClientFrame('{"type":"resume","token":"t","channels":{"a b":1}}')).toMatchObject({
      ok: false,
      error: { code: 'invalid_channel' },
    });
    expect(
      parseClientFrame('{"type":"subscribe","id":"x","channel":"a","after":1.5}'),
    ).toMatchObject({
      ok: false,
      id: 'x',
      error: { code: 'bad_frame', message: expect.stringContaining('after') },
    });
  });
});

describe('reconnectAdvice', () => {
  it('comes from the close code itself', () => {
    expect(reconnectAdvice(CloseCodes.shutdown.code)).toBe('immediately');
    expect(reconnectAdvice(CloseCodes.slowConsumer.code)).toBe('immediately');
    expect(reconnectAdvice(CloseCodes.rateLimited.code)).toBe('backoff');
    expect(reconnectAdvice(CloseCodes.badRequest.code)).toBe('never');
    expect(reconnectAdvice(1006)).toBe('immediately');
    expect(reconnectAdvice(4999)).toBe('never');
  });
});
