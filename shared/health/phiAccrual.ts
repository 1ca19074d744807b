import { SlidingStatsTable } from './slidingStats.js';

/**
 * Phi-accrual failure detector (Hayashibara, Défago, Yared, Katayama, "The φ Accrual Failure
 * Detector", 2004), computed the way Akka's `PhiAccrualFailureDetector` (and Cassandra) do.
 *
 * Instead of a yes/no timeout it answers "how suspicious is this silence?": the intervals
 * between heartbeats are modelled as a normal distribution learnt from a sliding window, and
 *   phi = -log10(P(the next heartbeat arrives later than now))
 * so phi = 1 means a 10 % chance the peer is merely late, 2 means 1 %, 8 means 1e-8.
 * The caller picks the threshold; a higher one detects later but with fewer mistakes.
 *
 * Pure: time is passed in as milliseconds on any monotonic clock.
 */
export interface PhiAccrualOptions {
  /** Suspect the peer once phi reaches this. Default 8 (Akka's cluster default). */
  threshold?: number;
  /** Number of heartbeat intervals remembered. Default 100. */
  windowSize?: number;
  /**
   * Floor for the learnt standard deviation. Default 50 ms. Perfectly regular heartbeats
   * would otherwise give a near-zero deviation and phi would explode after a few ms of jitter.
   */
  minStdDevMs?: number;
  /**
   * Extra silence tolerated on top of the mean interval (GC pauses, brief stalls). Default 0.
   * It shifts the distribution's mean, as in Akka.
   */
  acceptableHeartbeatPauseMs?: number;
  /**
   * Expected interval before any has been measured. The first heartbeat seeds the window with
   * estimate ± estimate/4, as Akka does, so phi is meaningful from the start. Default 1000 ms
   * (Akka's default); set it to the heartbeat interval actually in use.
   */
  firstHeartbeatEstimateMs?: number;
}

export const PHI_ACCRUAL_DEFAULTS: Required<PhiAccrualOptions> = {
  threshold: 8,
  windowSize: 100,
  minStdDevMs: 50,
  acceptableHeartbeatPauseMs: 0,
  firstHeartbeatEstimateMs: 1000,
};

/**
 * phi for a silence of `elapsedMs` when intervals are ~N(meanMs, stdDevMs²).
 *
 * Akka approximates the normal tail with a logistic curve (Bowling et al., "A logistic
 * approximation to the cumulative normal distribution", 2009; max error ~1.4e-4):
 *   P(X > t) ≈ 1 / (1 + e^z),  z = y·(1.5976 + 0.070566·y²),  y = (t − mean) / stdDev
 * so phi = -log10(P) = log10(1 + e^z). Akka evaluates that with two branches to dodge
 * overflow; the stable softplus form below is the same number without Infinity or NaN, and
 * it keeps growing with the silence instead of saturating.
 */
export function phiOf(elapsedMs: number, meanMs: number, stdDevMs: number): number {
  const y = (elapsedMs - meanMs) / stdDevMs;
  const z = y * (1.5976 + 0.070566 * y * y);
  const softplus = z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
  return softplus / Math.LN10;
}

/**
 * Phi-accrual detectors for many peers, one row each (rows as in `SlidingStatsTable`: a gateway
 * keeps one per connection, so the state lives in typed arrays, not objects).
 */
export class PhiAccrualTable {
  readonly threshold: number;
  private readonly minStdDevMs: number;
  private readonly acceptableHeartbeatPauseMs: number;
  private readonly firstHeartbeatEstimateMs: number;
  private readonly intervals: SlidingStatsTable;
  /** Time of each row's latest heartbeat; NaN before the first. */
  private lastHeartbeatAt = new Float64Array(0);

  constructor(options: PhiAccrualOptions = {}) {
    const o = { ...PHI_ACCRUAL_DEFAULTS, ...withoutUndefined(options) };
    requirePositive('threshold', o.threshold);
    requirePositive('minStdDevMs', o.minStdDevMs);
    requirePositive('firstHeartbeatEstimateMs', o.firstHeartbeatEstimateMs);
    if (!(o.acceptableHeartbeatPauseMs >= 0) || !Number.isFinite(o.acceptableHeartbeatPauseMs)) {
      throw new RangeError(
        `acceptableHeartbeatPauseMs must be >= 0, got ${o.acceptableHeartbeatPauseMs}`,
      );
    }
    this.threshold = o.threshold;
    this.minStdDevMs = o.minStdDevMs;
    this.acceptableHeartbeatPauseMs = o.acceptableHeartbeatPauseMs;
    this.firstHeartbeatEstimateMs = o.firstHeartbeatEstimateMs;
    this.intervals = new SlidingStatsTable(o.windowSize);
  }

  /** Makes rows 0..rows-1 usable; new rows have heard nothing. */
  ensureRows(rows: number): void {
    if (rows <= this.lastHeartbeatAt.length) return;
    this.intervals.ensureRows(rows);
    const grown = new Float64Array(Math.max(rows, this.lastHeartbeatAt.length * 2, 16)).fill(NaN);
    grown.set(this.lastHeartbeatAt);
    this.lastHeartbeatAt = grown;
  }

  /** Time of the row's latest heartbeat, if any. */
  lastHeartbeatMs(row: number): number | undefined {
    const last = this.lastHeartbeatAt[row]!;
    return Number.isNaN(last) ? undefined : last;
  }

  /** Number of intervals in the row's window (including the two seeded ones). */
  sampleCount(row: number): number {
    return this.intervals.count(row);
  }

  /** Records a heartbeat from the row's peer received at `nowMs`. */
  heartbeat(row: number, nowMs: number): void {
    const last = this.lastHeartbeatAt[row]!;
    if (Number.isNaN(last)) {
      const spread = this.firstHeartbeatEstimateMs / 4;
      this.intervals.push(row, this.firstHeartbeatEstimateMs - spread);
      this.intervals.push(row, this.firstHeartbeatEstimateMs + spread);
    } else if (nowMs < last) {
      // A heartbeat from the past (reordered delivery): it says nothing about the current gap.
      return;
    } else if (this.isAvailable(row, nowMs)) {
      // As in Akka, the first heartbeat after a suspected failure is not learnt: the long
      // pause would widen the distribution and make the next real failure slower to detect.
      this.intervals.push(row, nowMs - last);
    }
    this.lastHeartbeatAt[row] = nowMs;
  }

  /**
   * Suspicion level of the row's peer at `nowMs`. 0 before the first heartbeat: a peer never
   * heard from is not suspected (Akka treats it the same way), since nothing is known about its
   * rhythm yet.
   */
  phi(row: number, nowMs: number): number {
    const last = this.lastHeartbeatAt[row]!;
    if (Number.isNaN(last)) return 0;
    const elapsed = Math.max(0, nowMs - last);
    const stdDev = Math.max(this.intervals.stdDev(row), this.minStdDevMs);
    return phiOf(elapsed, this.intervals.mean(row) + this.acceptableHeartbeatPauseMs, stdDev);
  }

  isAvailable(row: number, nowMs: number): boolean {
    return this.phi(row, nowMs) < this.threshold;
  }

  /** Forgets the row, as for a brand-new peer. */
  reset(row: number): void {
    this.intervals.clear(row);
    this.lastHeartbeatAt[row] = NaN;
  }
}

function requirePositive(name: string, value: number): void {
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`${name} must be a finite number > 0, got ${value}`);
  }
}

function withoutUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(options).filter(([, value]) => value !== undefined),
  ) as Partial<T>;
}
