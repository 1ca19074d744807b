/**
 * The local cluster (`streamheal start`): one control process holding the embedded store and
 * bus, served to the gateways over the control link, and a Supervisor keeping N gateway
 * processes running on fixed ports.
 *
 * With `backends` naming etcd (or DynamoDB) instead, the store is that cluster (those tables):
 * the gateways use it directly, the control process serves status and the link over it, and on
 * etcd a second Supervisor keeps orchestrator processes running, which then run the functions
 * (docs/self-hosted.md).
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { catalogue } from '../../shared/bus/catalogue.js';
import { routeCatalogue } from '../../shared/bus/router.js';
import {
  alertDeliveryFromEnv,
  alertTargetsFromEnv,
  type AlertTarget,
} from '../../shared/control/alerts/targets.js';
import { watchNodeLeases, type LeaseWatch } from '../../shared/control/leaseWatch.js';
import { GatewayMoveExecutor } from '../../shared/control/moves.js';
import { keyRingFromSecret } from '../../shared/tokens.js';
import { alertsRunner, redeliverAlerts, type AlertDeps } from '../../functions/alerts/handler.js';
import { decideRunner } from '../../functions/decide/handler.js';
import { nodeLostRunner } from '../../functions/nodeLost/handler.js';
import type { ControlDeps } from '../../functions/runtime.js';
import type { EventBus } from '../../shared/bus/EventBus.js';
import type { StateStore } from '../../shared/store/StateStore.js';
import { DEFAULT_HISTORY_LIMITS, type HistoryLimits } from '../../shared/store/StateStore.js';
import { childBackendEnv, openBackends, type BackendConfig, type Backends } from '../backends.js';
import { orchestratorChildren } from '../orchestrator/children.js';
import type { Logger } from '../../shared/telemetry/logger.js';
import { clusterFilePath, removeClusterFile, writeClusterFile } from './clusterFile.js';
import { ControlServer, LINK_PATH } from './ControlServer.js';
import { Supervisor, type SupervisorOptions } from './Supervisor.js';

export const CLUSTER_DEFAULTS = {
  host: '127.0.0.1',
  controlPort: 7070,
  gateways: 3,
  portBase: 8081,
} as const;

export interface ClusterOptions {
  /** Address of the control server and every gateway. @default '127.0.0.1' */
  host?: string;
  /** @default 7070 */
  controlPort?: number;
  /** Number of gateway processes. @default 3 */
  gateways?: number;
  /** Port of `gateway-1`; `gateway-i` listens on `portBase + i - 1`. @default 8081 */
  portBase?: number;
  /** Bearer key of POST /v1/publish. @default $STREAMHEAL_PUBLISH_KEY, else generated */
  publishKey?: string;
  /** Authenticates the control link and signs resume tokens. @default $STREAMHEAL_CLUSTER_SECRET, else generated */
  clusterSecret?: string;
  /** Where to write the cluster file; `false` for none. @default clusterFilePath() */
  clusterFile?: string | false;
  /** History kept per channel by the embedded store. @default $STREAMHEAL_HISTORY_MAX_COUNT / _AGE_MS, else 10,000 messages / 10 min */
  historyLimits?: HistoryLimits;
  /** @default the compiled gateway entry, ../gateway/main.js */
  gatewayScript?: string;
  /** Extra environment for every gateway. */
  gatewayEnv?: Record<string, string>;
  logger: Logger;
  /** Passed to the Supervisor (tests capture children's output with it). */
  output?: SupervisorOptions['output'];
  /** @default 20_000 */
  readyTimeoutMs?: number;
  /**
   * Where decision events are delivered (functions/alerts). @default from
   * STREAMHEAL_ALERT_TARGETS / STREAMHEAL_ALERT_TARGETS_FILE, else none
   */
  alertTargets?: AlertTarget[];
  /** How often dead-lettered alerts are sent again. @default $STREAMHEAL_ALERT_REDELIVER_MS, else 30_000 */
  alertRedeliverMs?: number;
  /**
   * Store and bus (workers/backends.ts): `memory` + `inprocess` (embedded), `etcd` + `etcd`, or
   * `dynamodb` + `inprocess`. `historyLimits` overrides its limits. @default embedded
   */
  backends?: BackendConfig;
  /**
   * Orchestrator processes (etcd only); when there are any, they run the functions and this
   * process does not. @default 2 with etcd, else 0
   */
  orchestrators?: number;
  /** Port of `orchestrator-1`; the others follow. @default controlPort + 1 */
  orchestratorPortBase?: number;
  /** @default the compiled orchestrator entry, ../orchestrator/main.js */
  orchestratorScript?: string;
}

export interface GatewayEndpoints {
  name: string;
  port: number;
  url: string;
  ws: string;
  sse: string;
  publish: string;
  metrics: string;
}

export class ClusterConfigError extends Error {}

export class LocalCluster {
  readonly control: ControlServer;
  readonly supervisor: Supervisor;
  /** The orchestrators' supervisor (etcd); they are not gateways, so it publishes no exits. */
  readonly orchestrators: Supervisor | undefined;
  readonly gateways: GatewayEndpoints[];
  readonly publishKey: string;
  private readonly clusterSecret: string;
  /** Path of the cluster file (written once every gateway is ready), if any. */
  readonly clusterFile: string | undefined;
  private readonly backends: Backends;
  private readonly store: StateStore;
  private readonly bus: EventBus;
  private readonly logger: Logger;
  private stopping?: Promise<void>;
  private fileWritten = false;
  /** The control-plane functions (decide, nodeLost, alerts) on the in-process bus. */
  private readonly controlDeps: ControlDeps;
  private readonly alertDeps: AlertDeps;
  private readonly alertRedeliverMs: number;
  private unroute?: () => void;
  private leaseWatch?: LeaseWatch;
  private redeliverTimer?: NodeJS.Timeout;
  private readonly removeFileOnExit = () => {
    if (this.fileWritten && this.clusterFile) rmSync(this.clusterFile, { force: true });
  };

  constructor(options: ClusterOptions) {
    const env = process.env;
    const host = options.host ?? CLUSTER_DEFAULTS.host;
    const controlPort = options.controlPort ?? CLUSTER_DEFAULTS.controlPort;
    const count = options.gateways ?? CLUSTER_DEFAULTS.gateways;
    const portBase = options.portBase ?? CLUSTER_DEFAULTS.portBase;
    const publishKey = options.publishKey ?? (env.STREAMHEAL_PUBLISH_KEY || secret());
    const clusterSecret = options.clusterSecret ?? (env.STREAMHEAL_CLUSTER_SECRET || secret());
    validate({ controlPort, count, portBase, publishKey, clusterSecret });
    this.publishKey = publishKey;
    this.clusterSecret = clusterSecret;
    this.clusterFile =
      options.clusterFile === false ? undefined : (options.clusterFile ?? clusterFilePath());
    this.logger = options.logger;

    const limits = options.historyLimits ?? {
      maxCount: positiveInt(env.STREAMHEAL_HISTORY_MAX_COUNT) ?? DEFAULT_HISTORY_LIMITS.maxCount,
      maxAgeMs: positiveInt(env.STREAMHEAL_HISTORY_MAX_AGE_MS) ?? DEFAULT_HISTORY_LIMITS.maxAgeMs,
    };
    const backends: BackendConfig = options.backends
      ? { ...options.backends, ...(options.historyLimits ? { limits } : {}) }
      : { store: 'memory', bus: 'inprocess', limits, env };
    const shape = `${backends.store}+${backends.bus}`;
    if (!['memory+inprocess', 'etcd+etcd', 'dynamodb+inprocess'].includes(shape)) {
      throw new ClusterConfigError(
        `a local cluster runs on the embedded store, etcd (with the etcd bus) or DynamoDB (with ` +
          `the in-process bus), not store ${backends.store} with bus ${backends.bus}`,
      );
    }
    const orchestrators = options.orchestrators ?? (backends.store === 'etcd' ? 2 : 0);
    if (!Number.isInteger(orchestrators) || orchestrators < 0) {
      throw new ClusterConfigError(`invalid orchestrator count ${orchestrators}`);
    }
    if (orchestrators > 0 && backends.store !== 'etcd') {
      throw new ClusterConfigError('orchestrators need the etcd store and bus');
    }
    const orchestratorPortBase = options.orchestratorPortBase ?? controlPort + 1;
    if (orchestrators > 0) {
      validatePorts(orchestratorPortBase, orchestrators, [
        [controlPort, controlPort, 'the control port'],
        [portBase, portBase + count - 1, 'the gateway ports'],
      ]);
    }
    this.backends = openBackends(backends, {
      logger: this.logger,
      onHandlerError: (error, event) =>
        this.logger.error({ err: error, event: event.id }, 'bus handler failed'),
    });
    this.store = this.backends.store;
    this.bus = this.backends.bus;
    // Decisions move sessions for real, through the gateways' control services.
    this.controlDeps = {
      store: this.store,
      bus: this.bus,
      logger: this.logger,
      moves: new GatewayMoveExecutor(this.store, keyRingFromSecret(clusterSecret)),
    };
    this.alertDeps = {
      store: this.store,
      logger: this.logger,
      targets: options.alertTargets ?? alertTargetsFromEnv(env),
      ...alertDeliveryFromEnv(env),
    };
    this.alertRedeliverMs =
      options.alertRedeliverMs ?? positiveInt(env.STREAMHEAL_ALERT_REDELIVER_MS) ?? 30_000;
    this.gateways = Array.from({ length: count }, (_, i) => {
      const port = portBase + i;
      const url = `http://${host}:${port}`;
      return {
        name: `gateway-${i + 1}`,
        port,
        url,
        ws: `ws://${host}:${port}/v1/ws`,
        sse: `${url}/v1/sse`,
        publish: `${url}/v1/publish`,
        metrics: `${url}/metrics`,
      };
    });
    this.control = new ControlServer({
      host,
      port: controlPort,
      secret: clusterSecret,
      store: this.store,
      bus: this.bus,
      logger: this.logger,
      processes: () => [...this.supervisor.status(), ...(this.orchestrators?.status() ?? [])],
    });
    const script =
      options.gatewayScript ?? fileURLToPath(new URL('../gateway/main.js', import.meta.url));
    const linkUrl = `ws://${host}:${controlPort}${LINK_PATH}`;
    this.supervisor = new Supervisor({
      logger: this.logger,
      bus: this.bus,
      output: options.output,
      readyTimeoutMs: options.readyTimeoutMs,
      children: this.gateways.map(({ name, port }) => ({
        name,
        port,
        host,
        script,
        env: {
          ...options.gatewayEnv,
          STREAMHEAL_NODE_ID: name,
          STREAMHEAL_HOST: host,
          STREAMHEAL_PORT: String(port),
          STREAMHEAL_CONTROL_PORT: '0', // a free port, advertised in the node record
          ...childBackendEnv(backends, { url: linkUrl, secret: clusterSecret }),
          STREAMHEAL_CLUSTER_SECRET: clusterSecret,
          STREAMHEAL_PUBLISH_KEY: publishKey,
        },
      })),
    });
    this.orchestrators =
      orchestrators > 0
        ? new Supervisor({
            logger: this.logger,
            output: options.output,
            readyTimeoutMs: options.readyTimeoutMs,
            children: orchestratorChildren({
              count: orchestrators,
              host,
              portBase: orchestratorPortBase,
              env: {
                ...childBackendEnv(backends, { url: linkUrl, secret: clusterSecret }),
                STREAMHEAL_CLUSTER_SECRET: clusterSecret, // signs the redirect tokens of moves
              },
              ...(options.orchestratorScript ? { script: options.orchestratorScript } : {}),
            }),
          })
        : undefined;
  }

  /**
   * Starts the control server, then the gateways; resolves when every gateway is ready and the
   * cluster file is written. On failure (or a `stop()` meanwhile) everything started is stopped.
   */
  async start(): Promise<void> {
    try {
      await this.backends.ready();
      this.assertRunning();
      await this.control.listen();
      this.assertRunning();
      // With orchestrators, they run the functions (one of them at a time); else this process.
      if (!this.orchestrators) await this.startControlPlane();
      this.assertRunning();
      await Promise.all([this.supervisor.start(), this.orchestrators?.start()]);
      this.assertRunning();
      if (this.clusterFile) {
        process.on('exit', this.removeFileOnExit);
        this.fileWritten = true;
        await writeClusterFile(this.clusterFile, {
          version: 1,
          pid: process.pid,
          startedAt: new Date().toISOString(),
          control: this.control.url,
          gateways: this.gateways.map(({ name, url }) => ({ name, url })),
          publishKey: this.publishKey,
          clusterSecret: this.clusterSecret,
        });
      }
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  /** Stops the gateways, then the control server, store and bus; removes the cluster file. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const warn = (what: string) => (error: unknown) =>
        this.logger.warn({ err: error }, `${what} failed`);
      // First, so gateways stopping (and revoking their leases) are not taken for lost ones.
      this.stopControlPlane();
      // Orchestrators first, for the same reason.
      await this.orchestrators?.stop();
      await this.supervisor.stop();
      await this.control.close().catch(warn('closing the control server'));
      await this.backends.close().catch(warn('closing the store and bus'));
      if (this.clusterFile && this.fileWritten) {
        await removeClusterFile(this.clusterFile).catch(warn('removing the cluster file'));
      }
      process.off('exit', this.removeFileOnExit);
      this.logger.info('cluster stopped');
    })();
    return this.stopping;
  }

  /**
   * The same functions as the Lambdas, run in this process: the catalogue's patterns routed on
   * the in-process bus to decide, nodeLost and alerts; expired gateway leases turned into
   * `Node Lease Expired`; dead-lettered alerts sent again on a timer.
   */
  private async startControlPlane(): Promise<void> {
    this.unroute = routeCatalogue(this.bus, catalogue(), {
      decide: decideRunner(this.controlDeps),
      nodeLost: nodeLostRunner(this.controlDeps),
      alerts: alertsRunner(this.alertDeps),
    });
    this.leaseWatch = await watchNodeLeases(this.store, this.bus, this.logger);
    if (this.alertDeps.targets.length > 0) {
      this.redeliverTimer = setInterval(() => {
        redeliverAlerts(this.alertDeps).catch((error: unknown) =>
          this.logger.error({ err: error }, 'alert redelivery failed'),
        );
      }, this.alertRedeliverMs).unref();
      this.logger.info(
        { targets: this.alertDeps.targets.map((t) => `${t.type}:${t.name}`) },
        `delivering decision events to ${this.alertDeps.targets.length} alert target(s)`,
      );
    }
  }

  private stopControlPlane(): void {
    this.unroute?.();
    this.unroute = undefined;
    this.leaseWatch?.close();
    this.leaseWatch = undefined;
    clearInterval(this.redeliverTimer);
  }

  private assertRunning(): void {
    if (this.stopping) throw new Error('cluster stopped while starting');
  }
}

/** Creates and starts a local cluster. */
export async function startCluster(options: ClusterOptions): Promise<LocalCluster> {
  const cluster = new LocalCluster(options);
  await cluster.start();
  return cluster;
}

/** The banner printed once the cluster is ready. */
export function describeCluster(cluster: LocalCluster): string {
  const rows = [
    ['gateway', 'WebSocket', 'SSE', 'publish', 'metrics'],
    ...cluster.gateways.map((g) => [g.name, g.ws, g.sse, `POST ${g.publish}`, g.metrics]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const lines = rows.map(
    (row) =>
      `  ${row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd()}`,
  );
  return [
    `streamheal cluster ready: ${cluster.gateways.length} gateways, control ${cluster.control.url}`,
    ...lines,
    `  status        ${cluster.control.url}/v1/status`,
    `  publish key   ${cluster.publishKey}`,
    ...(cluster.clusterFile ? [`  cluster file  ${cluster.clusterFile}`] : []),
    `try: streamheal tail demo   and   streamheal publish demo '{"hello":"world"}'`,
    'Ctrl-C stops the cluster.',
  ].join('\n');
}

function secret(): string {
  return randomBytes(32).toString('base64url');
}

function positiveInt(value: string | undefined): number | undefined {
  const n = Number(value);
  return value && Number.isInteger(n) && n > 0 ? n : undefined;
}

/** `count` ports from `base` must be valid and clear of the `taken` ranges. */
function validatePorts(base: number, count: number, taken: [number, number, string][]): void {
  const last = base + count - 1;
  if (!Number.isInteger(base) || base < 1 || last > 65535) {
    throw new ClusterConfigError(
      `invalid orchestrator port base ${base} for ${count} orchestrators`,
    );
  }
  for (const [from, to, what] of taken) {
    if (base <= to && last >= from) {
      throw new ClusterConfigError(
        `orchestrator ports ${base}-${last} overlap ${what} ${from === to ? from : `${from}-${to}`}`,
      );
    }
  }
}

function validate(o: {
  controlPort: number;
  count: number;
  portBase: number;
  publishKey: string;
  clusterSecret: string;
}): void {
  const port = (n: number) => Number.isInteger(n) && n > 0 && n <= 65535;
  if (!port(o.controlPort)) throw new ClusterConfigError(`invalid control port ${o.controlPort}`);
  if (!Number.isInteger(o.count) || o.count < 1)
    throw new ClusterConfigError(`invalid gateway count ${o.count}: at least 1`);
  if (!port(o.portBase) || !port(o.portBase + o.count - 1)) {
    throw new ClusterConfigError(`invalid port base ${o.portBase} for ${o.count} gateways`);
  }
  if (o.controlPort >= o.portBase && o.controlPort < o.portBase + o.count) {
    throw new ClusterConfigError(
      `control port ${o.controlPort} overlaps the gateway ports ${o.portBase}-${o.portBase + o.count - 1}`,
    );
  }
  if (o.publishKey.length < 8)
    throw new ClusterConfigError('STREAMHEAL_PUBLISH_KEY must be at least 8 characters');
  if (o.clusterSecret.length < 16) {
    throw new ClusterConfigError('STREAMHEAL_CLUSTER_SECRET must be at least 16 characters');
  }
}
