/** Free loopback ports for tests and benchmarks that need several consecutive ones. */
import { createServer } from 'node:net';

export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * `count` consecutive free ports from a random base in [from, from + span): below the
 * ephemeral range and away from the defaults (7070, 8081...).
 */
export async function freePortRange(count: number, from = 20_000, span = 10_000): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = from + Math.floor(Math.random() * span);
    const free = await Promise.all(Array.from({ length: count }, (_, i) => portFree(base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}
