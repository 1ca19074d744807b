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
  return Math.floor((timeOrigin ??= performance.timeOrigin) + performance.now());
}
/** Read once: Node computes `performance.timeOrigin` anew (and allocates) on every access. */
let timeOrigin: number | undefined;

// Tiers (seed 3.1): L1 a ping without pong within `timeoutMs` -> count a miss and send another
// at once; L2 `misses` consecutive L1 -> the peer is degraded and declared dead; L3 is TCP's
// (keepalive, TCP_USER_TIMEOUT) and lives with the sockets, not here.
//
// A peer that answers gets one ping per `intervalMs`. A ping still unanswered after `probeMs`
// makes the peer suspect: probes follow every `probeMs`, overlapping, each with its own
// `timeoutMs`, until a pong (or any frame) comes back. So the third unanswered ping leaves two
// probe periods after the first, and a peer that goes silent is declared dead within
// interval + 2 x probe + timeout (1.25 s at the defaults) while a healthy connection carries
// four heartbeat frames a second (two pings, two pongs), half of what overlapping pings every
// 250 ms need for the same bound: half the work and bandwidth for a gateway holding many
// mostly idle connections.

export interface HeartbeatOptions {
  /** While the peer answers, a ping is sent this long after the previous one. @default 500 */
  intervalMs: number;
  /** While a ping is unanswered, another follows this long after it. @default 125 */
  probeMs: number;
  /** L1: a ping unanswered this long counts as a miss and another is sent at once. @default 500 */
  timeoutMs: number;
  /** L2: this many consecutive misses declare the peer dead. @default 3 */
  misses: number;
}

export const DEFAULT_HEARTBEAT: Readonly<HeartbeatOptions> = {
  intervalMs: 500,
  probeMs: 125,
  timeoutMs: 500,
  misses: 3,
};

/** What `HeartbeatTable.step` asks the caller to do. */
export const HeartbeatStep = {
  /** Nothing due. */
  idle: 0,
  /** Send a ping now: the interval's, or a probe. */
  ping: 1,
  /** L1: an unanswered ping timed out (one more miss); send a ping again now. */
  resend: 2,
  /** L2: `misses` consecutive timeouts: the peer is dead. */
  dead: 3,
  /** L1, but a younger ping is still waiting for its pong: nothing to send. */
  miss: 4,
} as const;
export type HeartbeatStep = (typeof HeartbeatStep)[keyof typeof HeartbeatStep];

/**
 * The heartbeat state of many connections, one row each, driven by the caller's clock: no
 * timers of its own, so a gateway drives thousands of rows from one sweep and the SDK its one
 * row from one timer. Rows live in typed arrays (about 100 bytes per connection) instead of an
 * object per connection.
 *
 * Any pong for a ping of ours proves the peer alive (misses reset), and so does `heard` (any
 * other valid frame from the peer, such as its own ping): the peer cannot be frozen if it
 * just spoke. Only pongs give RTT samples.
 */
export class HeartbeatTable {
  readonly options: Readonly<HeartbeatOptions>;
  private capacity = 0;
  private used = 0;
  private readonly free: number[] = [];
  /** When the next ping (the interval's or a probe) is due; Infinity once the row is dead. */
  private nextPingAt = new Float64Array(0);
  private startedAt = new Float64Array(0);
  private lastPongAt = new Float64Array(0);
  private lastHeardAt = new Float64Array(0);
  private lastRtt = new Float64Array(0);
  private srtt = new Float64Array(0);
  private rttVar = new Float64Array(0);
  private sampleCount = new Uint32Array(0);
  /** Pings sent since the peer last proved alive whose send time is kept (at most `misses`). */
  private unanswered = new Uint8Array(0);
  /** How many of those timed out (L1). */
  private timedOut = new Uint8Array(0);
  /** Send times of the unanswered pings, `misses` slots per row. */
  private sentAt = new Float64Array(0);

  constructor(options: Readonly<HeartbeatOptions>) {
    if (!Number.isInteger(options.misses) || options.misses < 1 || options.misses > 255)
      throw new RangeError(`heartbeat misses must be an integer in 1..255, got ${options.misses}`);
    for (const key of ['intervalMs', 'probeMs', 'timeoutMs'] as const) {
      if (!(Number.isFinite(options[key]) && options[key] > 0))
        throw new RangeError(`heartbeat ${key} must be a positive number, got ${options[key]}`);
    }
    this.options = options;
  }

  /** Rows handed out and not removed; rows are below this bound (for tables kept alongside). */
  get rowBound(): number {
    return this.used;
  }

  /** A new row; `firstPingAt` spreads the pings of many connections over the interval. */
  add(now: number, firstPingAt = now): number {
    const row = this.free.pop() ?? this.used++;
    if (row >= this.capacity) this.grow(Math.max(16, this.capacity * 2));
    this.nextPingAt[row] = firstPingAt;
    this.startedAt[row] = now;
    this.lastPongAt[row] = now;
    this.lastHeardAt[row] = now;
    this.lastRtt[row] = -1;
    this.srtt[row] = -1;
    this.rttVar[row] = 0;
    this.sampleCount[row] = 0;
    this.unanswered[row] = 0;
    this.timedOut[row] = 0;
    return row;
  }

  /** Gives the row back for reuse. */
  remove(row: number): void {
    this.nextPingAt[row] = Infinity;
    this.free.push(row);
  }

  /**
   * Advances the row to `now`. The caller sends a ping (timestamp `now`) on `ping` and
   * `resend`, counts an L1 timeout on `resend` and `miss`, and closes the connection on `dead`.
   * A timeout sends a ping only when none is left in flight (a younger unanswered ping already
   * probes the peer), and no more than `misses` pings are ever left unanswered: the last of
   * them decides.
   */
  step(row: number, now: number): HeartbeatStep {
    const next = this.nextPingAt[row]!;
    if (next === Infinity) return HeartbeatStep.idle;
    const { probeMs, timeoutMs, misses } = this.options;
    const base = row * misses;
    const unanswered = this.unanswered[row]!;
    let timedOut = this.timedOut[row]!;
    const before = timedOut;
    while (timedOut < unanswered && now - this.sentAt[base + timedOut]! >= timeoutMs) timedOut++;
    this.timedOut[row] = timedOut;
    if (timedOut >= misses) {
      this.nextPingAt[row] = Infinity;
      return HeartbeatStep.dead;
    }
    const timeout = timedOut > before;
    const due = now >= next && unanswered < misses;
    if (!due && !(timeout && timedOut === unanswered))
      return timeout ? HeartbeatStep.miss : HeartbeatStep.idle;
    this.sentAt[base + unanswered] = now;
    this.unanswered[row] = unanswered + 1;
    // Unanswered so far: the next ping is a probe, unless a pong puts the row back on its
    // interval first. Timed from now, so a stalled caller restarts without a burst.
    this.nextPingAt[row] = now + probeMs;
    return timeout ? HeartbeatStep.resend : HeartbeatStep.ping;
  }

  /**
   * A pong echoing `timestampMs` arrived at `now`. Any pong for a ping of this row (a late one
   * too) proves the peer alive, and the next ping is due an interval after the one it answers.
   * Returns the RTT sample, or -1 when the timestamp cannot be one of ours (before the row
   * started, or in the future) or the row is dead.
   */
  pong(row: number, now: number, timestampMs: number): number {
    if (
      this.nextPingAt[row] === Infinity ||
      timestampMs < this.startedAt[row]! ||
      timestampMs > now
    )
      return -1;
    const rtt = now - timestampMs;
    this.unanswered[row] = 0;
    this.timedOut[row] = 0;
    this.nextPingAt[row] = timestampMs + this.options.intervalMs;
    this.lastPongAt[row] = now;
    this.lastHeardAt[row] = now;
    this.lastRtt[row] = rtt;
    this.sampleCount[row] = this.sampleCount[row]! + 1;
    const srtt = this.srtt[row]!;
    if (srtt < 0) {
      this.srtt[row] = rtt;
      this.rttVar[row] = rtt / 2;
    } else {
      this.rttVar[row] = this.rttVar[row]! + (Math.abs(srtt - rtt) - this.rttVar[row]!) / 4;
      this.srtt[row] = srtt + (rtt - srtt) / 8;
    }
    return rtt;
  }

  /**
   * Another valid frame from the peer (its ping, a request, a message) arrived: it is alive, so
   * the misses reset and our next ping waits a full interval from now.
   */
  heard(row: number, now: number): void {
    const next = this.nextPingAt[row]!;
    if (next === Infinity) return;
    this.unanswered[row] = 0;
    this.timedOut[row] = 0;
    this.lastHeardAt[row] = now;
    if (next < now + this.options.intervalMs) this.nextPingAt[row] = now + this.options.intervalMs;
  }

  /** When `step` will next have something to do for the row. */
  nextDeadline(row: number): number {
    const next = this.nextPingAt[row]!;
    const timedOut = this.timedOut[row]!;
    return timedOut < this.unanswered[row]!
      ? Math.min(next, this.sentAt[row * this.options.misses + timedOut]! + this.options.timeoutMs)
      : next;
  }

  /** Whether the row declared its peer dead. */
  isDead(row: number): boolean {
    return this.nextPingAt[row] === Infinity;
  }

  /** Consecutive L1 timeouts of the current series (reset when the peer proves alive). */
  misses(row: number): number {
    return this.timedOut[row]!;
  }

  /** When the last valid pong arrived (the row's start before the first). */
  lastPong(row: number): number {
    return this.lastPongAt[row]!;
  }

  /** When the peer last proved alive (pong or any other frame; the row's start before). */
  lastHeard(row: number): number {
    return this.lastHeardAt[row]!;
  }

  /** Last RTT sample, ms; -1 before the first. */
  lastRttMs(row: number): number {
    return this.lastRtt[row]!;
  }

  /** Smoothed RTT (EWMA, α = 1/8 as RFC 6298), ms; -1 before the first sample. */
  srttMs(row: number): number {
    return this.srtt[row]!;
  }

  /** RTT variation (EWMA of |sample - srtt|, β = 1/4), ms. */
  rttVarMs(row: number): number {
    return this.rttVar[row]!;
  }

  /** RTT samples taken. */
  samples(row: number): number {
    return this.sampleCount[row]!;
  }

  private grow(capacity: number): void {
    const grown = <T extends Float64Array | Uint32Array | Uint8Array>(old: T, fresh: T): T => {
      fresh.set(old);
      return fresh;
    };
    this.nextPingAt = grown(this.nextPingAt, new Float64Array(capacity));
    this.startedAt = grown(this.startedAt, new Float64Array(capacity));
    this.lastPongAt = grown(this.lastPongAt, new Float64Array(capacity));
    this.lastHeardAt = grown(this.lastHeardAt, new Float64Array(capacity));
    this.lastRtt = grown(this.lastRtt, new Float64Array(capacity));
    this.srtt = grown(this.srtt, new Float64Array(capacity));
    this.rttVar = grown(this.rttVar, new Float64Array(capacity));
    this.sampleCount = grown(this.sampleCount, new Uint32Array(capacity));
    this.unanswered = grown(this.unanswered, new Uint8Array(capacity));
    this.timedOut = grown(this.timedOut, new Uint8Array(capacity));
    this.sentAt = grown(this.sentAt, new Float64Array(capacity * this.options.misses));
    this.capacity = capacity;
  }
}

/**
 * Upper bound on the time from a peer going silent to `dead`, when `step` runs at least every
 * `granularityMs` (the gateway's sweep; 0 for exact timers): the first ping after the silence
 * leaves within one interval of the last one answered; each further one within
 * min(probe, timeout) of the previous (the probe or the resend after a timeout, whichever comes
 * first); the last waits its timeout; every check can be up to one granule late.
 */
export function heartbeatDetectionBoundMs(options: HeartbeatOptions, granularityMs = 0): number {
  const { intervalMs, probeMs, timeoutMs, misses } = options;
  return (
    intervalMs +
    (misses - 1) * Math.min(probeMs, timeoutMs) +
    timeoutMs +
    (misses + 1) * granularityMs
  );
}
