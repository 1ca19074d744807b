/** Starts a control link server on 127.0.0.1 for tests, and remembers what to close. */
import { createHook } from 'node:async_hooks';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
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

/** The harness's own timers, which `trackHandles` leaves out. */
const harnessTimers = new WeakSet<object>();

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => harnessTimers.add(setTimeout(resolve, ms)));
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

/** A clock the test moves by hand (for the pool's idle time and cool-down). */
export class ManualClock {
  constructor(private t = 1_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/**
 * A store whose `get('held:…')` answers only when released, so requests stay in flight on the
 * real link for as long as a test needs; every other call goes to `backing`.
 */
export function holdingStore(backing: StateStore): {
  store: StateStore;
  /** Requests that reached the server and wait. */
  held(): number;
  release(): void;
} {
  const waiting: Array<() => void> = [];
  const store: StateStore = Object.create(backing, {
    get: {
      value: (key: string) =>
        key.startsWith('held:')
          ? new Promise((resolve) => waiting.push(() => resolve(undefined)))
          : backing.get(key),
    },
  });
  return {
    store,
    held: () => waiting.length,
    release: () => {
      for (const resolve of waiting.splice(0)) resolve();
    },
  };
}

/** The link server's upgraded sockets still open, oldest first (one per pooled connection). */
export function serverSockets(link: RunningLink): Duplex[] {
  const sockets: Duplex[] = [];
  link.server.on('upgrade', (_request, socket: Duplex) => {
    sockets.push(socket);
    socket.once('close', () => sockets.splice(sockets.indexOf(socket), 1));
  });
  return sockets;
}

/**
 * Sockets and servers holding the process open, by type. (Timers are left to `trackHandles`:
 * the test runner's own come and go here.)
 */
export function handles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of process.getActiveResourcesInfo()) {
    if (/TCP|Pipe/.test(name)) counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

/**
 * Timers, immediates and TCP handles created from now on and not yet destroyed, by type, and
 * unlike `process.getActiveResourcesInfo()` including unref'd ones (which never hold the
 * process open, yet are leaks all the same).
 */
export function trackHandles(): { live(): Record<string, number>; stop(): void } {
  const live = new Map<number, { type: string; resource: object }>();
  const hook = createHook({
    init(asyncId, type, _trigger, resource: object) {
      if (/^(Timeout|Immediate|TCPWRAP|TCPCONNECTWRAP)$/.test(type)) {
        live.set(asyncId, { type, resource });
      }
    },
    destroy(asyncId) {
      live.delete(asyncId);
    },
  }).enable();
  return {
    live: () => {
      const counts: Record<string, number> = {};
      for (const { type, resource } of live.values()) {
        // A sleep that just fired is destroyed a moment later; it is the test's, not a leak.
        if (!harnessTimers.has(resource)) counts[type] = (counts[type] ?? 0) + 1;
      }
      return counts;
    },
    stop: () => hook.disable(),
  };
}
