/**
 * The self-hosted control plane: the functions the Lambda handlers run (decide, nodeLost,
 * alerts), run here on the etcd bus, by whichever of several orchestrator processes is the
 * elected leader (election.ts). The leader reads the bus and the gateway registrations from the
 * checkpoint on (feed.ts) and hands every event to the catalogue's functions through
 * routeCatalogue, as the local control process does on its in-process bus. The others wait;
 * when the leader dies, one of them is elected once its lease ends and goes on from the
 * checkpoint (docs/self-hosted.md, "The orchestrator").
 */
import { catalogue, type CatalogueEntry, type TargetFunction } from '../../shared/bus/catalogue.js';
import { EtcdBus } from '../../shared/bus/EtcdBus.js';
import type { BusEvent, EventBus } from '../../shared/bus/EventBus.js';
import { routeCatalogue, type RouteHandler } from '../../shared/bus/router.js';
import {
  EtcdConnection,
  sleep,
  type EtcdConnectionOptions,
} from '../../shared/store/etcd/connection.js';
import type { Logger } from '../../shared/telemetry/logger.js';
import { CatalogueDispatcher } from './dispatcher.js';
import { LeaderElection, type LeaderInfo, type Role, type Term } from './election.js';
import { EventFeed, type FeedStats } from './feed.js';
import { OrchestratorKeys } from './keys.js';

export interface OrchestratorOptions {
  /** This orchestrator's name in logs and in the leader record. */
  name: string;
  /** The etcd cluster the store and bus are on (the election and the feed use it directly). */
  etcd: EtcdConnectionOptions;
  /** The store and bus prefix. @default 'streamheal/' */
  prefix?: string;
  /** The bus the functions publish on, and the lease expiries go to (the etcd bus). */
  bus: EventBus;
  /** One handler per catalogue target (the functions). */
  handlers: Partial<Record<TargetFunction, RouteHandler>>;
  /** @default catalogue() */
  entries?: CatalogueEntry[];
  /** Election lease (ms). @default 2000 */
  leaseMs?: number;
  /** @default 200 */
  checkpointEveryMs?: number;
  /** This orchestrator's status URL, written into the leader record. */
  url?: string;
  logger: Logger;
  /** Told about every event the leader handled (tests and figures). */
  onHandled?: (event: BusEvent, revision: number) => void;
}

export interface OrchestratorStatus {
  name: string;
  pid: number;
  role: Role;
  /** The leader as last seen (this orchestrator or another). */
  leader: LeaderInfo | undefined;
  /** While leading: the term and since when. */
  term?: { number: number; since: string };
  /** Terms this orchestrator has led since it started. */
  terms: number;
  /** While leading: what the feed did this term. */
  feed?: FeedStats;
}

export class Orchestrator {
  private readonly connection: EtcdConnection;
  private readonly keys: OrchestratorKeys;
  private readonly dispatcher: CatalogueDispatcher;
  private readonly unroute: () => void;
  readonly election: LeaderElection;
  private feed: { term: Term; feed: EventFeed; started: Promise<void> } | undefined;
  private terms = 0;
  private closed = false;

  constructor(private readonly options: OrchestratorOptions) {
    this.connection = new EtcdConnection(options.etcd);
    this.keys = new OrchestratorKeys(options.prefix ?? 'streamheal/');
    const entries = options.entries ?? catalogue();
    this.dispatcher = new CatalogueDispatcher(
      options.bus,
      entries.map((entry) => entry.name),
    );
    this.unroute = routeCatalogue(this.dispatcher, entries, options.handlers);
    this.election = new LeaderElection({
      connection: this.connection,
      key: this.keys.leader,
      name: options.name,
      ...(options.url ? { url: options.url } : {}),
      leaseMs: options.leaseMs ?? 2_000,
      logger: options.logger,
      onElected: (term) => this.lead(term),
      onDeposed: (term) => void this.stopFeed(term),
    });
  }

  start(): void {
    this.election.start();
  }

  status(): OrchestratorStatus {
    const term = this.election.term;
    const feed = this.feed && this.feed.term === term ? this.feed.feed.stats() : undefined;
    return {
      name: this.options.name,
      pid: process.pid,
      role: this.election.role,
      leader: this.election.leader,
      ...(term ? { term: { number: term.number, since: new Date(term.since).toISOString() } } : {}),
      terms: this.terms,
      ...(feed ? { feed } : {}),
    };
  }

  /** Stops leading (the next leader takes over at once) and closes the etcd client. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const term = this.election.term;
    if (term) await this.stopFeed(term);
    await this.election.resign();
    this.unroute();
    await this.dispatcher.close();
    this.connection.close();
  }

  private lead(term: Term): void {
    this.terms++;
    const feed = new EventFeed({
      connection: this.connection,
      keys: this.keys,
      term,
      isLeading: () => this.election.isLeading(term),
      leader: this.options.name,
      targets: (event) => this.dispatcher.targets(event),
      publish: (events) => this.publish(events, term),
      onFenced: (reason) => this.election.depose(term, reason),
      logger: this.options.logger.child({ term: term.number }),
      ...(this.options.checkpointEveryMs === undefined
        ? {}
        : { checkpointEveryMs: this.options.checkpointEveryMs }),
      ...(this.options.onHandled ? { onHandled: this.options.onHandled } : {}),
    });
    const started = feed.start().catch((error: unknown) => {
      this.options.logger.error({ err: error }, 'feed did not start: stepping down');
      this.election.depose(term, 'feed did not start');
    });
    this.feed = { term, feed, started };
  }

  private async stopFeed(term: Term): Promise<void> {
    const current = this.feed;
    if (!current || current.term !== term) return;
    this.feed = undefined;
    await current.started;
    await current.feed.stop();
  }

  /** Puts `events` and waits until etcd holds them (the etcd bus spools while etcd is away). */
  private async publish(events: BusEvent[], term: Term): Promise<void> {
    const bus = this.options.bus;
    await bus.put(events);
    if (!(bus instanceof EtcdBus)) return;
    while (bus.stats().spooled > 0 && this.election.isLeading(term)) await sleep(20);
    if (bus.stats().spooled > 0) throw new Error('bus events still spooled when the term ended');
  }
}
