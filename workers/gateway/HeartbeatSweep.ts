/**
 * The gateway's side of the application heartbeat (seed 3.1): one timer for the whole gateway
 * (no timer per connection) pings every WebSocket session, counts L1 timeouts and resends,
 * closes L2 sessions as dead, and keeps the phi-accrual suspicion gauges. Per-session state
 * (heartbeat, RTT window, phi) lives in tables indexed by the session's row, not in objects.
 */
import type { Logger } from '../../shared/telemetry/logger.js';
import { PhiAccrualTable } from '../../shared/health/phiAccrual.js';
import { SlidingStatsTable } from '../../shared/health/slidingStats.js';
import {
  DEFAULT_HEARTBEAT,
  HEARTBEAT_FRAME_BYTES,
  HeartbeatStep,
  HeartbeatTable,
  HeartbeatType,
  encodeHeartbeat,
  heartbeatClock,
  heartbeatDetectionBoundMs,
  type HeartbeatOptions,
} from '../../shared/protocol/heartbeat.js';
import type { GatewayMetrics } from './metrics.js';
import type { WsSession } from './WsSession.js';

/** The gateway's application heartbeat (seed 3.1). docs/protocol.md, "Heartbeat". */
export interface GatewayHeartbeatOptions extends HeartbeatOptions {
  /**
   * Every session's pings and timeouts are checked once per `sweepMs` by one timer for the whole
   * gateway (no timer per connection), which ticks every ~20 ms over one lane of the sessions.
   * @default 50
   */
  sweepMs: number;
  /** Phi-accrual level at which a session counts as suspect in the metrics. @default 8 */
  phiThreshold: number;
}

export const DEFAULT_GATEWAY_HEARTBEAT: Readonly<GatewayHeartbeatOptions> = {
  ...DEFAULT_HEARTBEAT,
  sweepMs: 50,
  phiThreshold: 8,
};

/** What `onSessionDegraded` learns about a session the heartbeat gave up on (L2). */
export interface SessionDegradedInfo {
  node: string;
  session: string;
  /** Peer address `host:port`. */
  peer: string;
  /** Consecutive pings left without a pong. */
  misses: number;
  /** Milliseconds since the client last proved alive (pong or any other frame). */
  silentMs: number;
  /** Smoothed heartbeat RTT in ms; -1 when no pong ever arrived. */
  srttMs: number;
  /** Phi-accrual suspicion level at that moment. */
  phi: number;
}

/** One session's heartbeat figures (for scoring and tests). */
export interface SessionHeartbeat {
  session: string;
  peer: string;
  misses: number;
  lastRttMs: number;
  srttMs: number;
  rttVarMs: number;
  /** Standard deviation of the last RTT samples (the health score's RTT stability input). */
  rttStdDevMs: number;
  samples: number;
  phi: number;
}

/** The sweep ticks about this often (ms), visiting one lane of sessions per tick. */
const LANE_TICK_MS = 20;
const MAX_LANES = 10;
/** Pong intervals each session's phi detector remembers (4 bytes each). */
const PHI_WINDOW = 32;
/** RTT samples per session for the health score's RTT stability (4 bytes each). */
const RTT_WINDOW = 32;

export interface HeartbeatSweepOptions {
  nodeId: string;
  heartbeat: Partial<GatewayHeartbeatOptions>;
  metrics: GatewayMetrics;
  logger: Logger;
  onSessionDegraded?: (info: SessionDegradedInfo) => void;
}

export class HeartbeatSweep {
  readonly heartbeat: Readonly<GatewayHeartbeatOptions>;
  private readonly table: HeartbeatTable;
  private readonly rtt = new SlidingStatsTable(RTT_WINDOW);
  private readonly suspicion: PhiAccrualTable;
  private readonly nodeId: string;
  private readonly metrics: GatewayMetrics;
  private readonly logger: Logger;
  private readonly onSessionDegraded?: (info: SessionDegradedInfo) => void;
  /**
   * Sessions split into lanes; each tick of the timer visits one lane, so every session is
   * stepped once per `sweepMs` and a sweep's pings are spread over its ticks.
   */
  private readonly lanes: Set<WsSession>[] = [];
  private readonly laneStats: { late: number; suspects: number; maxPhi: number }[] = [];
  private nextLane = 0;
  private timer?: NodeJS.Timeout;

  constructor(options: HeartbeatSweepOptions) {
    this.nodeId = options.nodeId;
    this.metrics = options.metrics;
    this.logger = options.logger;
    this.onSessionDegraded = options.onSessionDegraded;
    this.heartbeat = resolveHeartbeat(options.heartbeat);
    const { intervalMs, phiThreshold, sweepMs } = this.heartbeat;
    const lanes = Math.min(MAX_LANES, Math.max(1, Math.round(sweepMs / LANE_TICK_MS)));
    for (let i = 0; i < lanes; i++) {
      this.lanes.push(new Set());
      this.laneStats.push({ late: 0, suspects: 0, maxPhi: 0 });
    }
    this.table = new HeartbeatTable(this.heartbeat);
    this.suspicion = new PhiAccrualTable({
      threshold: phiThreshold,
      firstHeartbeatEstimateMs: intervalMs,
      windowSize: PHI_WINDOW,
    });
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.heartbeat.sweepMs / this.lanes.length).unref();
    this.logger.info(
      {
        heartbeat: this.heartbeat,
        deadWithinMs: heartbeatDetectionBoundMs(this.heartbeat, this.heartbeat.sweepMs),
      },
      'pinging clients',
    );
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * Starts pinging the session: a row in the tables, and the least loaded lane, which keeps
   * the ticks even under churn. The first ping goes out at a random point of the first
   * interval, which spreads a gateway's pings evenly over its sweeps however the connections
   * arrived.
   */
  add(session: WsSession): void {
    let lane = 0;
    for (let i = 1; i < this.lanes.length; i++)
      if (this.lanes[i]!.size < this.lanes[lane]!.size) lane = i;
    const now = heartbeatClock();
    const row = this.table.add(now, now + Math.floor(Math.random() * this.heartbeat.intervalMs));
    this.rtt.ensureRows(this.table.rowBound);
    this.suspicion.ensureRows(this.table.rowBound);
    this.rtt.clear(row);
    this.suspicion.reset(row);
    session.heartbeatRow = row;
    session.lane = lane;
    this.lanes[lane]!.add(session);
  }

  remove(session: WsSession): void {
    if (session.heartbeatRow < 0) return;
    this.lanes[session.lane]!.delete(session);
    this.table.remove(session.heartbeatRow);
    session.heartbeatRow = -1;
  }

  /** A pong from the session's client: RTT and phi samples. */
  pong(session: WsSession, timestampMs: number): void {
    const row = session.heartbeatRow;
    if (row < 0) return;
    const now = heartbeatClock();
    const rtt = this.table.pong(row, now, timestampMs);
    if (rtt < 0) return;
    this.suspicion.heartbeat(row, now);
    this.rtt.push(row, rtt);
    this.metrics.heartbeatRtt.observe(rtt / 1000);
  }

  /** Any other valid frame from the session's client proves it alive. */
  heard(session: WsSession): void {
    if (session.heartbeatRow >= 0) this.table.heard(session.heartbeatRow, heartbeatClock());
  }

  /** Consecutive unanswered pings of the session (0 when it answers, or is not pinged). */
  misses(session: WsSession): number {
    return session.heartbeatRow < 0 ? 0 : this.table.misses(session.heartbeatRow);
  }

  /** Standard deviation of the session's recent heartbeat RTTs, ms (the health score's input). */
  rttStdDev(session: WsSession): number {
    return session.heartbeatRow < 0 ? 0 : this.rtt.stdDev(session.heartbeatRow);
  }

  private *sessions(): Iterable<WsSession> {
    for (const lane of this.lanes) yield* lane;
  }

  /** Heartbeat figures of every WebSocket session. */
  sessionHeartbeats(): SessionHeartbeat[] {
    const now = heartbeatClock();
    const out: SessionHeartbeat[] = [];
    const table = this.table;
    for (const session of this.sessions()) {
      const row = session.heartbeatRow;
      out.push({
        session: session.id,
        peer: session.peer,
        misses: table.misses(row),
        lastRttMs: table.lastRttMs(row),
        srttMs: table.srttMs(row),
        rttVarMs: table.rttVarMs(row),
        rttStdDevMs: this.rtt.stdDev(row),
        samples: table.samples(row),
        phi: this.suspicion.phi(row, now),
      });
    }
    return out;
  }

  /**
   * One tick: a pass over one lane of sessions. Due pings go out (all sharing one 14-byte
   * WebSocket message, since they carry the same timestamp), L1 timeouts are counted and resent, L2
   * sessions are closed. Gauges sum the lanes' last passes.
   */
  private tick(): void {
    const heartbeat = this.heartbeat;
    const index = this.nextLane;
    this.nextLane = (index + 1) % this.lanes.length;
    const started = performance.now();
    const now = heartbeatClock();
    let message: Buffer | undefined;
    let pings = 0;
    let timeouts = 0;
    let late = 0;
    let suspects = 0;
    let maxPhi = 0;
    const phiAlways = heartbeat.phiThreshold <= 1;
    const table = this.table;
    for (const session of this.lanes[index]!) {
      if (session.isClosed) continue;
      const row = session.heartbeatRow;
      const step = table.step(row, now);
      if (step === HeartbeatStep.ping || step === HeartbeatStep.resend) {
        if (!message) {
          // The whole WebSocket message: FIN + binary opcode, unmasked (server to client),
          // payload length 12, then the heartbeat frame.
          message = Buffer.allocUnsafe(2 + HEARTBEAT_FRAME_BYTES);
          message[0] = 0x82;
          message[1] = HEARTBEAT_FRAME_BYTES;
          encodeHeartbeat(HeartbeatType.ping, now, message, 2);
        }
        session.sendHeartbeat(message);
        pings++;
      }
      if (step === HeartbeatStep.resend || step === HeartbeatStep.miss) timeouts++;
      else if (step === HeartbeatStep.dead) {
        this.sessionDegraded(session, now);
        continue;
      }
      if (table.misses(row) > 0) late++;
      // Pongs arrive about once per interval, so until a whole interval has passed since the
      // last one the silence is at most the learnt mean and phi <= -log10(0.5) = 0.3: far
      // below any useful threshold. Skipping those sessions keeps the sweep O(late sessions)
      // in the detector's memory.
      if (phiAlways || now - table.lastPong(row) > heartbeat.intervalMs) {
        const phi = this.suspicion.phi(row, now);
        if (phi >= heartbeat.phiThreshold) suspects++;
        if (phi > maxPhi) maxPhi = phi;
      }
    }
    if (pings > 0) this.metrics.heartbeatPings.inc(pings);
    if (timeouts > 0) this.metrics.heartbeatTimeouts.inc(timeouts);
    const stats = this.laneStats[index]!;
    stats.late = late;
    stats.suspects = suspects;
    stats.maxPhi = maxPhi;
    for (const lane of this.laneStats) {
      if (lane === stats) continue;
      late += lane.late;
      suspects += lane.suspects;
      maxPhi = Math.max(maxPhi, lane.maxPhi);
    }
    this.metrics.heartbeatLate.set(late);
    this.metrics.heartbeatSuspect.set(suspects);
    this.metrics.heartbeatMaxPhi.set(maxPhi);
    this.metrics.heartbeatSweep.observe((performance.now() - started) / 1000);
  }

  /** L2: the session is degraded; its peer no longer answers, so the connection is dropped. */
  private sessionDegraded(session: WsSession, now: number): void {
    const row = session.heartbeatRow;
    const table = this.table;
    const info: SessionDegradedInfo = {
      node: this.nodeId,
      session: session.id,
      peer: session.peer,
      misses: table.misses(row),
      silentMs: now - table.lastHeard(row),
      srttMs: table.srttMs(row),
      phi: this.suspicion.phi(row, now),
    };
    this.metrics.heartbeatDegraded.inc();
    this.logger.warn(info, 'session degraded: pings unanswered (heartbeat L2); closing it as dead');
    try {
      this.onSessionDegraded?.(info);
    } catch (error) {
      this.logger.error({ err: error }, 'onSessionDegraded failed');
    }
    session.terminate();
  }
}

/** Heartbeat options with defaults, validated. */
export function resolveHeartbeat(
  options: Partial<GatewayHeartbeatOptions>,
): Readonly<GatewayHeartbeatOptions> {
  const resolved = { ...DEFAULT_GATEWAY_HEARTBEAT };
  for (const [key, value] of Object.entries(options) as [keyof GatewayHeartbeatOptions, number][]) {
    if (value !== undefined) resolved[key] = value;
  }
  for (const [key, value] of Object.entries(resolved)) {
    if (!(Number.isFinite(value) && value > 0))
      throw new RangeError(`heartbeat ${key} must be a positive number, got ${value}`);
  }
  if (!Number.isInteger(resolved.misses) || resolved.misses < 1)
    throw new RangeError(`heartbeat misses must be an integer >= 1, got ${resolved.misses}`);
  return Object.freeze(resolved);
}
