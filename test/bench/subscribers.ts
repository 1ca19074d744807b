/** Orchestrator side of subscriberProcess.ts: spread subscribers over the client processes. */
import type { Proc } from './procs.js';

export interface ConnectOptions {
  /** WebSocket URLs, used round robin within each process. */
  urls: string[];
  total: number;
  channel: string;
  /** Connections opened at once per process. */
  concurrency: number;
  mode: 'scan' | 'parse';
}

/** Connects and subscribes `total` clients; resolves with the slowest process's time in ms. */
export async function connectSubscribers(
  clients: Proc[],
  options: ConnectOptions,
): Promise<number> {
  const { total } = options;
  const answers = await Promise.all(
    clients.map((c, i) =>
      c.request<{ connected: number; failure?: string; ms: number }>('connect', {
        urls: options.urls,
        count: Math.floor(total / clients.length) + (i < total % clients.length ? 1 : 0),
        channel: options.channel,
        concurrency: options.concurrency,
        mode: options.mode,
      }),
    ),
  );
  const connected = answers.reduce((n, a) => n + a.connected, 0);
  if (connected !== total) {
    throw new Error(
      `only ${connected}/${total} subscribed (${answers.find((a) => a.failure)?.failure})`,
    );
  }
  return Math.max(...answers.map((a) => a.ms));
}
