/**
 * The gateway's fast path (seed 3.3): every 300 ms, for every WebSocket connection, join the
 * heartbeat and write-block signals in the shared decision tree and act at once, without
 * waiting for the control plane:
 *   break  — heartbeat lost AND writes blocked: drop the connection and its queue; the client
 *            resumes elsewhere from its position;
 *   queue  — heartbeat lost OR (blocked AND no retry pending): stop writing (the store's
 *            history is the queue) and schedule a retry with the seed's backoff;
 *   retry  — heartbeat fine AND blocked AND a retry pending: when due, write again from
 *            the backlog; after the seed's 5 attempts the client is closed as a slow consumer
 *            so it reconnects (and resumes) rather than falling ever further behind;
 *   none   — a paused connection that caught its breath is resumed.
 * Transitions are reported as aggregated health events; scores go to the metrics.
 */
import { seedBackoff } from '../../shared/backoff.js';
import {
  DECISION_TICK_MS,
  decideFastPath,
  type FastPathActionName,
} from '../../shared/health/decisionTree.js';
import { HealthEvents } from '../../shared/health/events.js';
import { connectionHealthScore, nodeHealthScore, percentile } from '../../shared/health/score.js';
import {
  classifyWriteBlock,
  DEFAULT_WRITE_BLOCK_THRESHOLDS,
  type WriteBlockCause,
  type WriteFacts,
} from '../../shared/health/writeBlock.js';
import { CloseCodes } from '../../shared/protocol/closeCodes.js';
import type { HealthReporter } from './health/HealthReporter.js';
import type { HeartbeatSweep } from './HeartbeatSweep.js';
import type { ProcessSample } from './health/ProcessMonitor.js';
import type { GatewayMetrics } from './metrics.js';
import type { WsSession } from './WsSession.js';

/** Retries before a blocked client is closed (the seed's pool limit of 5 attempts). */
export const MAX_RETRY_ATTEMPTS = 5;

export interface FastPathOptions {
  sessions: () => Iterable<WsSession>;
  /** The heartbeat (misses and RTT per session); undefined when the gateway does not ping. */
  heartbeat?: HeartbeatSweep;
  /** The process's latest load sample (our own process as the cause of a block). */
  processLoad: () => ProcessSample;
  /** Kernel facts of a connection (TCP_INFO), when kernel probes are available. */
  kernelFacts?: (session: WsSession) => Omit<WriteFacts, 'queuedBytes'> | undefined;
  /** Abnormal closes (flash cuts, resets) per minute on this node: the score's FIN/RST input. */
  closesPerMinute: () => number;
  /** SYN retransmits per opened connection on this host: the score's SYN input (0..1). */
  synRetransmitRate: () => number;
  /** Application queue above which a connection counts as blocked. */
  highWaterBytes: number;
  reporter: HealthReporter;
  metrics: GatewayMetrics;
  /** @default 300 (the seed's select timeout) */
  tickMs?: number;
}

/** One connection's fast-path state, allocated once with the session (no garbage per tick). */
export class FastPathState {
  cause: WriteBlockCause = 'none';
  heartbeatLost = false;
  /** A retry of the blocked writes is scheduled (seed 3.3's "retry pending"). */
  retryPending = false;
  retryAtMs = 0;
  retryAttempt = 0;
}

/** Scores are computed every this many ticks (3 s): they feed metrics, not decisions. */
const SCORE_EVERY_TICKS = 10;

export class FastPath {
  private timer?: NodeJS.Timeout;
  private readonly thresholds;
  private ticks = 0;
  private scores = new Float64Array(1024);
  // Reused for every connection of a tick: the loop allocates nothing per connection.
  private readonly facts: WriteFacts = { queuedBytes: 0 };
  private readonly signals = { heartbeatLost: false, writeBlocked: false, retryPending: false };

  constructor(private readonly options: FastPathOptions) {
    this.thresholds = { ...DEFAULT_WRITE_BLOCK_THRESHOLDS, highWaterBytes: options.highWaterBytes };
  }

  start(): void {
    this.timer = setInterval(
      () => this.tick(Date.now()),
      this.options.tickMs ?? DECISION_TICK_MS,
    ).unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One pass over every connection: decide, act, count, report. */
  tick(now: number): void {
    const { metrics, reporter } = this.options;
    const load = this.options.processLoad();
    const closesPerMinute = this.options.closesPerMinute();
    const synRetransmitRate = this.options.synRetransmitRate();
    const actions: Record<FastPathActionName, number> = { break: 0, queue: 0, retry: 0, none: 0 };
    const blocked: Record<WriteBlockCause, number> = {
      none: 0,
      slow_client: 0,
      network: 0,
      process: 0,
    };
    const newlyBlocked: Record<WriteBlockCause, number> = {
      none: 0,
      slow_client: 0,
      network: 0,
      process: 0,
    };
    let degraded = 0;
    let recovered = 0;
    const scoring = this.ticks++ % SCORE_EVERY_TICKS === 0;
    let scored = 0;
    const { facts, signals } = this;
    const heartbeat = this.options.heartbeat;
    for (const session of this.options.sessions()) {
      if (session.isClosed) continue;
      const state = session.fastPath;
      const heartbeatLost = (heartbeat?.misses(session) ?? 0) > 0;
      facts.queuedBytes = session.queuedBytes;
      // The kernel's side matters only once the application queue grows: until the socket's
      // send buffer is full, nothing waits in the application.
      const kernel = facts.queuedBytes > 0 ? this.options.kernelFacts?.(session) : undefined;
      facts.notSentBytes = kernel?.notSentBytes;
      facts.retransmitsDelta = kernel?.retransmitsDelta;
      facts.lost = kernel?.lost;
      const cause = classifyWriteBlock(facts, load, this.thresholds);
      if (heartbeatLost && !state.heartbeatLost) degraded++;
      if (!heartbeatLost && state.heartbeatLost) recovered++;
      if (cause !== 'none' && state.cause === 'none') newlyBlocked[cause]++;
      blocked[cause]++;
      state.cause = cause;
      state.heartbeatLost = heartbeatLost;
      signals.heartbeatLost = heartbeatLost;
      signals.writeBlocked = cause !== 'none';
      signals.retryPending = state.retryPending;
      const { action } = decideFastPath(signals);
      actions[action]++;
      this.apply(session, action, now);
      if (scoring) {
        if (scored === this.scores.length) {
          const grown = new Float64Array(this.scores.length * 2);
          grown.set(this.scores);
          this.scores = grown;
        }
        this.scores[scored++] = connectionHealthScore({
          rttStdDevMs: heartbeat?.rttStdDev(session) ?? 0,
          finRstPerMinute: closesPerMinute,
          synRetransmitRate,
        });
      }
    }
    for (const action of ['break', 'queue', 'retry'] as const) {
      if (actions[action] > 0) metrics.fastPathActions.inc({ action }, actions[action]);
    }
    for (const cause of ['slow_client', 'network', 'process'] as const)
      metrics.writeBlocked.set({ cause }, blocked[cause]);
    if (newlyBlocked.slow_client + newlyBlocked.network + newlyBlocked.process > 0) {
      reporter.report(HealthEvents.writeBlocked, {
        slow_client: newlyBlocked.slow_client,
        network: newlyBlocked.network,
        process: newlyBlocked.process,
      });
    }
    if (degraded > 0) reporter.report(HealthEvents.connectionsDegraded, { count: degraded });
    if (recovered > 0) reporter.report(HealthEvents.connectionsRecovered, { count: recovered });
    if (scoring) this.exportScores(this.scores.subarray(0, scored), load, synRetransmitRate);
  }

  private apply(session: WsSession, action: FastPathActionName, now: number): void {
    const state = session.fastPath;
    switch (action) {
      case 'break':
        this.options.metrics.pushErrors.inc({ reason: 'circuit_broken' });
        session.terminate();
        return;
      case 'queue':
        session.pauseDelivery();
        if (!state.retryPending) {
          state.retryPending = true;
          state.retryAtMs = now + seedBackoff(state.retryAttempt);
        }
        return;
      case 'retry':
        if (now < state.retryAtMs) return;
        if (++state.retryAttempt > MAX_RETRY_ATTEMPTS) {
          this.options.metrics.pushErrors.inc({ reason: 'slow_consumer' });
          session.close(CloseCodes.slowConsumer);
          session.terminate();
          return;
        }
        state.retryAtMs = now + seedBackoff(state.retryAttempt);
        session.resumeDelivery();
        return;
      case 'none':
        state.retryPending = false;
        state.retryAttempt = 0;
        session.resumeDelivery();
        return;
    }
  }

  private exportScores(scores: Float64Array, load: ProcessSample, synRetransmitRate: number): void {
    const { metrics } = this.options;
    metrics.synRetransmitRate.set(synRetransmitRate);
    for (const quantile of [0, 0.1, 0.5]) {
      const value = percentile(scores, quantile);
      if (value !== undefined)
        metrics.connectionHealthScore.set({ quantile: String(quantile) }, value);
    }
    metrics.nodeHealthScore.set(
      nodeHealthScore({
        connectionScores: scores,
        cpuUtilisation: load.cpu,
        eventLoopDelayMs: load.eventLoopDelayP99Ms,
        eventLoopUtilisation: load.eventLoopUtilization,
      }),
    );
  }
}
