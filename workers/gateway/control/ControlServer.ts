/**
 * The gateway's gRPC control server (shared/protocol/control.proto): Reload, Drain, Migrate,
 * Status, each call authenticated with a control token from the cluster's key ring. It only
 * translates; the work is the gateway's (`ControlTarget`).
 */
import {
  Server,
  ServerCredentials,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
} from '@grpc/grpc-js';
import { context, propagation, SpanStatusCode } from '@opentelemetry/api';
import {
  DEFAULT_MIGRATE_TTL_MS,
  gatewayControlService,
  verifyControlMetadata,
  type DrainReply,
  type MigrateResult,
  type Move,
  type RouteTable,
  type StatusReply,
} from '../../../shared/protocol/gatewayControl.js';
import type { Logger } from '../../../shared/telemetry/logger.js';
import { tracer } from '../../../shared/telemetry/tracing.js';
import type { KeyRing } from '../../../shared/tokens.js';

/** What the control server drives. */
export interface ControlTarget {
  /** Installs the route table; returns the version now held. Throws RangeError when older. */
  reload(table: RouteTable): number;
  drain(deadlineMs: number): Promise<DrainReply>;
  /** Moves the sessions, calling `onResult` as each one settles. */
  migrate(moves: Move[], ttlMs: number, onResult: (result: MigrateResult) => void): Promise<void>;
  status(sessionLimit: number): StatusReply;
}

export interface ControlServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  keyRing: KeyRing;
  target: ControlTarget;
  logger: Logger;
}

export interface ControlServer {
  /** `host:port` the server listens on. */
  readonly address: string;
  close(): Promise<void>;
}

export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const { keyRing, target, logger } = options;
  const server = new Server();

  /** Runs `handle` for an authenticated call; refuses the rest UNAUTHENTICATED. */
  const unary =
    <Req, Res>(name: string, handle: (request: Req) => Res | Promise<Res>) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      verifyControlMetadata(keyRing, call.metadata).then(
        async () => {
          try {
            callback(null, await handle(call.request));
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error);
            const code = error instanceof RangeError ? status.FAILED_PRECONDITION : status.INTERNAL;
            logger.warn({ err: error, call: name }, 'control call failed');
            callback({ code, message });
          }
        },
        (error: unknown) => {
          logger.warn({ call: name, err: error }, 'control call refused: not authenticated');
          callback({
            code: status.UNAUTHENTICATED,
            message: `control call refused: ${error instanceof Error ? error.message : String(error)}`,
          });
        },
      );
    };

  server.addService(gatewayControlService(), {
    reload: unary<RouteTable, { version: number }>('Reload', (table) => ({
      version: target.reload(table),
    })),
    drain: unary<{ deadlineMs: number }, DrainReply>('Drain', (request) =>
      target.drain(request.deadlineMs),
    ),
    status: unary<{ sessionLimit: number }, StatusReply>('Status', (request) =>
      target.status(request.sessionLimit),
    ),
    migrate: (call: ServerWritableStream<{ moves: Move[]; ttlMs: number }, MigrateResult>) => {
      // The caller's trace (the decision that asked for the move) continues here.
      const parent = propagation.extract(context.active(), call.metadata.getMap());
      verifyControlMetadata(keyRing, call.metadata).then(
        () =>
          tracer().startActiveSpan('migrate', {}, parent, async (span) => {
            span.setAttribute('streamheal.sessions', call.request.moves.length);
            try {
              await target.migrate(
                call.request.moves,
                call.request.ttlMs || DEFAULT_MIGRATE_TTL_MS,
                (result) => call.write(result),
              );
              call.end();
            } catch (error) {
              span.setStatus({ code: SpanStatusCode.ERROR });
              logger.warn({ err: error, call: 'Migrate' }, 'control call failed');
              call.emit('error', {
                code: status.INTERNAL,
                details: error instanceof Error ? error.message : String(error),
              });
            } finally {
              span.end();
            }
          }),
        (error: unknown) => {
          logger.warn({ call: 'Migrate', err: error }, 'control call refused: not authenticated');
          call.emit('error', {
            code: status.UNAUTHENTICATED,
            details: `control call refused: ${error instanceof Error ? error.message : String(error)}`,
          });
        },
      );
    },
  });

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${options.host}:${options.port}`,
      ServerCredentials.createInsecure(),
      (error, bound) => (error ? reject(error) : resolve(bound)),
    ),
  );
  const address = `${options.host}:${port}`;
  logger.info({ address }, 'control service listening');
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        // In-flight calls (a Drain, a Migrate) get a moment; then everything goes.
        const force = setTimeout(() => server.forceShutdown(), 2_000).unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
