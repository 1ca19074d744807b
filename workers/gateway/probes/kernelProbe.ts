/**
 * Kernel TCP probes (seed 2.1): TCP_INFO of one socket, TCP_USER_TIMEOUT and keepalive knobs,
 * and a batched sweep of every socket of a listening port through one NETLINK_SOCK_DIAG dump
 * (the way `ss -ti` asks), run on a libuv worker thread by the native addon
 * (`native/tcp_probe.c`, built by node-gyp from the repo's binding.gyp).
 *
 * Loading never throws: off Linux, or when the addon is missing or broken, `kernelProbes`
 * reports `available: false` with the reason and every function answers "unknown" (null /
 * false). `KernelSweeper` watches registered sockets every 500 ms, reports per-connection
 * deltas (retransmits, unacked, lost, state) and "flash cuts": the kernel saw the connection go
 * to CLOSE / CLOSE_WAIT (or it vanished from the dump) before the application saw an error or a
 * close. It knows nothing of the gateway: callers register sockets under their own keys.
 */
import { existsSync, fstatSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIPv4, isIPv6, type Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------------------------
// TCP states

/** Linux's tcp_states (include/net/tcp_states.h); 1, 6 and 7 are the seed's table. */
export const TcpState = {
  ESTABLISHED: 1,
  SYN_SENT: 2,
  SYN_RECV: 3,
  FIN_WAIT1: 4,
  FIN_WAIT2: 5,
  TIME_WAIT: 6,
  CLOSE: 7,
  CLOSE_WAIT: 8,
  LAST_ACK: 9,
  LISTEN: 10,
  CLOSING: 11,
  NEW_SYN_RECV: 12,
  BOUND_INACTIVE: 13,
} as const;
export type TcpStateName = keyof typeof TcpState;

export interface TcpStateInfo {
  value: number;
  name: TcpStateName;
  /** The kernel's constant (`TCP_ESTABLISHED`), as the seed's table writes it. */
  kernelName: string;
  meaning: string;
}

const meanings: Record<TcpStateName, string> = {
  ESTABLISHED: 'connection open, data flows both ways',
  SYN_SENT: 'active open, SYN sent, waiting for SYN-ACK',
  SYN_RECV: 'passive open, SYN-ACK sent, waiting for the final ACK',
  FIN_WAIT1: 'we closed, our FIN not yet acknowledged',
  FIN_WAIT2: 'we closed, FIN acknowledged, waiting for the peer FIN',
  TIME_WAIT: 'closed actively; waiting for stray segments of the old connection',
  CLOSE: 'kernel released the connection (flash-cut sign when the application saw no error)',
  CLOSE_WAIT: 'peer sent FIN (or died); we have not closed yet',
  LAST_ACK: 'peer closed, then we closed; waiting for the ACK of our FIN',
  LISTEN: 'listening socket',
  CLOSING: 'both sides closed at once; waiting for the ACK of our FIN',
  NEW_SYN_RECV: 'request socket of a connection being accepted',
  BOUND_INACTIVE: 'bound, not listening or connected',
};

export const TCP_STATES: readonly TcpStateInfo[] = (
  Object.entries(TcpState) as Array<[TcpStateName, number]>
).map(([name, value]) => ({ value, name, kernelName: `TCP_${name}`, meaning: meanings[name] }));

const stateNames: Array<TcpStateName | undefined> = [];
for (const s of TCP_STATES) stateNames[s.value] = s.name;

/** 'ESTABLISHED', ... ; 'UNKNOWN' for null and values Linux does not define. */
export function tcpStateName(state: number | null | undefined): TcpStateName | 'UNKNOWN' {
  return (state !== null && state !== undefined && stateNames[state]) || 'UNKNOWN';
}

// ---------------------------------------------------------------------------------------------
// Addon surface

export interface TcpInfo {
  state: number;
  /** Smoothed RTT, microseconds. */
  rtt: number;
  rttvar: number;
  /** Unrecovered RTO timeouts in a row (tcpi_retransmits). */
  retransmits: number;
  totalRetrans: number;
  /** Segments sent and not acknowledged (tcpi_unacked). */
  unacked: number;
  lost: number;
  notsentBytes: number;
  /** Milliseconds since data was last received. */
  lastDataRecv: number;
  sndCwnd: number;
  /** SO_SNDBUF in bytes (-1 if it could not be read). */
  sndBuf: number;
  /** Bytes written and not yet acknowledged (SIOCOUTQ; -1 if unknown). */
  outq: number;
  /** Bytes received and not yet read (SIOCINQ; -1 if unknown). */
  inq: number;
}

export interface KeepaliveSettings {
  enabled: boolean;
  idleS: number;
  intervalS: number;
  count: number;
}

/** What `sweep` resolves to: `count` rows of `stride` uint32 columns (see `SweepField`). */
export interface RawSweep {
  data: Uint32Array;
  count: number;
  stride: number;
  /** Time the dump took on the worker thread, microseconds. */
  dumpUs: number;
}

/** Column offsets of a sweep row; checked against the addon's own table when it loads. */
export const SweepField = {
  family: 0,
  state: 1,
  localPort: 2,
  remotePort: 3,
  inode: 4,
  rtt: 5,
  rttvar: 6,
  retransmits: 7,
  totalRetrans: 8,
  unacked: 9,
  lost: 10,
  notsentBytes: 11,
  lastDataRecv: 12,
  sndCwnd: 13,
  sndBuf: 14,
  outq: 15,
  inq: 16,
  hasInfo: 17,
  remoteAddr: 18,
  localAddr: 22,
} as const;
/** uint32 columns per sweep row. */
export const SWEEP_STRIDE = 26;

interface NativeAddon {
  supported: boolean;
  abiVersion?: number;
  fields?: Record<string, number>;
  tcpInfo(fd: number): TcpInfo;
  setUserTimeout(fd: number, ms: number): boolean;
  getUserTimeout(fd: number): number;
  setKeepalive(fd: number, idleS: number, intervalS: number, count: number): boolean;
  getKeepalive(fd: number): KeepaliveSettings;
  sweep(localPort: number, stateMask?: number): Promise<RawSweep>;
}

/** One socket of a sweep, decoded (for tests and diagnostics; the sweeper reads raw rows). */
export interface SweepRow extends Omit<TcpInfo, 'sndBuf' | 'outq' | 'inq'> {
  family: 4 | 6;
  stateName: string;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  inode: number;
  /** False for sockets the kernel reports without tcp_info (TIME_WAIT, request sockets). */
  hasInfo: boolean;
  sndBuf: number;
  outq: number;
  inq: number;
}

export interface KernelProbes {
  /** True when the addon loaded on Linux and every call below reaches the kernel. */
  readonly available: boolean;
  /** Why it is unavailable; null when available. */
  readonly reason: string | null;
  /** The addon file that was (or would have been) loaded. */
  readonly path: string | null;
  /** TCP_INFO and friends of one socket; null when unknown (unavailable, bad fd, not TCP). */
  tcpInfo(fd: number): TcpInfo | null;
  /** TCP_USER_TIMEOUT in ms; false when it could not be set. */
  setUserTimeout(fd: number, ms: number): boolean;
  getUserTimeout(fd: number): number | null;
  /** SO_KEEPALIVE with TCP_KEEPIDLE / KEEPINTVL / KEEPCNT (Node sets only the idle time). */
  setKeepalive(fd: number, idleS: number, intervalS: number, count: number): boolean;
  getKeepalive(fd: number): KeepaliveSettings | null;
  /**
   * Every TCP socket (but listeners) whose local port is `localPort`, IPv4 and IPv6, from one
   * sock_diag dump per family on a worker thread. Resolves to null when unavailable; rejects
   * with the errno (`code`) when the kernel refuses the dump.
   */
  sweepRaw(localPort: number): Promise<RawSweep | null>;
  /** `sweepRaw`, decoded into objects. */
  sweep(localPort: number): Promise<SweepRow[] | null>;
}

export const ADDON_FILE = 'streamheal_probes.node';

/** build/Release/streamheal_probes.node in the nearest ancestor folder that has one. */
export function defaultAddonPath(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, 'build', 'Release', ADDON_FILE);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return null;
}

function unavailable(reason: string, path: string | null): KernelProbes {
  return {
    available: false,
    reason,
    path,
    tcpInfo: () => null,
    setUserTimeout: () => false,
    getUserTimeout: () => null,
    setKeepalive: () => false,
    getKeepalive: () => null,
    sweepRaw: () => Promise.resolve(null),
    sweep: () => Promise.resolve(null),
  };
}

function attempt<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch {
    return null;
  }
}

/**
 * Loads the addon from `addonPath` (default: STREAMHEAL_PROBES_ADDON, else the nearest
 * build/Release). Never throws.
 */
export function loadKernelProbes(
  addonPath: string | null = process.env.STREAMHEAL_PROBES_ADDON ?? defaultAddonPath(),
): KernelProbes {
  if (process.platform !== 'linux')
    return unavailable(`kernel probes need Linux (this is ${process.platform})`, addonPath);
  if (!addonPath)
    return unavailable(`native addon ${ADDON_FILE} not built (npm ci builds it)`, null);
  const path = resolve(addonPath);
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(path) as NativeAddon;
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    return unavailable(`native addon failed to load from ${path}: ${message}`, path);
  }
  if (!addon || addon.supported !== true)
    return unavailable(`native addon at ${path} does not support this platform`, path);
  for (const [name, index] of Object.entries(SweepField)) {
    if (addon.fields?.[name] !== index || Object.keys(addon.fields).length !== SWEEP_STRIDE)
      return unavailable(`native addon at ${path} has another row layout; rebuild it`, path);
  }

  const sweepRaw = (localPort: number): Promise<RawSweep | null> => {
    try {
      return addon.sweep(localPort);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  };
  return {
    available: true,
    reason: null,
    path,
    tcpInfo: (fd) => (fd >= 0 ? attempt(() => addon.tcpInfo(fd)) : null),
    setUserTimeout: (fd, ms) => fd >= 0 && attempt(() => addon.setUserTimeout(fd, ms)) === true,
    getUserTimeout: (fd) => (fd >= 0 ? attempt(() => addon.getUserTimeout(fd)) : null),
    setKeepalive: (fd, idleS, intervalS, count) =>
      fd >= 0 && attempt(() => addon.setKeepalive(fd, idleS, intervalS, count)) === true,
    getKeepalive: (fd) => (fd >= 0 ? attempt(() => addon.getKeepalive(fd)) : null),
    sweepRaw,
    sweep: async (localPort) => {
      const raw = await sweepRaw(localPort);
      return raw ? decodeSweep(raw) : null;
    },
  };
}

/** The process-wide probes, loaded once at import. */
export const kernelProbes: KernelProbes = loadKernelProbes();

/** The socket's file descriptor (`socket._handle.fd`), -1 when it has none (closed, not TCP). */
export function fdOf(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : -1;
}

// ---------------------------------------------------------------------------------------------
// Addresses and matching keys

function formatIPv4(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}`;
}

function formatIPv6(words: ArrayLike<number>): string {
  const groups: number[] = [];
  for (let i = 0; i < 4; i++) groups.push((words[i]! >>> 16) & 0xffff, words[i]! & 0xffff);
  // RFC 5952: compress the longest run (>= 2) of zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** IPv4 text to a uint32, or null. */
function parseIPv4(text: string): number | null {
  if (!isIPv4(text)) return null;
  const parts = text.split('.').map(Number);
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

/** IPv6 text to four uint32 words, or null. */
function parseIPv6(text: string): number[] | null {
  let bare = text.split('%')[0]!;
  if (!isIPv6(bare)) return null;
  const lastColon = bare.lastIndexOf(':');
  const tail = bare.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseIPv4(tail);
    if (v4 === null) return null;
    bare = `${bare.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = bare.split('::');
  if (halves.length > 2) return null;
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const left = parse(halves[0]!);
  const right = halves.length === 2 ? parse(halves[1]!) : [];
  const fill = 8 - left.length - right.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const groups = [...left, ...new Array<number>(fill).fill(0), ...right];
  const words: number[] = [];
  for (let i = 0; i < 4; i++) words.push(((groups[2 * i]! << 16) >>> 0) + groups[2 * i + 1]!);
  return words;
}

/**
 * A remote endpoint the way sweep rows hold it: IPv4 (and IPv4-mapped IPv6) in `a0`, IPv6 in
 * `a0`..`a3`, each word as an int32, so matching compares small integers and builds no text.
 */
export interface Endpoint {
  family: 4 | 6;
  a0: number;
  a1: number;
  a2: number;
  a3: number;
  port: number;
}

export function parseEndpoint(
  address: string | undefined,
  port: number | undefined,
): Endpoint | null {
  if (!address || port === undefined || port <= 0) return null;
  const v4 = parseIPv4(address.startsWith('::ffff:') ? address.slice(7) : address);
  if (v4 !== null) return { family: 4, a0: v4 | 0, a1: 0, a2: 0, a3: 0, port };
  const v6 = parseIPv6(address);
  if (!v6) return null;
  if (v6[0] === 0 && v6[1] === 0 && v6[2] === 0xffff)
    return { family: 4, a0: v6[3]! | 0, a1: 0, a2: 0, a3: 0, port };
  return { family: 6, a0: v6[0]! | 0, a1: v6[1]! | 0, a2: v6[2]! | 0, a3: v6[3]! | 0, port };
}

function rowAddress(data: Uint32Array, at: number, family: number): string {
  return family === 4 ? formatIPv4(data[at]!) : formatIPv6(data.subarray(at, at + 4));
}

/** Rows of a raw sweep as objects. */
export function decodeSweep(raw: RawSweep): SweepRow[] {
  const rows: SweepRow[] = [];
  const d = raw.data;
  for (let i = 0; i < raw.count; i++) {
    const b = i * raw.stride;
    const family = d[b + SweepField.family] === 4 ? 4 : 6;
    rows.push({
      family,
      stateName: tcpStateName(d[b + SweepField.state]),
      localAddress: rowAddress(d, b + SweepField.localAddr, family),
      localPort: d[b + SweepField.localPort]!,
      remoteAddress: rowAddress(d, b + SweepField.remoteAddr, family),
      remotePort: d[b + SweepField.remotePort]!,
      inode: d[b + SweepField.inode]!,
      hasInfo: d[b + SweepField.hasInfo] === 1,
      ...sampleFields(d, b),
    });
  }
  return rows;
}

function sampleFields(d: Uint32Array, b: number): TcpInfo {
  return {
    state: d[b + SweepField.state]!,
    rtt: d[b + SweepField.rtt]!,
    rttvar: d[b + SweepField.rttvar]!,
    retransmits: d[b + SweepField.retransmits]!,
    totalRetrans: d[b + SweepField.totalRetrans]!,
    unacked: d[b + SweepField.unacked]!,
    lost: d[b + SweepField.lost]!,
    notsentBytes: d[b + SweepField.notsentBytes]!,
    lastDataRecv: d[b + SweepField.lastDataRecv]!,
    sndCwnd: d[b + SweepField.sndCwnd]!,
    sndBuf: d[b + SweepField.sndBuf]!,
    outq: d[b + SweepField.outq]!,
    inq: d[b + SweepField.inq]!,
  };
}

// ---------------------------------------------------------------------------------------------
// The sweeper

export interface ConnectionSample extends TcpInfo {
  stateName: string;
  /** 'netlink' (batched sweep) or 'getsockopt' (per-socket fallback). */
  source: 'netlink' | 'getsockopt';
  /** Date.now() of the sweep. */
  at: number;
}

export interface ConnectionDelta {
  key: string;
  slot: number;
  previous: ConnectionSample;
  current: ConnectionSample;
  stateChanged: boolean;
  /** Growth since the previous sweep (never negative). */
  totalRetransDelta: number;
  retransmitsDelta: number;
  unackedDelta: number;
  lostDelta: number;
}

export interface FlashCutEvent {
  key: string;
  slot: number;
  /** The kernel state that revealed it; null when the socket vanished and its state is unknown. */
  state: number | null;
  stateName: string;
  /** The socket was no longer in the dump (the kernel had released it: CLOSE). */
  vanished: boolean;
  /** Node had read the peer's FIN ('end') without an error or a close. */
  peerEnded: boolean;
  /** The last sample before the cut, null if it was never seen. */
  last: ConnectionSample | null;
  at: number;
}

export interface SweepStats {
  seq: number;
  mode: 'netlink' | 'getsockopt';
  /** Rows the kernel returned for the port. */
  rows: number;
  registered: number;
  matched: number;
  /** Wall time from the request to the answer (worker thread + queueing), ms. */
  wallMs: number;
  /** Time the dump took on the worker thread, ms (0 for getsockopt). */
  dumpMs: number;
  /** Main-thread time spent matching rows and emitting events, ms (all slices). */
  mainMs: number;
  /** The longest slice of that work, ms: the most the sweep held the event loop at once. */
  maxSliceMs: number;
}

export interface KernelSweeperOptions {
  /** Local (listening) port whose sockets are swept. */
  port: number;
  /** Default 500 (seed 2.1). */
  intervalMs?: number;
  /** Default: the process-wide `kernelProbes`. */
  probes?: KernelProbes;
  /** 'auto' (default): netlink sweep, per-socket getsockopt when the dump fails. */
  mode?: 'auto' | 'netlink' | 'getsockopt';
  onDelta?: (delta: ConnectionDelta) => void;
  onFlashCut?: (event: FlashCutEvent) => void;
  onSweep?: (stats: SweepStats) => void;
  onError?: (error: Error) => void;
}

// Per-registration state lives in typed arrays indexed by slot, so a sweep over 10,000 rows
// touches a few compact arrays instead of 10,000 scattered objects (it stays well under 1 ms).
// The sample columns, SAMPLE_STRIDE per slot in a Float64Array:
const S_STATE = 0;
const S_RTT = 1;
const S_RTTVAR = 2;
const S_RETRANSMITS = 3;
const S_TOTAL_RETRANS = 4;
const S_UNACKED = 5;
const S_LOST = 6;
const S_NOTSENT = 7;
const S_LAST_DATA_RECV = 8;
const S_SND_CWND = 9;
const S_SNDBUF = 10;
const S_OUTQ = 11;
const S_INQ = 12;
const S_AT = 13;
/** 0: no sample yet, 1: netlink, 2: getsockopt. */
const S_SOURCE = 14;
const SAMPLE_STRIDE = 15;
/** Rows matched per event-loop turn. */
const SLICE_ROWS = 1024;
/** Per-socket getsockopt calls per event-loop turn. */
const SLICE_SOCKETS = 512;

/** Row columns copied into sample columns S_STATE..S_INQ, in that order. */
const ROW_TO_SAMPLE = [
  SweepField.state,
  SweepField.rtt,
  SweepField.rttvar,
  SweepField.retransmits,
  SweepField.totalRetrans,
  SweepField.unacked,
  SweepField.lost,
  SweepField.notsentBytes,
  SweepField.lastDataRecv,
  SweepField.sndCwnd,
  SweepField.sndBuf,
  SweepField.outq,
  SweepField.inq,
] as const;

class Slots {
  capacity = 0;
  /** 0: no remote endpoint yet; 4 or 6. */
  family = new Int32Array(0);
  a0 = new Int32Array(0);
  a1 = new Int32Array(0);
  a2 = new Int32Array(0);
  a3 = new Int32Array(0);
  port = new Int32Array(0);
  /** Next slot with the same remote port, -1 at the end. */
  next = new Int32Array(0);
  inode = new Uint32Array(0);
  seen = new Int32Array(0);
  registeredSeq = new Int32Array(0);
  /** 1 once a flash cut of the slot's connection was reported. */
  cutReported = new Uint8Array(0);
  sample = new Float64Array(0);

  grow(min: number): void {
    if (min <= this.capacity) return;
    const cap = Math.max(min, this.capacity * 2, 64);
    const copy = <T extends Uint8Array | Int32Array | Uint32Array | Float64Array>(
      old: T,
      per = 1,
    ): T => {
      const next = new (old.constructor as new (n: number) => T)(cap * per);
      next.set(old);
      return next;
    };
    this.family = copy(this.family);
    this.a0 = copy(this.a0);
    this.a1 = copy(this.a1);
    this.a2 = copy(this.a2);
    this.a3 = copy(this.a3);
    this.port = copy(this.port);
    this.next = copy(this.next);
    this.inode = copy(this.inode);
    this.seen = copy(this.seen);
    this.registeredSeq = copy(this.registeredSeq);
    this.cutReported = copy(this.cutReported);
    this.sample = copy(this.sample, SAMPLE_STRIDE);
    this.capacity = cap;
  }
}

/**
 * Sweeps the kernel's view of one port every `intervalMs` and compares it with the sockets
 * registered here. Events come through the option callbacks; errors thrown by callbacks go to
 * `onError`.
 *
 * - Rows match registrations by remote address and port (IPv4-mapped IPv6 counts as IPv4), and
 *   then by the socket's inode once it is known.
 * - `onDelta` fires when, since the previous sweep, the state changed or retransmits, total
 *   retransmits, unacked or lost grew.
 * - `onFlashCut` fires once per connection when the kernel reports CLOSE_WAIT or CLOSE, or the
 *   socket is gone from the dump (then getsockopt on its fd tells CLOSE from unknown), while the
 *   application has seen neither an error nor a close of it (the socket is neither `errored`
 *   nor `destroyed`). Node reading the FIN ('end') does not count as seeing it: `peerEnded`
 *   says so.
 * - The owner unregisters a socket when it closes. Matching runs in slices of SLICE_ROWS rows with an
 *   event-loop turn between them; without netlink (or after three failed dumps in 'auto'
 *   mode) it falls back to getsockopt per socket, also in slices.
 *
 * ```ts
 * const sweeper = new KernelSweeper({ port, onFlashCut: (e) => ..., onDelta: (d) => ... });
 * sweeper.start();
 * server.on('connection', (socket) => {
 *   const slot = sweeper.register(id, socket);
 *   socket.once('close', () => sweeper.unregister(slot));
 * });
 * ```
 */
export class KernelSweeper {
  readonly probes: KernelProbes;
  readonly port: number;
  readonly intervalMs: number;
  private mode: 'netlink' | 'getsockopt';
  private readonly auto: boolean;
  /** Per slot: the registered socket (undefined: free) and the key its events carry. */
  private readonly sockets: Array<Socket | undefined> = [];
  private readonly keys: string[] = [];
  private registered = 0;
  private readonly freeSlots: number[] = [];
  private highWater = 0;
  private readonly slots = new Slots();
  /** Remote port -> first slot with that remote port (-1: none); chained through `next`. */
  private readonly portHead = new Int32Array(65536).fill(-1);
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private inFlight: Promise<SweepStats | null> | null = null;
  private seq = 0;
  private failures = 0;

  constructor(private readonly options: KernelSweeperOptions) {
    this.probes = options.probes ?? kernelProbes;
    this.port = options.port;
    this.intervalMs = options.intervalMs ?? 500;
    this.auto = (options.mode ?? 'auto') === 'auto';
    this.mode = options.mode === 'getsockopt' ? 'getsockopt' : 'netlink';
  }

  /** False when the probes are unavailable: samples and events are then all "unknown". */
  get available(): boolean {
    return this.probes.available;
  }

  get reason(): string | null {
    return this.probes.reason;
  }

  /** 'netlink' or 'getsockopt' (after failed dumps in auto mode). */
  get currentMode(): 'netlink' | 'getsockopt' {
    return this.mode;
  }

  get size(): number {
    return this.registered;
  }

  /**
   * Watches `socket`; its events carry `key`. Returns the registration's slot, which the caller
   * passes back to `unregister` when the connection closes (nothing else releases it), and
   * to `sample` and `reading`. A registration holds no listener or closure: what Node knows
   * of the socket (destroyed, errored, the peer's FIN read) is read from it when needed.
   */
  register(key: string, socket: Socket): number {
    const slot = this.freeSlots.pop() ?? this.highWater++;
    this.slots.grow(slot + 1);
    const s = this.slots;
    s.family[slot] = 0;
    s.next[slot] = -1;
    s.inode[slot] = 0;
    s.seen[slot] = -1;
    s.registeredSeq[slot] = this.seq;
    s.cutReported[slot] = 0;
    s.sample.fill(0, slot * SAMPLE_STRIDE, (slot + 1) * SAMPLE_STRIDE);
    this.sockets[slot] = socket;
    this.keys[slot] = key;
    this.registered++;
    this.link(slot);
    return slot;
  }

  /** Forgets a registration (a slot that is not registered is ignored). */
  unregister(slot: number): void {
    if (this.sockets[slot] === undefined) return;
    this.unlink(slot);
    this.sockets[slot] = undefined;
    this.keys[slot] = '';
    this.registered--;
    this.freeSlots.push(slot);
  }

  /** The latest kernel sample of a registration; null when unknown. */
  sample(slot: number): ConnectionSample | null {
    return this.sockets[slot] === undefined ? null : this.sampleOf(slot);
  }

  /**
   * One figure of a registration's latest sample, without building the whole sample (the fast
   * path reads these for every connection on every tick); null when unknown.
   */
  reading(slot: number, figure: 'notsentBytes' | 'lost'): number | null {
    if (this.sockets[slot] === undefined) return null;
    const o = slot * SAMPLE_STRIDE;
    const x = this.slots.sample;
    if (!x[o + S_SOURCE]) return null;
    return x[o + (figure === 'lost' ? S_LOST : S_NOTSENT)]!;
  }

  /** Starts sweeping every `intervalMs` (timers are unref'd). No-op when unavailable. */
  start(): void {
    if (this.running || !this.probes.available) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops the timer; a sweep in flight finishes but reports nothing. */
  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Stops and forgets every registration. */
  close(): void {
    this.stop();
    for (let slot = 0; slot < this.highWater; slot++) this.unregister(slot);
  }

  /**
   * One sweep now (shares a sweep already in flight). Resolves to its stats, or null when the
   * probes are unavailable.
   */
  sweepOnce(): Promise<SweepStats | null> {
    if (!this.probes.available) return Promise.resolve(null);
    this.inFlight ??= this.runSweep().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  /** Indexes the slot by its socket's remote endpoint, once the socket has one. */
  private link(slot: number): void {
    const s = this.slots;
    if (s.family[slot] !== 0) return;
    const socket = this.sockets[slot]!;
    const remote = parseEndpoint(socket.remoteAddress, socket.remotePort);
    if (remote === null) return;
    s.family[slot] = remote.family;
    s.a0[slot] = remote.a0;
    s.a1[slot] = remote.a1;
    s.a2[slot] = remote.a2;
    s.a3[slot] = remote.a3;
    s.port[slot] = remote.port;
    s.next[slot] = this.portHead[remote.port]!;
    this.portHead[remote.port] = slot;
  }

  private unlink(slot: number): void {
    const s = this.slots;
    if (s.family[slot] === 0) return;
    const port = s.port[slot]!;
    if (this.portHead[port] === slot) {
      this.portHead[port] = s.next[slot]!;
    } else {
      let at = this.portHead[port]!;
      while (at >= 0 && s.next[at] !== slot) at = s.next[at]!;
      if (at >= 0) s.next[at] = s.next[slot]!;
    }
    s.next[slot] = -1;
    s.family[slot] = 0;
  }

  private schedule(delay: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const started = performance.now();
      void this.sweepOnce()
        .catch((error: unknown) => this.report(error))
        .finally(() => this.schedule(Math.max(0, this.intervalMs - (performance.now() - started))));
    }, delay);
    this.timer.unref();
  }

  private report(error: unknown): void {
    const err = error instanceof Error ? error : new Error(String(error));
    try {
      this.options.onError?.(err);
    } catch {
      /* a throwing error callback has nowhere else to go */
    }
  }

  private emit<T>(fn: ((arg: T) => void) | undefined, arg: T): void {
    if (!fn) return;
    try {
      fn(arg);
    } catch (error) {
      this.report(error);
    }
  }

  private async runSweep(): Promise<SweepStats | null> {
    const seq = ++this.seq;
    const t0 = performance.now();
    let raw: RawSweep | null = null;
    let mode = this.mode;
    if (mode === 'netlink') {
      try {
        raw = await this.probes.sweepRaw(this.port);
        this.failures = 0;
      } catch (error) {
        this.failures++;
        const message = error instanceof Error ? error.message : String(error);
        this.report(
          new Error(
            `kernel sweep of port ${this.port} failed: ${message}` +
              (this.auto ? '; per-socket getsockopt this time' : ''),
          ),
        );
        if (!this.auto) return null;
        if (this.failures >= 3) this.mode = 'getsockopt';
        mode = 'getsockopt';
      }
      if (raw === null && mode === 'netlink') return null;
    }
    const wallMs = performance.now() - t0;
    let sliceStart = performance.now();
    let mainMs = 0;
    let maxSliceMs = 0;
    const endSlice = () => {
      const ms = performance.now() - sliceStart;
      mainMs += ms;
      if (ms > maxSliceMs) maxSliceMs = ms;
    };
    const now = Date.now();
    const s = this.slots;
    // Callbacks may register sockets and so grow the arrays: re-read them after each event.
    let { family, a0, a1, a2, a3, next, inode, seen, sample } = s;
    const refresh = () => ({ family, a0, a1, a2, a3, next, inode, seen, sample } = s);
    const portHead = this.portHead;
    let matched = 0;

    if (raw) {
      const d = raw.data;
      const stride = raw.stride;
      for (let i = 0; i < raw.count; i++) {
        if (i > 0 && i % SLICE_ROWS === 0) {
          // Give the event loop a turn between slices: one sweep never blocks it for long.
          endSlice();
          await new Promise((resolve) => setImmediate(resolve));
          sliceStart = performance.now();
          refresh();
        }
        const b = i * stride;
        let slot = portHead[d[b + SweepField.remotePort]!]!;
        if (slot < 0) continue;
        const a = b + SweepField.remoteAddr;
        const w0 = d[a]! | 0;
        if (d[b + SweepField.family] === 4) {
          while (slot >= 0 && (family[slot] !== 4 || a0[slot] !== w0)) slot = next[slot]!;
        } else {
          const w1 = d[a + 1]! | 0;
          const w2 = d[a + 2]! | 0;
          const w3 = d[a + 3]! | 0;
          while (
            slot >= 0 &&
            (family[slot] !== 6 ||
              a0[slot] !== w0 ||
              a1[slot] !== w1 ||
              a2[slot] !== w2 ||
              a3[slot] !== w3)
          )
            slot = next[slot]!;
        }
        if (slot < 0 || seen[slot] === seq) continue;
        // A registered socket has an fd, so an inode: rows without one are TIME_WAIT, request
        // or orphaned sockets of an earlier connection from the same endpoint.
        const ino = d[b + SweepField.inode]!;
        if (ino === 0 || (inode[slot] !== 0 && ino !== inode[slot])) continue;
        inode[slot] = ino;
        seen[slot] = seq;
        matched++;
        const o = slot * SAMPLE_STRIDE;
        const state = d[b + SweepField.state]!;
        if (
          sample[o + S_SOURCE] === 0 ||
          (state === sample[o + S_STATE] &&
            d[b + SweepField.totalRetrans]! <= sample[o + S_TOTAL_RETRANS]! &&
            d[b + SweepField.retransmits]! <= sample[o + S_RETRANSMITS]! &&
            d[b + SweepField.unacked]! <= sample[o + S_UNACKED]! &&
            d[b + SweepField.lost]! <= sample[o + S_LOST]! &&
            !isCut(state))
        ) {
          // Nothing to report: copy the row (the common case, no allocation).
          for (let k = 0; k < ROW_TO_SAMPLE.length; k++) sample[o + k] = d[b + ROW_TO_SAMPLE[k]!]!;
          sample[o + S_AT] = now;
          sample[o + S_SOURCE] = 1;
          if (isCut(state)) {
            this.changed(slot, null, now, false);
            refresh();
          }
        } else {
          const previous = this.sampleOf(slot);
          for (let k = 0; k < ROW_TO_SAMPLE.length; k++) sample[o + k] = d[b + ROW_TO_SAMPLE[k]!]!;
          sample[o + S_AT] = now;
          sample[o + S_SOURCE] = 1;
          this.changed(slot, previous, now, false);
          refresh();
        }
      }
    }

    const highWater = this.highWater;
    let probed = 0;
    for (let slot = 0; slot < highWater; slot++) {
      if (seen[slot] === seq) continue;
      const socket = this.sockets[slot];
      if (socket === undefined) continue;
      if (probed > 0 && probed % SLICE_SOCKETS === 0) {
        endSlice();
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
        refresh();
        if (seen[slot] === seq || this.sockets[slot] !== socket) continue;
      }
      if (family[slot] === 0) this.link(slot);
      // Per socket: the fallback mode, sockets without a usable address, and sockets missing
      // from the dump (registered before it started), to tell CLOSE from "another socket".
      const missing = raw !== null && s.registeredSeq[slot]! < seq;
      if (raw !== null && !missing && family[slot] !== 0) continue;
      if (socket.destroyed) continue;
      probed++;
      const info = this.probes.tcpInfo(fdOf(socket));
      const o = slot * SAMPLE_STRIDE;
      if (info) {
        matched++;
        seen[slot] = seq;
        const previous = this.sampleOf(slot);
        sample[o + S_STATE] = info.state;
        sample[o + S_RTT] = info.rtt;
        sample[o + S_RTTVAR] = info.rttvar;
        sample[o + S_RETRANSMITS] = info.retransmits;
        sample[o + S_TOTAL_RETRANS] = info.totalRetrans;
        sample[o + S_UNACKED] = info.unacked;
        sample[o + S_LOST] = info.lost;
        sample[o + S_NOTSENT] = info.notsentBytes;
        sample[o + S_LAST_DATA_RECV] = info.lastDataRecv;
        sample[o + S_SND_CWND] = info.sndCwnd;
        sample[o + S_SNDBUF] = info.sndBuf;
        sample[o + S_OUTQ] = info.outq;
        sample[o + S_INQ] = info.inq;
        sample[o + S_AT] = now;
        sample[o + S_SOURCE] = 2;
        this.changed(slot, previous, now, missing);
        refresh();
      } else if (missing && this.unnoticedCut(slot)) {
        s.cutReported[slot] = 1;
        this.emit(this.options.onFlashCut, {
          key: this.keys[slot]!,
          slot,
          state: null,
          stateName: 'UNKNOWN',
          vanished: true,
          peerEnded: socket.readableEnded,
          last: this.sampleOf(slot),
          at: now,
        });
      }
    }

    const stats: SweepStats = {
      seq,
      mode: raw ? 'netlink' : 'getsockopt',
      rows: raw?.count ?? 0,
      registered: this.registered,
      matched,
      wallMs: raw ? wallMs : 0,
      dumpMs: raw ? raw.dumpUs / 1000 : 0,
      mainMs: (endSlice(), mainMs),
      maxSliceMs,
    };
    if (this.running || seq === this.seq) this.emit(this.options.onSweep, stats);
    return stats;
  }

  /** The slot has a new sample; `previous` is the one before (null: first). Emits events. */
  private changed(
    slot: number,
    previous: ConnectionSample | null,
    now: number,
    vanished: boolean,
  ): void {
    const current = this.sampleOf(slot)!;
    if (
      previous &&
      (current.state !== previous.state ||
        current.totalRetrans > previous.totalRetrans ||
        current.retransmits > previous.retransmits ||
        current.unacked > previous.unacked ||
        current.lost > previous.lost)
    ) {
      this.emit(this.options.onDelta, {
        key: this.keys[slot]!,
        slot,
        previous,
        current,
        stateChanged: current.state !== previous.state,
        totalRetransDelta: Math.max(0, current.totalRetrans - previous.totalRetrans),
        retransmitsDelta: Math.max(0, current.retransmits - previous.retransmits),
        unackedDelta: Math.max(0, current.unacked - previous.unacked),
        lostDelta: Math.max(0, current.lost - previous.lost),
      });
    }
    if (isCut(current.state) && this.unnoticedCut(slot)) {
      this.slots.cutReported[slot] = 1;
      this.emit(this.options.onFlashCut, {
        key: this.keys[slot]!,
        slot,
        state: current.state,
        stateName: current.stateName,
        vanished,
        peerEnded: this.sockets[slot]!.readableEnded,
        last: previous,
        at: now,
      });
    }
  }

  /**
   * A flash cut is one the application has not seen: not reported yet, and Node knows of no
   * error or close of the socket.
   */
  private unnoticedCut(slot: number): boolean {
    const socket = this.sockets[slot]!;
    return this.slots.cutReported[slot] === 0 && !socket.destroyed && !socket.errored;
  }

  private sampleOf(slot: number): ConnectionSample | null {
    const x = this.slots.sample;
    const o = slot * SAMPLE_STRIDE;
    const source = x[o + S_SOURCE];
    if (!source) return null;
    return {
      state: x[o + S_STATE]!,
      stateName: tcpStateName(x[o + S_STATE]),
      rtt: x[o + S_RTT]!,
      rttvar: x[o + S_RTTVAR]!,
      retransmits: x[o + S_RETRANSMITS]!,
      totalRetrans: x[o + S_TOTAL_RETRANS]!,
      unacked: x[o + S_UNACKED]!,
      lost: x[o + S_LOST]!,
      notsentBytes: x[o + S_NOTSENT]!,
      lastDataRecv: x[o + S_LAST_DATA_RECV]!,
      sndCwnd: x[o + S_SND_CWND]!,
      sndBuf: x[o + S_SNDBUF]!,
      outq: x[o + S_OUTQ]!,
      inq: x[o + S_INQ]!,
      source: source === 1 ? 'netlink' : 'getsockopt',
      at: x[o + S_AT]!,
    };
  }
}

function isCut(state: number): boolean {
  return state === TcpState.CLOSE || state === TcpState.CLOSE_WAIT;
}

/** The inode of a socket's fd (matches a sweep row's `inode`); 0 when unknown. */
export function inodeOf(socket: Socket): number {
  const fd = fdOf(socket);
  if (fd < 0) return 0;
  try {
    return fstatSync(fd).ino;
  } catch {
    return 0;
  }
}
