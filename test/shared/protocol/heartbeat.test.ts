import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_HEARTBEAT,
  HEARTBEAT_FRAME_BYTES,
  HeartbeatStep,
  HeartbeatTable,
  HeartbeatType,
  decodeHeartbeat,
  encodeHeartbeat,
  heartbeatClock,
  heartbeatDetectionBoundMs,
  heartbeatTimestamp,
  heartbeatType,
  pongFor,
} from '../../../shared/protocol/heartbeat.js';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** The seed's Python, transcribed: b"\x00" + len(payload).to_bytes(2,'big') + struct.pack("!BQ", t, ts). */
function seedFrame(type: number, timestampMs: number): Buffer {
  const payload = Buffer.alloc(9);
  payload.writeUInt8(type, 0);
  payload.writeBigUInt64BE(BigInt(timestampMs), 1);
  const header = Buffer.alloc(3);
  header.writeUInt16BE(payload.length, 1);
  return Buffer.concat([header, payload]);
}

describe('heartbeat frame codec', () => {
  it('encodes the documented example byte for byte', () => {
    expect(hex(encodeHeartbeat('ping', 1_718_000_000_000))).toBe('000009010000019000c79c00');
    expect(hex(encodeHeartbeat(HeartbeatType.pong, 1_718_000_000_000))).toBe(
      '000009020000019000c79c00',
    );
    expect(hex(encodeHeartbeat('ping', 0))).toBe('000009010000000000000000');
    expect(hex(encodeHeartbeat('pong', Number.MAX_SAFE_INTEGER))).toBe('00000902001fffffffffffff');
  });

  it('agrees with the seed layout and round-trips every safe timestamp', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<'ping' | 'pong'>('ping', 'pong'),
        fc.maxSafeNat(),
        (type, timestampMs) => {
          const frame = encodeHeartbeat(type, timestampMs);
          expect(frame.length).toBe(HEARTBEAT_FRAME_BYTES);
          expect(Buffer.from(frame)).toEqual(seedFrame(type === 'ping' ? 0x01 : 0x02, timestampMs));
          expect(decodeHeartbeat(frame)).toEqual({ type, timestampMs });
          expect(heartbeatTimestamp(frame)).toBe(timestampMs);
        },
      ),
    );
  });

  it('writes into a given buffer at an offset without allocating', () => {
    const buffer = Buffer.alloc(20, 0xee);
    const out = encodeHeartbeat('ping', 42, buffer, 4);
    expect(out).toBe(buffer);
    expect(hex(buffer)).toBe('eeeeeeee' + '00000901000000000000002a' + 'eeeeeeee');
    expect(() => encodeHeartbeat('ping', 1, Buffer.alloc(11))).toThrow(RangeError);
    expect(() => encodeHeartbeat('ping', 1, buffer, 9)).toThrow(RangeError);
  });

  it('refuses to encode what the frame cannot carry', () => {
    expect(() => encodeHeartbeat('ping', -1)).toThrow(RangeError);
    expect(() => encodeHeartbeat('ping', 1.5)).toThrow(RangeError);
    expect(() => encodeHeartbeat('ping', 2 ** 53)).toThrow(RangeError);
    expect(() => encodeHeartbeat('ping', Number.NaN)).toThrow(RangeError);
    expect(() => encodeHeartbeat(3 as never, 1)).toThrow(RangeError);
  });

  it('decodes from Buffer, Uint8Array, ArrayBuffer and views at an offset', () => {
    const frame = encodeHeartbeat('pong', 123_456_789_012);
    const arrayBuffer = frame.buffer.slice(0);
    const wide = new Uint8Array(30);
    wide.set(frame, 7);
    const expected = { type: 'pong', timestampMs: 123_456_789_012 };
    expect(decodeHeartbeat(Buffer.from(frame))).toEqual(expected);
    expect(decodeHeartbeat(arrayBuffer)).toEqual(expected);
    expect(decodeHeartbeat(wide.subarray(7, 19))).toEqual(expected);
    expect(decodeHeartbeat(new DataView(wide.buffer, 7, 12))).toEqual(expected);
  });

  it('is strict: wrong length, flag, length field, type or an unsafe timestamp is null', () => {
    const good = encodeHeartbeat('ping', 1_718_000_000_000);
    const mutate = (index: number, value: number) => {
      const copy = new Uint8Array(good);
      copy[index] = value;
      return copy;
    };
    expect(decodeHeartbeat(good.subarray(0, 11))).toBeNull();
    expect(decodeHeartbeat(new Uint8Array([...good, 0]))).toBeNull();
    expect(decodeHeartbeat(new Uint8Array(0))).toBeNull();
    expect(decodeHeartbeat(mutate(0, 0x01))).toBeNull(); // flag
    expect(decodeHeartbeat(mutate(1, 0x01))).toBeNull(); // length 265
    expect(decodeHeartbeat(mutate(2, 0x08))).toBeNull(); // length 8
    expect(decodeHeartbeat(mutate(3, 0x00))).toBeNull(); // type
    expect(decodeHeartbeat(mutate(3, 0x03))).toBeNull();
    expect(decodeHeartbeat(mutate(4, 0x01))).toBeNull(); // beyond 2^53 - 1
    expect(decodeHeartbeat(mutate(5, 0x20))).toBeNull();
    expect(decodeHeartbeat(seedFrame(1, 2 ** 53))).toBeNull();
    expect(decodeHeartbeat('000009010000019000c79c00')).toBeNull();
    expect(decodeHeartbeat(null)).toBeNull();
    expect(decodeHeartbeat({ length: 12 })).toBeNull();
    expect(decodeHeartbeat([0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 1])).toBeNull();
  });

  it('never throws on garbage and accepts only exact heartbeat frames', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 40 }), (bytes) => {
        const decoded = decodeHeartbeat(bytes);
        const valid =
          bytes.length === 12 &&
          bytes[0] === 0 &&
          bytes[1] === 0 &&
          bytes[2] === 9 &&
          (bytes[3] === 1 || bytes[3] === 2) &&
          Buffer.from(bytes).readBigUInt64BE(4) <= BigInt(Number.MAX_SAFE_INTEGER);
        expect(decoded !== null).toBe(valid);
        expect(heartbeatType(bytes) !== 0).toBe(valid);
        if (decoded)
          expect(Buffer.from(encodeHeartbeat(decoded.type, decoded.timestampMs))).toEqual(
            Buffer.from(bytes),
          );
      }),
      { numRuns: 2_000 },
    );
  });

  it('answers a ping with a pong echoing its timestamp, in a new array', () => {
    const ping = encodeHeartbeat('ping', 99);
    const pong = pongFor(ping);
    expect(pong).not.toBe(ping);
    expect(decodeHeartbeat(pong)).toEqual({ type: 'pong', timestampMs: 99 });
    expect(decodeHeartbeat(ping)).toEqual({ type: 'ping', timestampMs: 99 });
  });

  it('reads a monotonic, epoch-anchored millisecond clock', () => {
    const a = heartbeatClock();
    expect(Number.isSafeInteger(a)).toBe(true);
    expect(Math.abs(a - Date.now())).toBeLessThan(60_000);
    expect(heartbeatClock()).toBeGreaterThanOrEqual(a);
  });
});

describe('HeartbeatTable (tiers L1 and L2)', () => {
  const slow = { intervalMs: 1_000, probeMs: 250, timeoutMs: 500, misses: 3 };

  it('pings every interval while pongs come back, and measures RTT', () => {
    const t = new HeartbeatTable(slow);
    const row = t.add(10_000);
    expect(t.step(row, 10_000)).toBe(HeartbeatStep.ping);
    expect(t.step(row, 10_100)).toBe(HeartbeatStep.idle);
    expect(t.pong(row, 10_020, 10_000)).toBe(20);
    expect(t.step(row, 10_999)).toBe(HeartbeatStep.idle);
    expect(t.step(row, 11_000)).toBe(HeartbeatStep.ping);
    expect(t.pong(row, 11_040, 11_000)).toBe(40);
    expect([t.misses(row), t.lastRttMs(row), t.samples(row)]).toEqual([0, 40, 2]);
    expect(t.srttMs(row)).toBeCloseTo(20 + (40 - 20) / 8);
    expect(t.nextDeadline(row)).toBe(12_000);
  });

  it('probes a ping left unanswered; L1 counts each timeout, L2 is the third in a row', () => {
    const t = new HeartbeatTable(slow);
    const row = t.add(0, 100);
    expect(t.step(row, 100)).toBe(HeartbeatStep.ping);
    expect(t.nextDeadline(row)).toBe(350); // a probe, unless a pong comes first
    expect(t.step(row, 349)).toBe(HeartbeatStep.idle);
    expect(t.step(row, 350)).toBe(HeartbeatStep.ping);
    expect(t.misses(row)).toBe(0);
    expect(t.step(row, 600)).toBe(HeartbeatStep.resend); // the first timed out; the next probe
    expect(t.misses(row)).toBe(1);
    expect(t.step(row, 850)).toBe(HeartbeatStep.miss); // three unanswered: no fourth ping
    expect(t.misses(row)).toBe(2);
    expect(t.step(row, 1_099)).toBe(HeartbeatStep.idle); // each ping gets a full timeout
    expect(t.step(row, 1_100)).toBe(HeartbeatStep.dead);
    expect(t.isDead(row)).toBe(true);
    expect(t.step(row, 5_000)).toBe(HeartbeatStep.idle);
    expect(t.pong(row, 5_000, 600)).toBe(-1); // too late: stays dead
  });

  it('at the defaults: two pings a second, and a silent peer dead 1.25 s after its last pong', () => {
    expect(DEFAULT_HEARTBEAT).toEqual({ intervalMs: 500, probeMs: 125, timeoutMs: 500, misses: 3 });
    const t = new HeartbeatTable(DEFAULT_HEARTBEAT);
    const row = t.add(0);
    expect(t.step(row, 0)).toBe(HeartbeatStep.ping);
    t.pong(row, 2, 0); // the last pong; then silence
    expect(t.step(row, 499)).toBe(HeartbeatStep.idle);
    expect(t.step(row, 500)).toBe(HeartbeatStep.ping);
    expect(t.step(row, 625)).toBe(HeartbeatStep.ping);
    expect(t.step(row, 750)).toBe(HeartbeatStep.ping);
    expect(t.step(row, 1_000)).toBe(HeartbeatStep.miss);
    expect(t.step(row, 1_125)).toBe(HeartbeatStep.miss);
    expect(t.misses(row)).toBe(2);
    expect(t.step(row, 1_249)).toBe(HeartbeatStep.idle);
    expect(t.step(row, 1_250)).toBe(HeartbeatStep.dead);
  });

  it('on a timeout sends again only when no younger ping is in flight', () => {
    const t = new HeartbeatTable({ intervalMs: 1_000, probeMs: 300, timeoutMs: 400, misses: 3 });
    const row = t.add(0);
    expect(t.step(row, 0)).toBe(HeartbeatStep.ping);
    expect(t.step(row, 300)).toBe(HeartbeatStep.ping); // the probe
    expect(t.step(row, 400)).toBe(HeartbeatStep.miss); // the first timed out; 300 still waits
    expect(t.step(row, 600)).toBe(HeartbeatStep.ping);
    expect(t.step(row, 700)).toBe(HeartbeatStep.miss);
    expect(t.misses(row)).toBe(2);
    expect(t.step(row, 1_000)).toBe(HeartbeatStep.dead);
    expect(t.lastHeard(row)).toBe(0);

    const lone = new HeartbeatTable({ intervalMs: 1_000, probeMs: 300, timeoutMs: 150, misses: 2 });
    const r = lone.add(0);
    expect(lone.step(r, 0)).toBe(HeartbeatStep.ping);
    expect(lone.step(r, 160)).toBe(HeartbeatStep.resend); // nothing else in flight
    expect(lone.step(r, 310)).toBe(HeartbeatStep.dead);
  });

  it('a late pong (for an earlier ping) resets the misses and the interval', () => {
    const t = new HeartbeatTable(slow);
    const row = t.add(0);
    t.step(row, 0);
    expect(t.step(row, 250)).toBe(HeartbeatStep.ping);
    expect(t.step(row, 500)).toBe(HeartbeatStep.resend);
    expect(t.pong(row, 600, 0)).toBe(600);
    expect(t.misses(row)).toBe(0);
    expect(t.step(row, 999)).toBe(HeartbeatStep.idle); // the probes in flight no longer count
    expect(t.step(row, 1_000)).toBe(HeartbeatStep.ping); // an interval after the answered ping
  });

  it('any other frame from the peer proves it alive and postpones our next ping', () => {
    const t = new HeartbeatTable(slow);
    const row = t.add(0);
    t.step(row, 0);
    t.step(row, 250);
    expect(t.step(row, 500)).toBe(HeartbeatStep.resend);
    t.heard(row, 700);
    expect(t.misses(row)).toBe(0);
    expect([t.lastHeard(row), t.lastPong(row)]).toEqual([700, 0]);
    expect(t.nextDeadline(row)).toBe(1_700);
    expect(t.step(row, 1_200)).toBe(HeartbeatStep.idle); // the earlier pings no longer count
    expect(t.step(row, 1_700)).toBe(HeartbeatStep.ping);
    expect(t.samples(row)).toBe(0); // only pongs give RTT samples
  });

  it('ignores pongs that cannot echo one of its pings', () => {
    const t = new HeartbeatTable(slow);
    const row = t.add(1_000);
    t.step(row, 1_000);
    expect(t.pong(row, 1_010, 999)).toBe(-1); // before it started
    expect(t.pong(row, 1_010, 1_011)).toBe(-1); // from the future
    expect(t.nextDeadline(row)).toBe(1_250); // still unanswered: a probe is due
  });

  it('a pause of the detector itself counts as one miss, not three', () => {
    const t = new HeartbeatTable(DEFAULT_HEARTBEAT);
    const row = t.add(0);
    t.step(row, 0);
    expect(t.pong(row, 1, 0)).toBe(1);
    t.step(row, 500);
    expect(t.step(row, 60_000)).toBe(HeartbeatStep.resend);
    expect(t.misses(row)).toBe(1);
    expect(t.step(row, 60_100)).toBe(HeartbeatStep.idle); // no burst of missed probes
    expect(t.nextDeadline(row)).toBe(60_125);
  });

  it('keeps rows independent and reuses removed ones', () => {
    const t = new HeartbeatTable(slow);
    const rows = Array.from({ length: 40 }, (_, i) => t.add(0, i)); // grows past 16 and 32
    for (const row of rows) t.step(row, row);
    t.pong(rows[7]!, 30, 7);
    expect(rows.map((row) => t.samples(row)).filter((n) => n > 0)).toEqual([1]);
    expect(t.lastRttMs(rows[7]!)).toBe(23);
    t.remove(rows[3]!);
    expect(t.add(100)).toBe(rows[3]);
    expect(t.samples(rows[3]!)).toBe(0);
    expect(t.step(rows[3]!, 100)).toBe(HeartbeatStep.ping);
  });

  it('refuses options it cannot honour', () => {
    expect(() => new HeartbeatTable({ ...slow, misses: 0 })).toThrow(RangeError);
    expect(() => new HeartbeatTable({ ...slow, misses: 1.5 })).toThrow(RangeError);
    expect(() => new HeartbeatTable({ ...slow, timeoutMs: 0 })).toThrow(RangeError);
    expect(() => new HeartbeatTable({ ...slow, probeMs: -1 })).toThrow(RangeError);
    expect(() => new HeartbeatTable({ ...slow, intervalMs: Number.NaN })).toThrow(RangeError);
  });

  it('documents the detection bound', () => {
    expect(heartbeatDetectionBoundMs(slow)).toBe(2_000);
    expect(heartbeatDetectionBoundMs(slow, 100)).toBe(2_400);
    expect(heartbeatDetectionBoundMs(DEFAULT_HEARTBEAT)).toBe(1_250);
    expect(heartbeatDetectionBoundMs(DEFAULT_HEARTBEAT, 50)).toBe(1_450);
  });

  it('never declares a peer dead faster than one timeout, nor later than the bound', () => {
    fc.assert(
      fc.property(
        fc.record({
          intervalMs: fc.integer({ min: 50, max: 2_000 }),
          probeMs: fc.integer({ min: 10, max: 2_000 }),
          timeoutMs: fc.integer({ min: 50, max: 2_000 }),
          misses: fc.integer({ min: 1, max: 5 }),
        }),
        fc.integer({ min: 0, max: 5_000 }), // when the peer goes silent
        fc.integer({ min: 1, max: 200 }), // step granularity
        fc.integer({ min: 0, max: 40 }), // RTT while alive
        (options, silentAt, granularity, rtt) => {
          const t = new HeartbeatTable(options);
          const row = t.add(0);
          const inFlight: number[] = [];
          for (let now = 0; now < silentAt + 20_000; now += granularity) {
            while (inFlight.length > 0 && now >= inFlight[0]! + rtt) {
              const sent = inFlight.shift()!;
              if (sent + rtt < silentAt) t.pong(row, now, sent);
            }
            const step = t.step(row, now);
            if (step === HeartbeatStep.ping || step === HeartbeatStep.resend) inFlight.push(now);
            if (step === HeartbeatStep.dead) {
              expect(now - silentAt).toBeLessThanOrEqual(
                heartbeatDetectionBoundMs(options, granularity) + rtt,
              );
              expect(now - t.lastPong(row)).toBeGreaterThanOrEqual(options.timeoutMs);
              return;
            }
          }
          throw new Error('never declared dead');
        },
      ),
      { numRuns: 500 },
    );
  });

  it('sends one ping per interval to a peer that answers within the probe time, and never declares it dead', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 50, max: 1_000 }), // interval
        fc.integer({ min: 20, max: 500 }), // probe
        fc.integer({ min: 1, max: 10 }), // step granularity
        fc.double({ min: 0, max: 0.9, noNaN: true }), // RTT as a share of the probe time
        (intervalMs, probeMs, granularity, rttShare) => {
          const t = new HeartbeatTable({ intervalMs, probeMs, timeoutMs: 500, misses: 3 });
          const row = t.add(0);
          const rtt = Math.floor((probeMs - granularity) * rttShare);
          const inFlight: number[] = [];
          let pings = 0;
          const span = 10 * intervalMs;
          for (let now = 0; now < span; now += granularity) {
            while (inFlight.length > 0 && now >= inFlight[0]! + rtt)
              t.pong(row, now, inFlight.shift()!);
            const step = t.step(row, now);
            expect(step === HeartbeatStep.ping || step === HeartbeatStep.idle).toBe(true);
            if (step === HeartbeatStep.ping) {
              pings++;
              inFlight.push(now);
            }
          }
          expect(pings).toBeLessThanOrEqual(Math.ceil(span / intervalMs));
        },
      ),
      { numRuns: 200 },
    );
  });
});
