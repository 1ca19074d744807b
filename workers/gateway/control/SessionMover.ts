/**
 * Planned session moves (seed 4.3): Migrate moves the sessions the control plane names, with
 * its tokens; Drain moves every session to the other active gateways, with tokens this
 * gateway signs. Each move is make-before-break: the client gets a redirect, resumes on the
 * target, and only then closes its connection here; a session that has not moved when its TTL
 * runs out stays (rolled back).
 *
 * Behind a load balancer (a public URL set), a drain cannot send a client to one particular
 * gateway: it redirects to the public URL with a cluster-targeted token (shared/redirectTokens.ts,
 * CLUSTER_TARGET), which any other gateway of the cluster accepts once.
 */
import type {
  MigrateResult,
  Move,
  Route,
  RouteTable,
} from '../../../shared/protocol/gatewayControl.js';
import {
  CLUSTER_TARGET,
  MAX_REDIRECT_LIFETIME_MS,
  parsePublicUrl,
  signRedirectToken,
} from '../../../shared/redirectTokens.js';
import type { StateStore } from '../../../shared/store/StateStore.js';
import type { Logger } from '../../../shared/telemetry/logger.js';
import type { KeyRing } from '../../../shared/tokens.js';
import type { NodeRecord } from '../Gateway.js';
import type { GatewayMetrics } from '../metrics.js';
import type { WsSession } from '../WsSession.js';

export interface SessionMoverOptions {
  nodeId: string;
  keyRing: KeyRing;
  store: StateStore;
  sessions: () => Iterable<WsSession>;
  metrics: GatewayMetrics;
  logger: Logger;
  /**
   * The cluster's public endpoint (STREAMHEAL_PUBLIC_URL): drained sessions are sent there with
   * cluster-targeted tokens instead of to a gateway's own URL. Checked by parsePublicUrl.
   */
  publicUrl?: string;
}

export class SessionMover {
  /** The other gateways sessions may move to, as the control plane last said (Reload). */
  routeTable: RouteTable = { version: 0, routes: [] };
  /** The public URL as checked (parsePublicUrl), also what the node record advertises. */
  readonly publicUrl?: string;

  constructor(private readonly options: SessionMoverOptions) {
    if (options.publicUrl !== undefined) this.publicUrl = parsePublicUrl(options.publicUrl);
  }

  /** Installs a route table; refuses (RangeError) one older than the table held. */
  reload(table: RouteTable): number {
    if (table.version < this.routeTable.version) {
      throw new RangeError(
        `route table version ${table.version} is older than the one held (${this.routeTable.version})`,
      );
    }
    this.routeTable = {
      version: table.version,
      routes: table.routes.map((route) => ({ ...route })),
    };
    this.options.logger.info(
      { version: table.version, routes: table.routes.length },
      'route table reloaded',
    );
    return this.routeTable.version;
  }

  /** Moves the named sessions; `onResult` hears of each as it settles. */
  async migrate(
    moves: Move[],
    ttlMs: number,
    onResult: (result: MigrateResult) => void,
  ): Promise<void> {
    const byId = new Map<string, WsSession>();
    for (const session of this.options.sessions()) byId.set(session.id, session);
    const { metrics, logger } = this.options;
    await Promise.all(
      moves.map(async (move) => {
        const session = byId.get(move.session);
        const started = performance.now();
        let outcome: MigrateResult['outcome'] = 'NOT_FOUND';
        if (session && !session.isClosed) {
          const moved = await session.redirect(
            { url: move.targetUrl, node: move.targetNode, token: move.token },
            ttlMs,
          );
          outcome = moved ? 'MOVED' : 'ROLLED_BACK';
        }
        const durationMs = Math.round(performance.now() - started);
        metrics.migrations.inc({ outcome: outcome.toLowerCase() });
        if (outcome === 'MOVED') metrics.migrationDuration.observe(durationMs / 1000);
        if (outcome === 'ROLLED_BACK')
          logger.warn(
            { session: move.session, target: move.targetNode, ttlMs },
            'move rolled back',
          );
        onResult({ session: move.session, targetNode: move.targetNode, outcome, durationMs });
      }),
    );
  }

  /**
   * Moves every session to the other active gateways (fewest connections first, in turn), with
   * `deadlineMs` to complete. Returns how many moved and how many are left here.
   */
  async drain(deadlineMs: number): Promise<{ moved: number; left: number }> {
    const sessions = [...this.options.sessions()].filter((session) => !session.isClosed);
    const targets = await this.targets();
    if (sessions.length === 0 || targets.length === 0) {
      if (sessions.length > 0)
        this.options.logger.warn(
          { sessions: sessions.length },
          'no other gateway to move sessions to',
        );
      return { moved: 0, left: sessions.length };
    }
    const lifetimeMs = Math.min(deadlineMs, MAX_REDIRECT_LIFETIME_MS);
    // Behind the load balancer it picks the gateway; the targets only say there is one.
    const publicUrl = this.publicUrl;
    const moves = await Promise.all(
      sessions.map(async (session, i) => {
        const target = publicUrl
          ? { node: CLUSTER_TARGET, url: publicUrl }
          : targets[i % targets.length]!;
        const { token } = await signRedirectToken(
          this.options.keyRing,
          { sessionId: session.id, sourceNode: this.options.nodeId, targetNode: target.node },
          { lifetimeMs },
        );
        return { session: session.id, targetNode: target.node, targetUrl: target.url, token };
      }),
    );
    let moved = 0;
    await this.migrate(moves, deadlineMs, (result) => {
      if (result.outcome === 'MOVED') moved++;
    });
    return { moved, left: sessions.length - moved };
  }

  /**
   * Where drained sessions go: the route table's active routes when it has any, else the
   * active gateways registered in the store; never this one.
   */
  private async targets(): Promise<Route[]> {
    const self = this.options.nodeId;
    const routed = this.routeTable.routes.filter(
      (route) => route.state === 'active' && route.node !== self,
    );
    if (routed.length > 0) return routed;
    const nodes = await this.options.store.list<NodeRecord>('nodes/').catch(() => []);
    return nodes
      .map((record) => record.value)
      .filter((node) => node.id !== self && (node.state ?? 'active') === 'active')
      .sort((a, b) => a.connections.ws - b.connections.ws)
      .map((node) => ({ node: node.id, url: node.url, state: 'active' }));
  }
}
