/** Starts a control link server on 127.0.0.1 for tests, and remembers what to close. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { EventBus } from '../../../shared/bus/EventBus.js';
import { LinkClient, type LinkClientOptions } from '../../../shared/link/LinkClient.js';
import { serveLink } from '../../../shared/link/LinkServer.js';
import type { StateStore } from '../../../shared/store/StateStore.js';

export const LINK_PATH = '/v1/control-link';
export const SECRET = 'test-secret-0123456789';

export interface RunningLink {
  server: Server;
  port: number;
  url: string;
  stop(): Promise<void>;
}

/** A bus that refuses everything, for store-only tests. */
export const noBus: EventBus = {
  put: () => Promise.reject(new Error('no bus in this test')),
  subscribe: () => {
    throw new Error('no bus in this test');
  },
  close: () => Promise.resolve(),
};

export async function startLink(options: {
  store: StateStore;
  bus?: EventBus;
  port?: number;
  secret?: string;
}): Promise<RunningLink> {
  const server = createServer((_request, response) => {
    response.statusCode = 404;
    response.end();
  });
  const link = serveLink({
    server,
    path: LINK_PATH,
    secret: options.secret ?? SECRET,
    store: options.store,
    bus: options.bus ?? noBus,
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let stopped = false;
  return {
    server,
    port,
    url: `ws://127.0.0.1:${port}${LINK_PATH}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      await link.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export function connect(url: string, options: Partial<LinkClientOptions> = {}): LinkClient {
  return new LinkClient({ url, secret: SECRET, ...options });
}

/** Closes everything registered, newest first. */
export class Closer {
  private readonly items: Array<() => Promise<void> | void> = [];
  add<T extends { close(): Promise<void> | void } | { stop(): Promise<void> }>(item: T): T {
    this.items.push(() => ('stop' in item ? item.stop() : item.close()));
    return item;
  }
  async closeAll(): Promise<void> {
    for (const close of this.items.splice(0).reverse()) await close();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(5);
  }
}
