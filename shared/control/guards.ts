/**
 * Cascade guards, after Envoy's outlier detection (max_ejection_percent, panic threshold): a
 * judge that sees every node as bad is more likely wrong than the nodes, and ejecting too many
 * at once overloads the rest. Pure functions.
 *
 * The nodes counted (`total`) are the registered gateways (`nodes/` records) plus the ejected
 * ones. Of them, `ejected` are isolated or unhealthy, `lost` are registered but reported gone
 * (their process exited or their task stopped, and no newer incarnation registered yet), and
 * `healthy` are the rest. A proposed ejection of a healthy node is allowed iff both hold:
 *
 *   1. max share:  ejected + 1 ≤ maxEjected,   maxEjected = max(1, ⌊maxIsolatedShare × total⌋)
 *   2. panic:      (healthy − 1) / total ≥ panicThreshold
 *
 * So a rule never isolates more than the share (at least one node, as Envoy ejects at least
 * one host), and never takes the healthy share below the panic threshold; once the healthy
 * share is already below it (nodes lost), nothing more is isolated. Nodes already isolated stay
 * isolated (guards limit new ejections, they do not undo old ones).
 */
import type { GuardVerdict } from './types.js';

export interface Guards {
  /** > 0, ≤ 1. @default 0.1 */
  maxIsolatedShare: number;
  /** 0–1. @default 0.5 */
  panicThreshold: number;
}

export interface GuardCounts {
  total: number;
  ejected: number;
  healthy: number;
}

/** Floating point: 0.29 × 100 is 28.999…; a share that lands on an integer counts as it. */
const EPSILON = 1e-9;

export function maxEjected(total: number, maxIsolatedShare: number): number {
  return Math.max(1, Math.floor(maxIsolatedShare * total + EPSILON));
}

/** Whether one more healthy node may be ejected, with the figures that decided it. */
export function ejectionVerdict(counts: GuardCounts, guards: Guards): GuardVerdict {
  const { total, ejected, healthy } = counts;
  const max = maxEjected(total, guards.maxIsolatedShare);
  const healthyShareAfter = total > 0 ? Math.max(0, healthy - 1) / total : 0;
  const base = {
    total,
    ejected,
    healthy,
    maxEjected: max,
    healthyShareAfter,
    maxIsolatedShare: guards.maxIsolatedShare,
    panicThreshold: guards.panicThreshold,
  };
  if (ejected + 1 > max) return { allowed: false, refusedBy: 'max_isolated_share', ...base };
  if (healthy < 1 || healthy - 1 < guards.panicThreshold * total - EPSILON) {
    return { allowed: false, refusedBy: 'panic_threshold', ...base };
  }
  return { allowed: true, ...base };
}
