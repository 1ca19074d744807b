/**
 * dynalite (the DynamoDB API on LevelDB, in memory) started in this process on 127.0.0.1 and a
 * port the OS picks. `stop()` closes the server and every connection clients still hold open,
 * so it finishes at once instead of waiting for keep-alive sockets.
 */
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createRequire } from 'node:module';

export interface Dynalite {
  /** http://127.0.0.1:<port> */
  readonly endpoint: string;
  readonly port: number;
  stop(): Promise<void>;
}

type DynaliteFactory = (options: {
  createTableMs?: number;
  deleteTableMs?: number;
  updateTableMs?: number;
}) => Server;

const require = createRequire(import.meta.url);

export async function startDynalite({ createTableMs = 0 } = {}): Promise<Dynalite> {
  const dynalite = require('dynalite') as DynaliteFactory;
  const server = dynalite({ createTableMs, deleteTableMs: 0, updateTableMs: 0 });
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let stopped: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    stop: () =>
      (stopped ??= new Promise<void>((resolve, reject) => {
        server.close((error?: Error) => (error ? reject(error) : resolve()));
        for (const socket of sockets) socket.destroy();
      })),
  };
}
