/**
 * The cluster as the guard and the target choice see it: registered gateways (`nodes/`), which
 * of them are ejected or lost (`control/cluster`), and their load. Pure functions.
 */
import type { GuardCounts } from './guards.js';
import type { ClusterControlRecord, MoveTarget, RegisteredNode } from './types.js';

export interface ClusterView {
  registered: ReadonlyMap<string, RegisteredNode>;
  cluster: ClusterControlRecord;
}

export function emptyClusterRecord(): ClusterControlRecord {
  return { ejected: {}, lost: {} };
}

/** `task:<arn>` on ECS, else `pid:<pid>`: which process a registration or report is about. */
export function incarnationOf(node: { taskArn?: unknown; pid?: unknown }): string | undefined {
  if (typeof node.taskArn === 'string' && node.taskArn !== '') return `task:${node.taskArn}`;
  if (typeof node.pid === 'number' && Number.isInteger(node.pid) && node.pid > 0) {
    return `pid:${node.pid}`;
  }
  return undefined;
}

/**
 * Whether a registration is a newer incarnation than the one reported lost at `lostAt`: it
 * started after the loss, or it is another process or task.
 */
export function isNewerIncarnation(
  registration: RegisteredNode,
  lost: { at: number; incarnation?: string },
): boolean {
  const started = registration.startedAt ? Date.parse(registration.startedAt) : Number.NaN;
  if (Number.isFinite(started) && started > lost.at) return true;
  const current = incarnationOf(registration);
  return lost.incarnation !== undefined && current !== undefined && current !== lost.incarnation;
}

/** Registered, and reported lost with no newer incarnation registered since. */
export function isLostNow(view: ClusterView, node: string): boolean {
  const lost = view.cluster.lost[node];
  const registration = view.registered.get(node);
  return (
    lost !== undefined && registration !== undefined && !isNewerIncarnation(registration, lost)
  );
}

/**
 * The guard's figures for ejecting `candidate` (guards.ts has the rule): the registered nodes
 * and the candidate are counted; ejections of nodes no longer registered are not; the
 * candidate's own reservation does not count against it.
 */
export function guardCounts(view: ClusterView, candidate: string): GuardCounts {
  const universe = new Set(view.registered.keys());
  universe.add(candidate);
  let ejected = 0;
  let lost = 0;
  for (const node of universe) {
    if (node === candidate) continue;
    if (view.cluster.ejected[node] !== undefined) ejected++;
    else if (isLostNow(view, node)) lost++;
  }
  return { total: universe.size, ejected, healthy: universe.size - ejected - lost };
}

/** Below this health score a node takes moved sessions only when no better one is left. */
export const MIN_TARGET_HEALTH = 0.5;

export function connectionsOf(node: RegisteredNode | undefined): number {
  const ws = node?.connections?.ws;
  const sse = node?.connections?.sse;
  return (typeof ws === 'number' ? ws : 0) + (typeof sse === 'number' ? sse : 0);
}

function healthOf(node: RegisteredNode): number {
  const score = node.healthScore;
  return typeof score === 'number' && Number.isFinite(score) ? Math.max(0, Math.min(1, score)) : 1;
}

/** Registered, in rotation, not lost, not `source`: nodes that may take sessions. */
export function eligibleTargets(view: ClusterView, source: string): RegisteredNode[] {
  const candidates = [...view.registered.values()].filter(
    (node) =>
      node.id !== source &&
      view.cluster.ejected[node.id] === undefined &&
      !isLostNow(view, node.id) &&
      healthOf(node) > 0,
  );
  const healthy = candidates.filter((node) => healthOf(node) >= MIN_TARGET_HEALTH);
  return (healthy.length > 0 ? healthy : candidates).sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * Spreads `count` sessions over the eligible targets so that load per unit of health evens out:
 * each session goes to the target with the least (connections + assigned + 1) / health, ties by
 * name. Targets that get none are left out. Empty when there is no eligible target.
 */
export function planTargets(view: ClusterView, source: string, count: number): MoveTarget[] {
  const targets = eligibleTargets(view, source);
  if (targets.length === 0 || count <= 0) return [];
  const load = targets.map((node) => connectionsOf(node));
  const weight = targets.map((node) => healthOf(node));
  const assigned = targets.map(() => 0);
  for (let i = 0; i < count; i++) {
    let best = 0;
    let bestCost = Infinity;
    for (let j = 0; j < targets.length; j++) {
      const cost = (load[j]! + assigned[j]! + 1) / weight[j]!;
      if (cost < bestCost) {
        best = j;
        bestCost = cost;
      }
    }
    assigned[best]!++;
  }
  return targets
    .map((node, j) => ({ node: node.id, count: assigned[j]! }))
    .filter((target) => target.count > 0);
}

/**
 * Node names as the seed's log line writes them: `gateway-02,03` — the first in full, later ones
 * sharing its stem (the name without its trailing digits) by their digits only.
 */
export function formatNodeList(nodes: readonly string[]): string {
  if (nodes.length === 0) return '(none)';
  const stem = (name: string) => name.replace(/\d+$/, '');
  const first = nodes[0]!;
  return [
    first,
    ...nodes
      .slice(1)
      .map((name) =>
        stem(name) === stem(first) && stem(name) !== name ? name.slice(stem(name).length) : name,
      ),
  ].join(',');
}
