/**
 * Health scores, seed section 2.5. A connection's score blends three signals the gateway
 * already measures; a node's score blends its connections with its own CPU and event loop.
 * Everything here is pure arithmetic on numbers the caller collected.
 */

// ---------------------------------------------------------------------------------------
// Connection score
// ---------------------------------------------------------------------------------------

/** The seed's weights (RTT stability, FIN/RST frequency, SYN retransmit rate); they sum to 1. */
export const CONNECTION_SCORE_WEIGHTS = {
  rttStability: 0.4,
  finRst: 0.35,
  synRetransmit: 0.25,
} as const;

/**
 * RTT stability is a falling logistic curve over the RTT standard deviation, rescaled so a
 * perfectly steady RTT scores exactly 1:
 *   stability(σ) = L((centre − σ) / scale) / L(centre / scale),  L(x) = 1 / (1 + e^−x)
 *
 * centre 50 ms: the jitter at which the score halves. A few ms is normal on a LAN or a good
 * broadband path, 10–30 ms on mobile networks, and by 50 ms of jitter pushes visibly
 * stutter; it is also a tenth of the 500 ms L1 heartbeat timeout, so a connection this
 * jittery is already eating into the detection budget.
 * scale 15 ms: the width of the fall. With it 10 ms of jitter still scores 0.97, 30 ms 0.82,
 * 50 ms 0.52, 80 ms 0.12 and 100 ms 0.04: ordinary jitter barely moves the score, and a
 * path with bufferbloat or heavy loss (jitter of 100 ms and more) contributes almost nothing.
 */
export const RTT_STABILITY_CENTRE_MS = 50;
export const RTT_STABILITY_SCALE_MS = 15;

/** FIN/RST frequency scores 0 at this many abnormal closes per minute (the seed's `freq/5`). */
export const FIN_RST_PER_MINUTE_AT_ZERO = 5;

/** SYN retransmit score is exp(−10·rate): 5 % of SYNs retransmitted already costs 40 %. */
export const SYN_RETRANSMIT_DECAY = 10;

function logistic(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** NaN or negative evidence counts as no evidence: scores never punish a missing reading. */
function evidence(x: number): number {
  return x > 0 ? x : 0;
}

/** 1 for a steady RTT, falling towards 0 as the standard deviation (ms) grows. */
export function rttStability(rttStdDevMs: number): number {
  const sigma = evidence(rttStdDevMs);
  return (
    logistic((RTT_STABILITY_CENTRE_MS - sigma) / RTT_STABILITY_SCALE_MS) /
    logistic(RTT_STABILITY_CENTRE_MS / RTT_STABILITY_SCALE_MS)
  );
}

/** The seed's `1 − min(1, freq/5)` with freq in abnormal closes (FIN/RST) per minute. */
export function finRstScore(closesPerMinute: number): number {
  return 1 - Math.min(1, evidence(closesPerMinute) / FIN_RST_PER_MINUTE_AT_ZERO);
}

/** The seed's `exp(−10·rate)`, rate = SYN retransmissions / SYNs sent (retrans_syn / syn_init). */
export function synRetransmitScore(rate: number): number {
  return Math.exp(-SYN_RETRANSMIT_DECAY * evidence(rate));
}

/** Converts a count over a window of `windowMs` into a per-minute frequency. */
export function perMinute(count: number, windowMs: number): number {
  return windowMs > 0 ? (evidence(count) * 60_000) / windowMs : 0;
}

export interface ConnectionHealthInputs {
  /** Standard deviation of recent RTT samples, ms (a sliding window, e.g. `SlidingStatsTable`). */
  rttStdDevMs: number;
  /**
   * Abnormal closes (FIN or RST without an application close, i.e. flash cuts) per minute,
   * counted for what "the connection" is across reconnects: the session, or the client's
   * address. A single socket closes once; a client that keeps dropping is what this catches.
   * Use `perMinute(count, windowMs)` to convert a windowed count.
   */
  finRstPerMinute: number;
  /** SYN retransmissions / SYNs sent over the same window, ≥ 0 (0 when nothing was sent). */
  synRetransmitRate: number;
}

/** The seed's connection health score, 0–100 (100 = healthy). NaN inputs count as no evidence. */
export function connectionHealthScore(inputs: ConnectionHealthInputs): number {
  const w = CONNECTION_SCORE_WEIGHTS;
  const blended =
    w.rttStability * rttStability(inputs.rttStdDevMs) +
    w.finRst * finRstScore(inputs.finRstPerMinute) +
    w.synRetransmit * synRetransmitScore(inputs.synRetransmitRate);
  return clamp(100 * blended, 0, 100);
}

// ---------------------------------------------------------------------------------------
// Adaptive thresholds
// ---------------------------------------------------------------------------------------

/** The seed's smoothing factor for adaptive thresholds. */
export const EWMA_ALPHA = 0.1;

/** Exponentially weighted moving average: value ← value + α·(x − value). */
export class Ewma {
  private current: number | undefined;
  private samples = 0;

  constructor(readonly alpha = EWMA_ALPHA) {
    if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`alpha must be in (0, 1], got ${alpha}`);
  }

  /** The average, or undefined before the first sample. */
  get value(): number | undefined {
    return this.current;
  }

  get count(): number {
    return this.samples;
  }

  /**
   * Folds `x` in and returns the new average. The first sample becomes the average outright;
   * starting from 0 would take ~1/α samples just to climb to the real level. NaN is ignored.
   */
  update(x: number): number | undefined {
    if (Number.isNaN(x)) return this.current;
    this.current = this.current === undefined ? x : this.current + this.alpha * (x - this.current);
    this.samples += 1;
    return this.current;
  }

  reset(): void {
    this.current = undefined;
    this.samples = 0;
  }
}

export type ThresholdDirection = 'above' | 'below' | 'both';

export interface AdaptiveThresholdOptions {
  /** Smoothing for both the baseline and the deviation. Default `EWMA_ALPHA` (0.1). */
  alpha?: number;
  /** How many deviations from the baseline count as anomalous. Default 4 (see below). */
  k?: number;
  /**
   * Floor for the deviation, in the metric's unit. Default 0. A perfectly flat series has no
   * deviation, and without a floor its first wobble would be flagged.
   */
  minDeviation?: number;
  /** Samples learnt before anything is flagged. Default 10 (= 1/α, one averaging span). */
  warmupSamples?: number;
  /** Which side is bad: 'above' for latencies, 'below' for scores. Default 'both'. */
  direction?: ThresholdDirection;
  /**
   * Whether anomalous samples move the baseline. Default true: a lasting change of level
   * (a new deployment, a new client mix) becomes the new normal within a few dozen samples.
   * Pair the threshold with a `consecutive` or `thresholdFor` rule to act on the onset; set
   * false to keep a fault from ever being learnt (then a real level shift stays flagged).
   */
  learnFromAnomalies?: boolean;
}

export interface AdaptiveVerdict {
  anomalous: boolean;
  /** The EWMA baseline the sample was judged against (before learning it). */
  baseline: number;
  /** The EWMA of absolute deviations, floored at `minDeviation`. */
  deviation: number;
  lower: number;
  upper: number;
}

/**
 * Flags samples far from their own recent history. Rule: with baseline = EWMA(x) and
 * deviation = EWMA(|x − baseline|) (both α = 0.1), a sample is anomalous when it lies outside
 *   baseline ± k·max(deviation, minDeviation)
 * on the watched side. This is the estimator TCP uses for its retransmission timeout
 * (RFC 6298: SRTT + 4·RTTVAR), hence k = 4: for normally distributed data the mean absolute
 * deviation is ~0.8σ, so 4 of them is ~3.2σ, about one false alarm per 1,400 samples on a
 * side. Each sample is judged against the baseline learnt *before* it, then learnt.
 */
export class AdaptiveThreshold {
  private readonly baselineAverage: Ewma;
  private readonly deviationAverage: Ewma;
  private readonly k: number;
  private readonly minDeviation: number;
  private readonly warmupSamples: number;
  private readonly direction: ThresholdDirection;
  private readonly learnFromAnomalies: boolean;

  constructor(options: AdaptiveThresholdOptions = {}) {
    const alpha = options.alpha ?? EWMA_ALPHA;
    this.k = options.k ?? 4;
    this.minDeviation = options.minDeviation ?? 0;
    this.warmupSamples = options.warmupSamples ?? Math.round(1 / alpha);
    this.direction = options.direction ?? 'both';
    this.learnFromAnomalies = options.learnFromAnomalies ?? true;
    if (!(this.k > 0)) throw new RangeError(`k must be > 0, got ${this.k}`);
    if (!(this.minDeviation >= 0)) {
      throw new RangeError(`minDeviation must be >= 0, got ${this.minDeviation}`);
    }
    this.baselineAverage = new Ewma(alpha);
    this.deviationAverage = new Ewma(alpha);
  }

  /** Current bounds, or undefined before the first sample. */
  bounds(): { baseline: number; deviation: number; lower: number; upper: number } | undefined {
    const baseline = this.baselineAverage.value;
    if (baseline === undefined) return undefined;
    const deviation = Math.max(this.deviationAverage.value ?? 0, this.minDeviation);
    return {
      baseline,
      deviation,
      lower: baseline - this.k * deviation,
      upper: baseline + this.k * deviation,
    };
  }

  /** Judges `x` against the history so far, then learns it. NaN is neither judged nor learnt. */
  observe(x: number): AdaptiveVerdict {
    const before = this.bounds();
    if (Number.isNaN(x)) {
      return { anomalous: false, ...(before ?? { baseline: x, deviation: 0, lower: x, upper: x }) };
    }
    const warm = before !== undefined && this.baselineAverage.count >= this.warmupSamples;
    const anomalous =
      warm &&
      ((this.direction !== 'below' && x > before.upper) ||
        (this.direction !== 'above' && x < before.lower));
    if (!anomalous || this.learnFromAnomalies) {
      const baseline = this.baselineAverage.value;
      if (baseline !== undefined) this.deviationAverage.update(Math.abs(x - baseline));
      this.baselineAverage.update(x);
    }
    return { anomalous, ...(before ?? { baseline: x, deviation: 0, lower: x, upper: x }) };
  }

  reset(): void {
    this.baselineAverage.reset();
    this.deviationAverage.reset();
  }
}

// ---------------------------------------------------------------------------------------
// Node score
// ---------------------------------------------------------------------------------------

/**
 * How a node's score is built. Each part is 0–1 and the score is their weighted geometric
 * mean × 100: any exhausted resource pulls the node to 0 however good the rest looks (a
 * node whose event loop is stalled serves nobody, whatever its connections scored a minute
 * ago), while partial degradation in one part only dents it.
 */
export const NODE_SCORE_CONSTANTS = {
  weights: { connections: 0.5, cpu: 0.25, eventLoop: 0.25 },
  /**
   * The connections part is a low percentile of the connection scores, not the mean: over
   * 10,000 connections a mean hides a tenth of them (one region, one ISP, one bad NIC queue)
   * going bad, and the minimum is always some phone in a tunnel. The 10th percentile moves
   * only when at least a tenth of the node's connections suffer together.
   */
  connectionPercentile: 0.1,
  /**
   * CPU (0–1) costs nothing up to half load: that is the headroom a gateway needs to take
   * over a failed peer's sessions in a pair. It falls linearly to 0 at full load.
   */
  cpuKnee: 0.5,
  /**
   * Event-loop delay (p99, ms): under 20 ms is ordinary GC and scheduling noise; 200 ms is
   * the whole client-visible interruption budget, so the part is 0 from there.
   */
  loopDelayGoodMs: 20,
  loopDelayBadMs: 200,
  /** Event-loop utilisation (0–1) is treated like CPU: free up to half, 0 when saturated. */
  eluKnee: 0.5,
} as const;

export interface NodeHealthInputs {
  /** Scores (0–100) of the node's connections; empty means no evidence either way. */
  connectionScores: ArrayLike<number>;
  /** Process CPU utilisation, 0–1 (of the cores it may use). */
  cpuUtilisation: number;
  /** Event-loop delay, p99 over the reporting window, ms (`perf_hooks.monitorEventLoopDelay`). */
  eventLoopDelayMs: number;
  /** Event-loop utilisation, 0–1 (`performance.eventLoopUtilization().utilization`). */
  eventLoopUtilisation: number;
}

/** Nearest-rank percentile (p in (0, 1]) of the finite values; undefined when there are none. */
export function percentile(values: ArrayLike<number>, p: number): number | undefined {
  const sorted = Float64Array.from(values).filter(Number.isFinite).sort();
  if (sorted.length === 0) return undefined;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** 1 up to `knee`, falling linearly to 0 at 1 (utilisation-like inputs, 0–1). */
function headroom(utilisation: number, knee: number): number {
  return 1 - clamp((evidence(utilisation) - knee) / (1 - knee), 0, 1);
}

/** The node health score, 0–100 (100 = healthy). */
export function nodeHealthScore(inputs: NodeHealthInputs): number {
  const c = NODE_SCORE_CONSTANTS;
  const connections = percentile(inputs.connectionScores, c.connectionPercentile);
  const parts = {
    connections: connections === undefined ? 1 : clamp(connections / 100, 0, 1),
    cpu: headroom(inputs.cpuUtilisation, c.cpuKnee),
    // The loop is only as good as the worse of its two signals: a long delay or no idle time.
    eventLoop: Math.min(
      1 -
        clamp(
          (evidence(inputs.eventLoopDelayMs) - c.loopDelayGoodMs) /
            (c.loopDelayBadMs - c.loopDelayGoodMs),
          0,
          1,
        ),
      headroom(inputs.eventLoopUtilisation, c.eluKnee),
    ),
  };
  const product =
    parts.connections ** c.weights.connections *
    parts.cpu ** c.weights.cpu *
    parts.eventLoop ** c.weights.eventLoop;
  return clamp(100 * product, 0, 100);
}

function clamp(x: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, x));
}
