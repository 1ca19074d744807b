/**
 * The gateway control service (control.proto beside this file): its message types, the
 * call authentication shared by client and server, and a promise-based client for the
 * control plane. The .proto is loaded on first use, not at import.
 */
import { fileURLToPath } from 'node:url';
import {
  credentials,
  loadPackageDefinition,
  Metadata,
  type Client,
  type ClientReadableStream,
  type ServiceClientConstructor,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { signToken, verifyToken, type KeyRing } from '../tokens.js';

export interface Route {
  node: string;
  url: string;
  /** 'active' routes receive moved sessions. */
  state: string;
}

export interface RouteTable {
  version: number;
  routes: Route[];
}

export interface DrainReply {
  moved: number;
  closed: number;
}

export interface Move {
  session: string;
  targetNode: string;
  targetUrl: string;
  token: string;
}

export type MigrateOutcome = 'MOVED' | 'ROLLED_BACK' | 'NOT_FOUND';

export interface MigrateResult {
  session: string;
  targetNode: string;
  outcome: MigrateOutcome;
  durationMs: number;
}

export interface StatusReply {
  node: string;
  url: string;
  state: 'active' | 'draining' | 'closed';
  websocketConnections: number;
  sseConnections: number;
  sessions: string[];
  routeTableVersion: number;
}

/** Token purpose of control calls. */
export const CONTROL_PURPOSE = 'control';
/** Lifetime of the token each call carries. */
const CALL_TOKEN_LIFETIME_MS = 60_000;
/** Sessions get this long to move unless the request says otherwise (seed 4.3). */
export const DEFAULT_MIGRATE_TTL_MS = 30_000;

let loaded: ServiceClientConstructor | undefined;

/** The GatewayControl client constructor (and `.service` definition), from control.proto on first use. */
function gatewayControl(): ServiceClientConstructor {
  if (!loaded) {
    const definition = loadSync(fileURLToPath(new URL('./control.proto', import.meta.url)), {
      keepCase: false,
      longs: Number,
      enums: String,
      defaults: true,
    });
    loaded = (
      loadPackageDefinition(definition) as unknown as {
        streamheal: { control: { v1: { GatewayControl: ServiceClientConstructor } } };
      }
    ).streamheal.control.v1.GatewayControl;
  }
  return loaded;
}

/** The GatewayControl service definition, for a server. */
export function gatewayControlService(): ServiceDefinition {
  return gatewayControl().service;
}

/** Metadata for one call: a fresh control token, and the trace context when given. */
export async function controlMetadata(
  ring: KeyRing,
  trace: Record<string, string> = {},
): Promise<Metadata> {
  const metadata = new Metadata();
  const token = await signToken(ring, CONTROL_PURPOSE, { sub: 'control' }, CALL_TOKEN_LIFETIME_MS);
  metadata.set('authorization', `Bearer ${token}`);
  for (const [key, value] of Object.entries(trace)) metadata.set(key, value);
  return metadata;
}

/** Verifies a call's control token; throws TokenError when missing, forged or expired. */
export async function verifyControlMetadata(ring: KeyRing, metadata: Metadata): Promise<void> {
  const header = metadata.get('authorization')[0];
  const token = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : '';
  await verifyToken(ring, CONTROL_PURPOSE, token);
}

type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  callback: (error: Error | null, response: Res) => void,
) => void;

interface RawClient extends Client {
  reload: Unary<RouteTable, { version: number }>;
  drain: Unary<{ deadlineMs: number }, DrainReply>;
  status: Unary<{ sessionLimit: number }, StatusReply>;
  migrate(
    request: { moves: Move[]; ttlMs: number },
    metadata: Metadata,
  ): ClientReadableStream<MigrateResult>;
}

/**
 * A client for one gateway's control service (`host:port`). Every call is authenticated with
 * a token from `ring`; `trace` (W3C trace context) rides along as metadata.
 */
export class GatewayControlClient {
  private readonly client: RawClient;

  constructor(
    address: string,
    private readonly ring: KeyRing,
  ) {
    const Constructor = gatewayControl();
    this.client = new Constructor(address, credentials.createInsecure()) as unknown as RawClient;
  }

  reload(table: RouteTable): Promise<{ version: number }> {
    return this.unary((metadata, callback) => this.client.reload(table, metadata, callback));
  }

  drain(deadlineMs = 0): Promise<DrainReply> {
    return this.unary((metadata, callback) =>
      this.client.drain({ deadlineMs }, metadata, callback),
    );
  }

  status(sessionLimit = 0): Promise<StatusReply> {
    return this.unary((metadata, callback) =>
      this.client.status({ sessionLimit }, metadata, callback),
    );
  }

  /** Moves sessions; calls `onResult` as each one settles and resolves with them all. */
  async migrate(
    moves: Move[],
    options: { ttlMs?: number; trace?: Record<string, string> } = {},
    onResult?: (result: MigrateResult) => void,
  ): Promise<MigrateResult[]> {
    const metadata = await controlMetadata(this.ring, options.trace);
    const stream = this.client.migrate({ moves, ttlMs: options.ttlMs ?? 0 }, metadata);
    const results: MigrateResult[] = [];
    return new Promise((resolve, reject) => {
      stream.on('data', (result: MigrateResult) => {
        results.push(result);
        onResult?.(result);
      });
      stream.on('error', reject);
      stream.on('end', () => resolve(results));
    });
  }

  close(): void {
    this.client.close();
  }

  private async unary<Res>(
    call: (metadata: Metadata, callback: (error: Error | null, response: Res) => void) => void,
  ): Promise<Res> {
    const metadata = await controlMetadata(this.ring);
    return new Promise((resolve, reject) =>
      call(metadata, (error, response) => (error ? reject(error) : resolve(response))),
    );
  }
}
