/**
 * Which state store and event bus a process uses, chosen from the environment. Every process
 * (gateway, control process, orchestrator, CLI) selects through here, so the same variables mean
 * the same thing everywhere (docs/self-hosted.md, "Configuration"):
 *
 *   STREAMHEAL_STORE  memory | link | etcd | dynamodb
 *   STREAMHEAL_BUS    inprocess | link | etcd | eventbridge   (default: follows the store)
 *
 * - memory / inprocess: this process alone (a single gateway, or the control process's embedded
 *   store and router);
 * - link: the embedded store or bus of a control process over the control link
 *   (STREAMHEAL_CONTROL_URL, STREAMHEAL_CLUSTER_SECRET);
 * - etcd: an etcd cluster (STREAMHEAL_ETCD_ENDPOINTS, STREAMHEAL_ETCD_PREFIX, ...; docs/etcd.md);
 * - dynamodb: DynamoStore.fromEnv (table and tuning variables in docs/dynamodb.md);
 * - eventbridge: EventBridgeBus on STREAMHEAL_EVENT_BUS_NAME (docs/events.md).
 * AWS clients take region, credentials and endpoint from the SDK's own variables (AWS_REGION,
 * AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>, ...), which is how LocalStack is reached.
 *
 * Reading the settings (`backendConfigFromEnv`) does no I/O and throws BackendConfigError naming
 * the variable at fault; `openBackends` builds the clients, and `ready()` checks they answer.
 */
import { readFileSync } from 'node:fs';
import { EtcdBus } from '../shared/bus/EtcdBus.js';
import { EventBridgeBus, type Ordering } from '../shared/bus/EventBridgeBus.js';
import type { EventBus } from '../shared/bus/EventBus.js';
import { InProcessBus } from '../shared/bus/InProcessBus.js';
import { StreamhealError } from '../shared/errors.js';
import { LinkClient } from '../shared/link/LinkClient.js';
import { RemoteBus } from '../shared/link/RemoteBus.js';
import { RemoteStore } from '../shared/link/RemoteStore.js';
import { DynamoStore } from '../shared/store/DynamoStore.js';
import { EtcdStore } from '../shared/store/EtcdStore.js';
import type { EtcdConnectionOptions } from '../shared/store/etcd/connection.js';
import { MemoryStore } from '../shared/store/MemoryStore.js';
import {
  DEFAULT_HISTORY_LIMITS,
  type HistoryLimits,
  type StateStore,
} from '../shared/store/StateStore.js';
import type { Logger } from '../shared/telemetry/logger.js';

export const StoreKinds = ['memory', 'link', 'etcd', 'dynamodb'] as const;
export const BusKinds = ['inprocess', 'link', 'etcd', 'eventbridge'] as const;
export type StoreKind = (typeof StoreKinds)[number];
export type BusKind = (typeof BusKinds)[number];

/** The bus that goes with a store when STREAMHEAL_BUS is not set. */
export const DEFAULT_BUS: Record<StoreKind, BusKind> = {
  memory: 'inprocess',
  link: 'link',
  etcd: 'etcd',
  dynamodb: 'eventbridge',
};

export const DEFAULT_CONTROL_URL = 'ws://127.0.0.1:7070/v1/link';
export const DEFAULT_ETCD_PREFIX = 'streamheal/';

export class BackendConfigError extends StreamhealError {
  constructor(message: string) {
    super('invalid_config', message);
  }
}

export interface EtcdSettings {
  endpoints: string[];
  prefix: string;
  timeoutMs?: number;
  /** Revision history kept by the store's compactor; 0 leaves compaction to etcd. */
  compactionRetentionMs?: number;
  /** How long bus events stay in etcd. */
  busRetentionMs?: number;
  auth?: { username: string; password: string };
  /** Files read when the backends are opened. */
  tls?: { caFile: string; certFile?: string; keyFile?: string };
}

export interface BackendConfig {
  store: StoreKind;
  bus: BusKind;
  limits: HistoryLimits;
  /** With store or bus `link`. */
  link?: { url: string; secret: string };
  /** With store or bus `etcd`. */
  etcd?: EtcdSettings;
  /** With bus `eventbridge`. */
  eventBridge?: { eventBusName: string; ordering: Ordering };
  /** With store `dynamodb`: the variables DynamoStore.fromEnv reads. */
  env: Record<string, string | undefined>;
  /** With store `dynamodb`: create missing tables in `ready()` (STREAMHEAL_DYNAMODB_CREATE_TABLES). */
  createTables?: boolean;
}

export interface BackendDefaults {
  /** @default 'memory' */
  store?: StoreKind;
  /** Kinds this process accepts; others are refused with a message saying why. */
  allowedStores?: readonly StoreKind[];
  allowedBuses?: readonly BusKind[];
  /** Why the allowed kinds are limited, for the error message. */
  purpose?: string;
}

type Env = Record<string, string | undefined>;

/** The settings in `env`; throws BackendConfigError naming the variable at fault. */
export function backendConfigFromEnv(env: Env, defaults: BackendDefaults = {}): BackendConfig {
  const store = kind('STREAMHEAL_STORE', env, StoreKinds) ?? defaults.store ?? 'memory';
  const bus = kind('STREAMHEAL_BUS', env, BusKinds) ?? DEFAULT_BUS[store];
  const why = defaults.purpose ? ` ${defaults.purpose}` : '';
  if (defaults.allowedStores && !defaults.allowedStores.includes(store)) {
    throw new BackendConfigError(
      `STREAMHEAL_STORE=${store} is not supported${why}: use ${defaults.allowedStores.join(' or ')}`,
    );
  }
  if (defaults.allowedBuses && !defaults.allowedBuses.includes(bus)) {
    throw new BackendConfigError(
      `STREAMHEAL_BUS=${bus} is not supported${why}: use ${defaults.allowedBuses.join(' or ')}`,
    );
  }
  const config: BackendConfig = {
    store,
    bus,
    limits: {
      maxCount: positiveInt(env, 'STREAMHEAL_HISTORY_MAX_COUNT') ?? DEFAULT_HISTORY_LIMITS.maxCount,
      maxAgeMs:
        positiveInt(env, 'STREAMHEAL_HISTORY_MAX_AGE_MS') ?? DEFAULT_HISTORY_LIMITS.maxAgeMs,
    },
    env,
  };
  if (store === 'link' || bus === 'link') config.link = linkSettings(env, store, bus);
  if (store === 'etcd' || bus === 'etcd') config.etcd = etcdSettingsFromEnv(env);
  if (store === 'dynamodb') {
    const create = env.STREAMHEAL_DYNAMODB_CREATE_TABLES?.trim();
    if (create !== undefined && create !== '') {
      if (!/^(true|false|1|0)$/i.test(create)) {
        throw new BackendConfigError(
          `STREAMHEAL_DYNAMODB_CREATE_TABLES must be true or false, got "${create}"`,
        );
      }
      config.createTables = /^(true|1)$/i.test(create);
    }
  }
  if (bus === 'eventbridge') {
    const ordering = env.STREAMHEAL_EVENTBRIDGE_ORDERING || 'strict';
    if (ordering !== 'strict' && ordering !== 'batched') {
      throw new BackendConfigError(
        `STREAMHEAL_EVENTBRIDGE_ORDERING must be strict or batched, got "${ordering}"`,
      );
    }
    config.eventBridge = {
      eventBusName: env.STREAMHEAL_EVENT_BUS_NAME || 'default',
      ordering,
    };
  }
  return config;
}

/** The etcd variables alone (for processes that need etcd whatever the store). */
export function etcdSettingsFromEnv(env: Env): EtcdSettings {
  const endpoints = list(env.STREAMHEAL_ETCD_ENDPOINTS);
  if (endpoints.length === 0) {
    throw new BackendConfigError(
      'STREAMHEAL_ETCD_ENDPOINTS is required with etcd: the client URLs of the members, ' +
        'comma-separated (e.g. http://127.0.0.1:2379,http://127.0.0.1:2381)',
    );
  }
  for (const endpoint of endpoints) checkEtcdEndpoint(endpoint);
  const settings: EtcdSettings = {
    endpoints,
    prefix: env.STREAMHEAL_ETCD_PREFIX || DEFAULT_ETCD_PREFIX,
  };
  const timeoutMs = positiveInt(env, 'STREAMHEAL_ETCD_TIMEOUT_MS');
  if (timeoutMs !== undefined) settings.timeoutMs = timeoutMs;
  const compaction = nonNegativeInt(env, 'STREAMHEAL_ETCD_COMPACTION_RETENTION_MS');
  if (compaction !== undefined) settings.compactionRetentionMs = compaction;
  const retention = positiveInt(env, 'STREAMHEAL_ETCD_BUS_RETENTION_MS');
  if (retention !== undefined) settings.busRetentionMs = retention;
  const username = env.STREAMHEAL_ETCD_USERNAME;
  const password = env.STREAMHEAL_ETCD_PASSWORD;
  if (username || password) {
    if (!username || !password) {
      throw new BackendConfigError(
        'STREAMHEAL_ETCD_USERNAME and STREAMHEAL_ETCD_PASSWORD go together',
      );
    }
    settings.auth = { username, password };
  }
  const [caFile, certFile, keyFile] = [
    env.STREAMHEAL_ETCD_CA_FILE,
    env.STREAMHEAL_ETCD_CERT_FILE,
    env.STREAMHEAL_ETCD_KEY_FILE,
  ];
  if (caFile || certFile || keyFile) {
    if (!caFile) {
      throw new BackendConfigError(
        'STREAMHEAL_ETCD_CA_FILE is required with STREAMHEAL_ETCD_CERT_FILE / _KEY_FILE',
      );
    }
    if (Boolean(certFile) !== Boolean(keyFile)) {
      throw new BackendConfigError(
        'STREAMHEAL_ETCD_CERT_FILE and STREAMHEAL_ETCD_KEY_FILE go together (client certificate)',
      );
    }
    settings.tls = { caFile, ...(certFile && keyFile ? { certFile, keyFile } : {}) };
  }
  return settings;
}

/** Options for EtcdStore / EtcdBus / an EtcdConnection; reads the TLS files. */
export function etcdConnectionOptions(settings: EtcdSettings): EtcdConnectionOptions {
  const options: EtcdConnectionOptions = { endpoints: settings.endpoints };
  if (settings.timeoutMs !== undefined) options.timeoutMs = settings.timeoutMs;
  if (settings.auth) options.auth = settings.auth;
  if (settings.tls) {
    const read = (file: string, variable: string): Buffer => {
      try {
        return readFileSync(file);
      } catch (error) {
        throw new BackendConfigError(
          `${variable}: cannot read ${file} (${(error as Error).message})`,
        );
      }
    };
    options.tls = {
      ca: read(settings.tls.caFile, 'STREAMHEAL_ETCD_CA_FILE'),
      ...(settings.tls.certFile
        ? { cert: read(settings.tls.certFile, 'STREAMHEAL_ETCD_CERT_FILE') }
        : {}),
      ...(settings.tls.keyFile
        ? { key: read(settings.tls.keyFile, 'STREAMHEAL_ETCD_KEY_FILE') }
        : {}),
    };
  }
  return options;
}

/**
 * The variables that give another process the same store and bus (what a control process
 * passes to the gateways and orchestrators it starts). Secrets (link secret, etcd password)
 * are included: the child needs them.
 */
export function backendEnv(config: BackendConfig): Record<string, string> {
  const env: Record<string, string> = {
    STREAMHEAL_STORE: config.store,
    STREAMHEAL_BUS: config.bus,
    STREAMHEAL_HISTORY_MAX_COUNT: String(config.limits.maxCount),
    STREAMHEAL_HISTORY_MAX_AGE_MS: String(config.limits.maxAgeMs),
  };
  if (config.link) {
    env.STREAMHEAL_CONTROL_URL = config.link.url;
    env.STREAMHEAL_CLUSTER_SECRET = config.link.secret;
  }
  const etcd = config.etcd;
  if (etcd) {
    env.STREAMHEAL_ETCD_ENDPOINTS = etcd.endpoints.join(',');
    env.STREAMHEAL_ETCD_PREFIX = etcd.prefix;
    if (etcd.timeoutMs !== undefined) env.STREAMHEAL_ETCD_TIMEOUT_MS = String(etcd.timeoutMs);
    if (etcd.compactionRetentionMs !== undefined) {
      env.STREAMHEAL_ETCD_COMPACTION_RETENTION_MS = String(etcd.compactionRetentionMs);
    }
    if (etcd.busRetentionMs !== undefined) {
      env.STREAMHEAL_ETCD_BUS_RETENTION_MS = String(etcd.busRetentionMs);
    }
    if (etcd.auth) {
      env.STREAMHEAL_ETCD_USERNAME = etcd.auth.username;
      env.STREAMHEAL_ETCD_PASSWORD = etcd.auth.password;
    }
    if (etcd.tls) {
      env.STREAMHEAL_ETCD_CA_FILE = etcd.tls.caFile;
      if (etcd.tls.certFile) env.STREAMHEAL_ETCD_CERT_FILE = etcd.tls.certFile;
      if (etcd.tls.keyFile) env.STREAMHEAL_ETCD_KEY_FILE = etcd.tls.keyFile;
    }
  }
  if (config.eventBridge) {
    env.STREAMHEAL_EVENT_BUS_NAME = config.eventBridge.eventBusName;
    env.STREAMHEAL_EVENTBRIDGE_ORDERING = config.eventBridge.ordering;
  }
  return env;
}

export interface Backends {
  readonly config: BackendConfig;
  readonly store: StateStore;
  readonly bus: EventBus;
  /** The control link, when the store or the bus goes over it. */
  readonly link: LinkClient | undefined;
  /**
   * Resolves once the store answers (etcd: a linearizable read; DynamoDB: the tables exist);
   * rejects with StoreUnavailableError naming the endpoints otherwise. Link and in-process
   * backends are ready at once (the link connects, and reconnects, by itself).
   */
  ready(): Promise<void>;
  /** Closes the store, the bus and the link. */
  close(): Promise<void>;
}

export interface OpenOptions {
  logger: Logger;
  /** Told about bus handlers that throw (in-process and etcd buses). */
  onHandlerError?: (error: unknown, event: { id: string }) => void;
  /** DynamoDB: create missing tables in ready() (tests, LocalStack, first runs). */
  createTables?: boolean;
}

/** Builds the store and bus `config` names. No I/O until `ready()` or the first call. */
export function openBackends(config: BackendConfig, options: OpenOptions): Backends {
  const { logger } = options;
  const onHandlerError =
    options.onHandlerError ??
    ((error: unknown, event: { id: string }) =>
      logger.error({ err: error, event: event.id }, 'bus handler failed'));
  let link: LinkClient | undefined;
  if (config.link) {
    link = new LinkClient({ url: config.link.url, secret: config.link.secret, logger });
  }
  const etcdOptions = config.etcd ? etcdConnectionOptions(config.etcd) : undefined;
  const checks: Array<() => Promise<void>> = [];

  let store: StateStore;
  switch (config.store) {
    case 'memory':
      store = new MemoryStore({ limits: config.limits });
      break;
    case 'link':
      store = new RemoteStore(link!);
      break;
    case 'etcd': {
      const etcdStore = new EtcdStore({
        ...etcdOptions!,
        prefix: config.etcd!.prefix,
        limits: config.limits,
        logger,
        ...(config.etcd!.compactionRetentionMs === undefined
          ? {}
          : { compactionRetentionMs: config.etcd!.compactionRetentionMs }),
      });
      checks.push(() => etcdStore.ping());
      store = etcdStore;
      break;
    }
    case 'dynamodb': {
      const dynamoStore = DynamoStore.fromEnv(config.env, { limits: config.limits, logger });
      checks.push(async () => {
        if (options.createTables ?? config.createTables) await dynamoStore.createTables();
        // A read of a record that need not exist: proves endpoint, credentials and tables.
        await dynamoStore.get('streamheal/ready-check');
      });
      store = dynamoStore;
      break;
    }
  }

  let bus: EventBus;
  switch (config.bus) {
    case 'inprocess':
      bus = new InProcessBus({ onHandlerError });
      break;
    case 'link':
      bus = new RemoteBus(link!, { logger });
      break;
    case 'etcd':
      bus = new EtcdBus({
        ...etcdOptions!,
        prefix: config.etcd!.prefix,
        logger,
        onHandlerError,
        ...(config.etcd!.busRetentionMs === undefined
          ? {}
          : { retentionMs: config.etcd!.busRetentionMs }),
      });
      break;
    case 'eventbridge':
      bus = new EventBridgeBus({
        eventBusName: config.eventBridge!.eventBusName,
        ordering: config.eventBridge!.ordering,
        onDrop: (drop) =>
          logger.warn(
            { reason: drop.reason, events: drop.events.length, errorCode: drop.errorCode },
            'EventBridge events dropped',
          ),
      });
      break;
  }

  let closing: Promise<void> | undefined;
  return {
    config,
    store,
    bus,
    link,
    ready: async () => {
      for (const check of checks) await check();
    },
    close: () =>
      (closing ??= (async () => {
        await Promise.allSettled([store.close(), bus.close()]);
        link?.close();
      })()),
  };
}

/** Lines for `--help` texts: the variables read here. */
export const BACKEND_ENV_HELP = `  STREAMHEAL_STORE              memory | link | etcd | dynamodb
  STREAMHEAL_BUS                inprocess | link | etcd | eventbridge (default: memory -> inprocess,
                                link -> link, etcd -> etcd, dynamodb -> eventbridge)
  STREAMHEAL_CONTROL_URL        control link with link (default ${DEFAULT_CONTROL_URL})
  STREAMHEAL_CLUSTER_SECRET     control link secret (required with link)
  STREAMHEAL_ETCD_ENDPOINTS     etcd client URLs, comma-separated (required with etcd)
  STREAMHEAL_ETCD_PREFIX        key prefix (default ${DEFAULT_ETCD_PREFIX}); STREAMHEAL_ETCD_TIMEOUT_MS (3000),
                                STREAMHEAL_ETCD_USERNAME / _PASSWORD, STREAMHEAL_ETCD_CA_FILE / _CERT_FILE / _KEY_FILE,
                                STREAMHEAL_ETCD_COMPACTION_RETENTION_MS (300000; 0 = etcd compacts),
                                STREAMHEAL_ETCD_BUS_RETENTION_MS (60000)
  STREAMHEAL_DYNAMODB_*         table names and tuning with dynamodb (docs/dynamodb.md);
                                STREAMHEAL_DYNAMODB_CREATE_TABLES=true creates missing tables at start
  STREAMHEAL_EVENT_BUS_NAME     EventBridge bus with eventbridge (default default);
                                STREAMHEAL_EVENTBRIDGE_ORDERING strict | batched
  AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_EVENTBRIDGE, ...
                                the AWS SDK's own variables (LocalStack: docs/localstack.md)
`;

// ------------------------------------------------------------------ parsing

function kind<K extends string>(variable: string, env: Env, kinds: readonly K[]): K | undefined {
  const value = env[variable]?.trim();
  if (value === undefined || value === '') return undefined;
  if (!(kinds as readonly string[]).includes(value)) {
    throw new BackendConfigError(`${variable} must be one of ${kinds.join(', ')}, got "${value}"`);
  }
  return value as K;
}

function linkSettings(env: Env, store: StoreKind, bus: BusKind): { url: string; secret: string } {
  const what = store === 'link' ? 'STREAMHEAL_STORE=link' : `STREAMHEAL_BUS=${bus}`;
  const secret = env.STREAMHEAL_CLUSTER_SECRET;
  if (!secret) throw new BackendConfigError(`STREAMHEAL_CLUSTER_SECRET is required with ${what}`);
  if (secret.length < 16) {
    throw new BackendConfigError('STREAMHEAL_CLUSTER_SECRET must be at least 16 characters');
  }
  const url = env.STREAMHEAL_CONTROL_URL || DEFAULT_CONTROL_URL;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BackendConfigError(`STREAMHEAL_CONTROL_URL is not a URL: "${url}"`);
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
    throw new BackendConfigError(
      `STREAMHEAL_CONTROL_URL must be a ws:// or wss:// URL (the control link), got "${url}"`,
    );
  }
  return { url, secret };
}

function checkEtcdEndpoint(endpoint: string): void {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new BackendConfigError(
      `STREAMHEAL_ETCD_ENDPOINTS: "${endpoint}" is not a URL (write http://host:2379)`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new BackendConfigError(
      `STREAMHEAL_ETCD_ENDPOINTS: "${endpoint}" must start with http:// or https://`,
    );
  }
  if (url.port === '' || (url.pathname !== '/' && url.pathname !== '')) {
    throw new BackendConfigError(
      `STREAMHEAL_ETCD_ENDPOINTS: "${endpoint}" must be scheme://host:port, nothing more`,
    );
  }
}

function list(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

function positiveInt(env: Env, variable: string): number | undefined {
  const n = nonNegativeInt(env, variable);
  if (n === 0) throw new BackendConfigError(`${variable} must be a whole number > 0, got "0"`);
  return n;
}

function nonNegativeInt(env: Env, variable: string): number | undefined {
  const value = env[variable]?.trim();
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new BackendConfigError(`${variable} must be a whole number, got "${value}"`);
  }
  return Number(value);
}

/**
 * The store and bus of the processes a control process starts (`streamheal start`), given the
 * control process's own: with the embedded store they use it over the control link; with etcd
 * they use etcd directly; with DynamoDB they use the tables directly and the control process's
 * in-process bus over the link (its router runs the functions).
 */
export function childBackendEnv(
  config: BackendConfig,
  link: { url: string; secret: string },
): Record<string, string> {
  const linked = { STREAMHEAL_CONTROL_URL: link.url, STREAMHEAL_CLUSTER_SECRET: link.secret };
  const limits = {
    STREAMHEAL_HISTORY_MAX_COUNT: String(config.limits.maxCount),
    STREAMHEAL_HISTORY_MAX_AGE_MS: String(config.limits.maxAgeMs),
  };
  if (config.store === 'memory') {
    return { ...limits, ...linked, STREAMHEAL_STORE: 'link', STREAMHEAL_BUS: 'link' };
  }
  if (config.store === 'dynamodb' && config.bus === 'inprocess') {
    return { ...backendEnv(config), ...linked, STREAMHEAL_BUS: 'link' };
  }
  return backendEnv(config);
}
