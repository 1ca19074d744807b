/**
 * The application heartbeat of seed section 3.1, shared by the gateway and the client SDK.
 *
 * Frame (12 bytes, sent as one WebSocket BINARY message, all integers big-endian):
 *
 *   offset 0   flag       uint8   0x00
 *   offset 1   length     uint16  9 (bytes that follow)
 *   offset 3   type       uint8   0x01 ping | 0x02 pong
 *   offset 4   timestamp  uint64  milliseconds, the sender's clock; a pong echoes its ping's
 *
 * i.e. the seed's `b"\x00" + len(payload).to_bytes(2, 'big') + payload` with
 * `payload = struct.pack("!BQ", type, timestamp_ms)`. Only the sender reads the timestamp back
 * (RTT = pong arrival - echoed timestamp), so any millisecond clock works; ours is monotonic.
 *
 * Browser-safe: no Node imports, plain Uint8Array arithmetic (no BigInt, no per-frame DataView).
 */

export const HEARTBEAT_FRAME_BYTES = 12;
/** The `length` field: type (1) + timestamp (8). */
export const HEARTBEAT_PAYLOAD_BYTES = 9;
export const HEARTBEAT_FLAG = 0x00;
export const HeartbeatType = { ping: 0x01, pong: 0x02 } as const;
export type HeartbeatTypeCode = (typeof HeartbeatType)[keyof typeof HeartbeatType];

export interface HeartbeatFrame {
  type: 'ping' | 'pong';
  timestampMs: number;
}

const TWO_32 = 0x1_0000_0000;

/**
 * Writes one heartbeat frame into `into` (a fresh 12-byte array when omitted) at `offset`.
 * `timestampMs` must be a non-negative safe integer.
 */
export function encodeHeartbeat(
  type: HeartbeatTypeCode | 'ping' | 'pong',
  timestampMs: number,
  into: Uint8Array = new Uint8Array(HEARTBEAT_FRAME_BYTES),
  offset = 0,
): Uint8Array {
  const code = type === 'ping' ? HeartbeatType.ping : type === 'pong' ? HeartbeatType.pong : type;
  if (code !== HeartbeatType.ping && code !== HeartbeatType.pong)
    throw new RangeError(`heartbeat type must be 0x01 or 0x02, got ${String(type)}`);
  if (!Number.isSafeInteger(timestampMs) || timestampMs < 0)
    throw new RangeError(
      `heartbeat timestamp must be a non-negative safe integer, got ${timestampMs}`,
    );
  if (offset < 0 || into.length - offset < HEARTBEAT_FRAME_BYTES)
    throw new RangeError('heartbeat frame does not fit');
  const hi = Math.floor(timestampMs / TWO_32);
  const lo = timestampMs - hi * TWO_32;
  into[offset] = HEARTBEAT_FLAG;
  into[offset + 1] = 0;
  into[offset + 2] = HEARTBEAT_PAYLOAD_BYTES;
  into[offset + 3] = code;
  into[offset + 4] = hi >>> 24;
  into[offset + 5] = (hi >>> 16) & 0xff;
  into[offset + 6] = (hi >>> 8) & 0xff;
  into[offset + 7] = hi & 0xff;
  into[offset + 8] = lo >>> 24;
  into[offset + 9] = (lo >>> 16) & 0xff;
  into[offset + 10] = (lo >>> 8) & 0xff;
  into[offset + 11] = lo & 0xff;
  return into;
}

/** The bytes of a binary message as a Uint8Array view (no copy); undefined for other data. */
export function heartbeatBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array) return data; // includes Node's Buffer
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data))
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}

/**
 * The type of a valid heartbeat frame (0x01 ping, 0x02 pong), or 0 when `bytes` is not one:
 * wrong size, flag, length field or type, or a timestamp beyond 2^53 - 1. Allocates nothing.
 */
export function heartbeatType(bytes: Uint8Array): 0 | HeartbeatTypeCode {
  if (
    bytes.length !== HEARTBEAT_FRAME_BYTES ||
    bytes[0] !== HEARTBEAT_FLAG ||
    bytes[1] !== 0 ||
    bytes[2] !== HEARTBEAT_PAYLOAD_BYTES ||
    bytes[4]! > 0x00 ||
    bytes[5]! > 0x1f // the top 11 bits must be clear: the timestamp is a safe integer
  ) {
    return 0;
  }
  const type = bytes[3];
  return type === HeartbeatType.ping || type === HeartbeatType.pong ? type : 0;
}

/** The timestamp of a frame `heartbeatType` accepted. */
export function heartbeatTimestamp(bytes: Uint8Array): number {
  const hi = ((bytes[4]! << 24) | (bytes[5]! << 16) | (bytes[6]! << 8) | bytes[7]!) >>> 0;
  const lo = ((bytes[8]! << 24) | (bytes[9]! << 16) | (bytes[10]! << 8) | bytes[11]!) >>> 0;
  return hi * TWO_32 + lo;
}

/** Strict decode of a binary message (Uint8Array, Buffer, ArrayBuffer or view); null if invalid. */
export function decodeHeartbeat(data: unknown): HeartbeatFrame | null {
  const bytes = heartbeatBytes(data);
  if (!bytes) return null;
  const type = heartbeatType(bytes);
  if (type === 0) return null;
  return {
    type: type === HeartbeatType.ping ? 'ping' : 'pong',
    timestampMs: heartbeatTimestamp(bytes),
  };
}

/** Turns a valid ping into the pong that answers it, in a new array (same timestamp). */
export function pongFor(ping: Uint8Array): Uint8Array {
  const pong = new Uint8Array(HEARTBEAT_FRAME_BYTES);
  pong.set(ping.subarray(0, HEARTBEAT_FRAME_BYTES));
  pong[3] = HeartbeatType.pong;
  return pong;
}

/**
 * Milliseconds on a monotonic clock anchored at the Unix epoch (performance.timeOrigin +
 * performance.now(), floored): close to Date.now() but never stepping back with the wall clock,
 * so RTTs and deadlines survive clock adjustments. Works in browsers and Node.
 */
export function heartbeatClock(): number {
  return Math.floor(performance.timeOrigin + performance.now());
}

// Tiers (seed 3.1): L1 a ping without pong within `timeoutMs` -> count a miss and resend at once;
// L2 `misses` consecutive L1 -> the peer is degraded and declared dead; L3 is TCP's (keepalive,
// TCP_USER_TIMEOUT) and lives with the sockets, not here.

export interface HeartbeatOptions {
  /** A ping is sent this long after the previous scheduled one. @default 1000 */
  intervalMs: number;
  /** L1: a ping unanswered this long counts as a miss and is resent at once. @default 500 */
  timeoutMs: number;
  /** L2: this many consecutive misses declare the peer dead. @default 3 */
  misses: number;
}

export const DEFAULT_HEARTBEAT: Readonly<HeartbeatOptions> = {
  intervalMs: 1_000,
  timeoutMs: 500,
  misses: 3,
};

/** What `HeartbeatTracker.step` asks the caller to do. */
export const HeartbeatStep = {
  /** Nothing due. */
  idle: 0,
  /** Send a scheduled ping now. */
  ping: 1,
  /** L1: the outstanding ping timed out (one more miss); send a ping again now. */
  resend: 2,
  /** L2: `misses` consecutive timeouts: the peer is dead. */
  dead: 3,
} as const;
export type HeartbeatStep = (typeof HeartbeatStep)[keyof typeof HeartbeatStep];

/**
 * The heartbeat state of one connection, driven by the caller's clock: no timers of its own, so
 * a gateway drives thousands of them from one sweep and the SDK from one timer. Each ping gets a
 * full `timeoutMs` from the moment it is sent.
 */
export class HeartbeatTracker {
  /** Whether a ping is waiting for its pong. */
  awaiting = false;
  /** When the ping now awaited was sent. */
  sentAt = 0;
  /** When the next scheduled ping is due. */
  nextPingAt: number;
  /** Consecutive L1 timeouts of the current series (reset by any valid pong). */
  misses = 0;
  /** When the last valid pong arrived (the tracker's creation time before the first). */
  lastPongAt: number;
  /** Last RTT sample, ms; -1 before the first. */
  lastRttMs = -1;
  /** Smoothed RTT (EWMA, α = 1/8 as RFC 6298), ms; -1 before the first sample. */
  srttMs = -1;
  /** RTT variation (EWMA of |sample - srtt|, β = 1/4), ms. */
  rttVarMs = 0;
  /** RTT samples taken. */
  samples = 0;
  private readonly startedAt: number;

  /** `firstPingAt` spreads the pings of many connections over the interval. */
  constructor(
    readonly options: HeartbeatOptions,
    now: number,
    firstPingAt = now,
  ) {
    this.startedAt = now;
    this.lastPongAt = now;
    this.nextPingAt = firstPingAt;
  }

  /**
   * Advances the tracker to `now`. The caller sends a ping (timestamp `now`) on `ping` and
   * `resend`, and closes the connection on `dead`.
   */
  step(now: number): HeartbeatStep {
    if (this.awaiting) {
      if (now - this.sentAt < this.options.timeoutMs) return HeartbeatStep.idle;
      this.misses++;
      if (this.misses >= this.options.misses) {
        this.awaiting = false;
        this.nextPingAt = Infinity;
        return HeartbeatStep.dead;
      }
      this.sentAt = now;
      return HeartbeatStep.resend;
    }
    if (now < this.nextPingAt) return HeartbeatStep.idle;
    this.awaiting = true;
    this.sentAt = now;
    this.nextPingAt = now + this.options.intervalMs;
    return HeartbeatStep.ping;
  }

  /** When `step` will next have something to do. */
  get nextDeadline(): number {
    return this.awaiting ? this.sentAt + this.options.timeoutMs : this.nextPingAt;
  }

  /** Whether the tracker declared the peer dead. */
  get dead(): boolean {
    return this.nextPingAt === Infinity;
  }

  /**
   * A pong echoing `timestampMs` arrived at `now`. Any pong for a ping this tracker sent (a late
   * one too) proves the peer alive: misses reset. Returns the RTT sample, or -1 when the
   * timestamp cannot be one of ours (before the tracker started, or in the future).
   */
  pong(now: number, timestampMs: number): number {
    if (this.dead || timestampMs < this.startedAt || timestampMs > now) return -1;
    const rtt = now - timestampMs;
    this.awaiting = false;
    this.misses = 0;
    this.lastPongAt = now;
    this.lastRttMs = rtt;
    this.samples++;
    if (this.srttMs < 0) {
      this.srttMs = rtt;
      this.rttVarMs = rtt / 2;
    } else {
      this.rttVarMs += (Math.abs(this.srttMs - rtt) - this.rttVarMs) / 4;
      this.srttMs += (rtt - this.srttMs) / 8;
    }
    return rtt;
  }
}

/**
 * Upper bound on the time from a peer going silent to `dead`, when `step` runs at least every
 * `granularityMs` (the gateway's sweep; 0 for exact timers): the next scheduled ping goes out
 * within one interval, then each of the `misses` pings waits its timeout, each check up to one
 * granule late.
 */
export function heartbeatDetectionBoundMs(options: HeartbeatOptions, granularityMs = 0): number {
  return (
    options.intervalMs + options.misses * options.timeoutMs + (options.misses + 1) * granularityMs
  );
}
