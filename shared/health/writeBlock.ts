/**
 * Seed 3.2: when writes to a connection back up, say why. The three causes need different
 * cures: a slow client is paused and catches up from history (others are unaffected), a bad
 * network path is watched and eventually broken, and our own overloaded process is a node-level
 * signal for the control plane, not a reason to punish clients.
 */

export type WriteBlockCause = 'none' | 'slow_client' | 'network' | 'process';

export interface WriteFacts {
  /** Bytes queued in the application for this connection (WebSocket bufferedAmount). */
  queuedBytes: number;
  /** Bytes the kernel holds but has not yet sent (tcpi_notsent_bytes); undefined without kernel probes. */
  notSentBytes?: number;
  /** Retransmissions since the previous look (tcpi_total_retrans delta). */
  retransmitsDelta?: number;
  /** Segments the kernel considers lost now (tcpi_lost). */
  lost?: number;
}

export interface ProcessFacts {
  eventLoopDelayP99Ms: number;
  eventLoopUtilization: number;
}

export interface WriteBlockThresholds {
  /** Application queue above this is a block. @default 1 MiB */
  highWaterBytes: number;
  /** Event-loop p99 delay above this means the process itself is the bottleneck. @default 100 ms */
  eventLoopDelayMs: number;
  /** Event-loop utilisation above this means the same. @default 0.9 */
  eventLoopUtilization: number;
}

export const DEFAULT_WRITE_BLOCK_THRESHOLDS: WriteBlockThresholds = {
  highWaterBytes: 1024 * 1024,
  eventLoopDelayMs: 100,
  eventLoopUtilization: 0.9,
};

export function classifyWriteBlock(
  write: WriteFacts,
  load: ProcessFacts,
  thresholds: WriteBlockThresholds = DEFAULT_WRITE_BLOCK_THRESHOLDS,
): WriteBlockCause {
  const queued = write.queuedBytes + (write.notSentBytes ?? 0);
  if (queued <= thresholds.highWaterBytes) return 'none';
  if (
    load.eventLoopDelayP99Ms > thresholds.eventLoopDelayMs ||
    load.eventLoopUtilization > thresholds.eventLoopUtilization
  ) {
    return 'process';
  }
  // Data in flight being retransmitted or lost: the path, not the reader.
  if ((write.retransmitsDelta ?? 0) > 0 || (write.lost ?? 0) > 0) return 'network';
  // A healthy path and a healthy process, and still the bytes pile up: the peer is not reading.
  return 'slow_client';
}
