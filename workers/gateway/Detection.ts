/**
 * Everything a gateway watches about itself and its connections, besides the heartbeat
 * (HeartbeatSweep): the kernel's view of every socket (TCP_INFO sweeps, TCP_USER_TIMEOUT,
 * flash cuts), its own process load, the fast path's decision tree, the delivery canary, and
 * the health events all of these report on the bus. None of it waits for the control plane.
 */
import type { Socket } from 'node:net';
import type { EventBus } from '../../shared/bus/EventBus.js';
import { DECISION_TICK_MS } from '../../shared/health/decisionTree.js';
import { HealthEvents } from '../../shared/health/events.js';
import type { Logger } from '../../shared/telemetry/logger.js';
import { FastPath } from './FastPath.js';
import { DeliveryCanary, canaryChannel } from './health/DeliveryCanary.js';
import { HealthReporter } from './health/HealthReporter.js';
import { NodeHealth } from './health/NodeHealth.js';
import { ProcessMonitor } from './health/ProcessMonitor.js';
import type { GatewayMetrics } from './metrics.js';
import { KernelSweeper, fdOf, kernelProbes, type KernelProbes } from './probes/kernelProbe.js';
import type { HeartbeatSweep } from './HeartbeatSweep.js';
import { SynRetransmitMonitor } from './probes/synRetransmits.js';
import type { WsSession } from './WsSession.js';

export interface DetectionOptions {
  /**
   * TCP_USER_TIMEOUT on every accepted socket: the kernel gives up on data unacknowledged for
   * this long and closes the connection (L3). 0 leaves the kernel default. @default 5000
   */
  tcpUserTimeoutMs?: number;
  /** Kernel TCP_INFO sweep interval (seed 2.1). 0 turns the sweeps off. @default 500 */
  kernelSweepMs?: number;
  /** Delivery canary interval; 0 for none. @default 0 (the gateway process turns it on) */
  canaryIntervalMs?: number;
  /** Canary probes missed in a row before /readyz reports the gateway unready. @default 3 */
  canaryMissesUnready?: number;
  /** The kernel probes to use. @default the addon, when it loads */
  probes?: KernelProbes;
}

interface DetectionContext {
  nodeId: string;
  bus: EventBus;
  metrics: GatewayMetrics;
  logger: Logger;
  sessions: () => Iterable<WsSession>;
  /** The gateway's heartbeat, when it pings its clients. */
  heartbeat?: HeartbeatSweep;
  /** Application queue above which a connection counts as blocked. */
  highWaterBytes: number;
  publishKey: string;
}

const MINUTE_MS = 60_000;

export class Detection {
  readonly reporter: HealthReporter;
  private readonly probes: KernelProbes;
  private readonly processMonitor: ProcessMonitor;
  /** Read as often as the fast path scores connections (every 10th tick). */
  private readonly synRetransmits = new SynRetransmitMonitor(10 * DECISION_TICK_MS);
  private readonly nodeHealth: NodeHealth;
  private readonly fastPath: FastPath;
  private sweeper?: KernelSweeper;
  private canary?: DeliveryCanary;
  private canaryMisses = 0;
  /** Times of abnormal closes (flash cuts, dead peers) in the last minute: the FIN/RST input. */
  private readonly closes: number[] = [];
  /**
   * Retransmissions per connection (by sweeper slot) in the last sweep, and those of the sweep
   * in progress; only connections that retransmitted have an entry.
   */
  private retransmits = new Map<number, number>();
  private sweeping = new Map<number, number>();

  constructor(
    private readonly context: DetectionContext,
    private readonly options: DetectionOptions = {},
  ) {
    this.probes = options.probes ?? kernelProbes;
    this.reporter = new HealthReporter({
      bus: context.bus,
      nodeId: context.nodeId,
      logger: context.logger,
    });
    this.nodeHealth = new NodeHealth(this.reporter);
    this.processMonitor = new ProcessMonitor((sample) => {
      const { metrics } = context;
      metrics.processCpu.set(sample.cpu);
      metrics.eventLoopDelay.set(sample.eventLoopDelayP99Ms / 1000);
      metrics.eventLoopUtilisation.set(sample.eventLoopUtilization);
      this.nodeHealth.onSample(sample);
    });
    this.fastPath = new FastPath({
      sessions: context.sessions,
      ...(context.heartbeat ? { heartbeat: context.heartbeat } : {}),
      processLoad: () => this.processMonitor.latest,
      kernelFacts: (session) => this.kernelFacts(session),
      closesPerMinute: () => this.closesPerMinute(),
      synRetransmitRate: () => this.synRetransmits.rate,
      highWaterBytes: context.highWaterBytes,
      reporter: this.reporter,
      metrics: context.metrics,
    });
    context.metrics.kernelProbesAvailable.set(this.probes.available ? 1 : 0);
  }

  /** Readiness checks: kernel probes (informational) and the canary (gates readiness). */
  checks(): { kernelProbes: string; canary: string; ready: boolean } {
    const missesUnready = this.options.canaryMissesUnready ?? 3;
    const canaryFailing = this.canary !== undefined && this.canaryMisses >= missesUnready;
    return {
      kernelProbes: this.probes.available ? 'ok' : `unavailable: ${this.probes.reason}`,
      canary: this.canary === undefined ? 'off' : canaryFailing ? 'failing' : 'ok',
      ready: !canaryFailing,
    };
  }

  /** Starts watching, once the gateway listens on `port` at `url`. */
  start(url: string, port: number): void {
    if (!this.probes.available) {
      this.context.logger.warn(
        { reason: this.probes.reason },
        'kernel probes unavailable: running with application probes only',
      );
    }
    this.processMonitor.start();
    this.synRetransmits.start();
    this.fastPath.start();
    const sweepMs = this.options.kernelSweepMs ?? 500;
    if (this.probes.available && sweepMs > 0) {
      this.sweeper = new KernelSweeper({
        port,
        intervalMs: sweepMs,
        probes: this.probes,
        onDelta: (delta) => {
          if (delta.totalRetransDelta > 0) this.sweeping.set(delta.slot, delta.totalRetransDelta);
        },
        onSweep: () => {
          this.retransmits = this.sweeping;
          this.sweeping = new Map();
        },
        onFlashCut: (cut) => {
          this.noteAbnormalClose();
          this.context.metrics.flashCuts.inc();
          this.reporter.report(HealthEvents.flashCuts, {
            count: 1,
            peer: cut.key,
            state: cut.stateName,
            perMinute: this.closesPerMinute(),
          });
        },
        onError: (error) => this.context.logger.warn({ err: error }, 'kernel sweep failed'),
      });
      this.sweeper.start();
    }
    const canaryMs = this.options.canaryIntervalMs ?? 0;
    if (canaryMs > 0) {
      this.canary = new DeliveryCanary({
        gatewayUrl: url,
        publishKey: this.context.publishKey,
        channel: canaryChannel(this.context.nodeId),
        intervalMs: canaryMs,
        onResult: (result) => this.onCanary(result.ok, result.latencyMs),
      });
      this.canary.start();
    }
  }

  /**
   * The delivery canary's own session is not one to move: a draining gateway stops probing
   * itself (it is not ready anyway) instead of waiting for its canary to leave.
   */
  stopCanary(): void {
    this.canary?.stop();
  }

  async stop(): Promise<void> {
    this.canary?.stop();
    this.sweeper?.close();
    this.fastPath.stop();
    this.synRetransmits.stop();
    this.processMonitor.stop();
    await this.reporter.close();
  }

  /** L3 and kernel probes for a newly accepted socket. */
  tuneSocket(socket: Socket): void {
    const timeoutMs = this.options.tcpUserTimeoutMs ?? 5_000;
    if (timeoutMs > 0) this.probes.setUserTimeout(fdOf(socket), timeoutMs);
  }

  track(session: WsSession, socket: Socket): void {
    if (this.sweeper) session.kernelSlot = this.sweeper.register(session.peer, socket);
  }

  /** The session closed; `abnormal` when it went without a closing handshake. */
  untrack(session: WsSession, abnormal: boolean): void {
    if (abnormal) this.noteAbnormalClose();
    if (session.kernelSlot >= 0) this.sweeper?.unregister(session.kernelSlot);
    session.kernelSlot = -1;
  }

  private kernelFacts(session: WsSession) {
    const slot = session.kernelSlot;
    if (!this.sweeper || slot < 0) return undefined;
    const notSentBytes = this.sweeper.reading(slot, 'notsentBytes');
    if (notSentBytes === null) return undefined;
    return {
      notSentBytes,
      lost: this.sweeper.reading(slot, 'lost')!,
      retransmitsDelta: this.retransmits.get(slot) ?? 0,
    };
  }

  private noteAbnormalClose(): void {
    this.closes.push(Date.now());
  }

  private closesPerMinute(): number {
    const since = Date.now() - MINUTE_MS;
    let expired = 0;
    while (expired < this.closes.length && this.closes[expired]! < since) expired++;
    if (expired > 0) this.closes.splice(0, expired);
    return this.closes.length;
  }

  private onCanary(ok: boolean, latencyMs: number | undefined): void {
    const { metrics } = this.context;
    const missesUnready = this.options.canaryMissesUnready ?? 3;
    if (ok) {
      metrics.canaryLatency.observe(latencyMs! / 1000);
      if (this.canaryMisses >= missesUnready) {
        this.reporter.report(HealthEvents.canaryRecovered, { latencyMs });
      }
      this.canaryMisses = 0;
      return;
    }
    metrics.canaryMisses.inc();
    if (++this.canaryMisses === missesUnready) {
      this.context.logger.error(
        { misses: this.canaryMisses },
        'delivery canary failing: messages are not delivered',
      );
      this.reporter.report(HealthEvents.canaryFailing, { misses: this.canaryMisses });
    }
  }
}
