/**
 * The local cluster as a real process (`node dist/workers/cli/main.js start`) for integration
 * tests, and the CLI run against it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  childPids,
  dist,
  eventually,
  killPids,
  runNode,
  spawnNode,
  waitUntilGone,
  type RunResult,
  type Spawned,
} from './processes.js';

export interface ClusterProcess extends Spawned {
  publishKey: string;
  controlUrl: string;
  gatewayUrls: string[];
  /** Cluster file of this cluster (in a fresh temp directory). */
  clusterFile: string;
  /** Environment that points the CLI at this cluster (STREAMHEAL_CLUSTER_FILE). */
  env: Record<string, string>;
  /** Pids of the gateway processes, as the control process's children. */
  gatewayPids(): number[];
  /** Runs `streamheal ...args` against this cluster. */
  cli(args: string[], env?: Record<string, string>): Promise<RunResult>;
  /** SIGKILLs the control process and its gateways if still running; removes the temp dir. */
  dispose(): void;
  /** SIGTERM to the control process; resolves with the pids still alive after 10 s (then killed). */
  stop(): Promise<number[]>;
  /** POST /v1/publish with the cluster's key; resolves with the position. */
  publish(url: string, channel: string, data: unknown): Promise<number>;
  /** Pid of the gateway serving `url`, from the control process's status. */
  gatewayPid(url: string): Promise<number>;
  /**
   * Publishes to `channel` through `urls` in turn, a message every ~5 ms, until `stop()`, which
   * resolves with the last position published.
   */
  keepPublishing(urls: string[], channel: string): { stop(): Promise<number> };
}

export interface ClusterProcessOptions {
  controlPort: number;
  portBase: number;
  /** @default 3 */
  gateways?: number;
  env?: Record<string, string>;
  /** @default 30_000 */
  readyTimeoutMs?: number;
}

export const READY_LINE = /streamheal cluster ready: (\d+) gateways, control (\S+)/;

export async function startClusterProcess(options: ClusterProcessOptions): Promise<ClusterProcess> {
  const gateways = options.gateways ?? 3;
  const dir = mkdtempSync(join(tmpdir(), 'streamheal-test-'));
  const clusterFile = join(dir, 'cluster.json');
  const env = { STREAMHEAL_CLUSTER_FILE: clusterFile, ...options.env };
  const child = spawnNode(
    dist('workers/cli/main.js'),
    [
      'start',
      '--gateways',
      String(gateways),
      '--port-base',
      String(options.portBase),
      '--control-port',
      String(options.controlPort),
    ],
    env,
  );
  try {
    const ready = await child.waitFor(READY_LINE, options.readyTimeoutMs ?? 30_000);
    const key = await child.waitFor(/publish key\s+(\S+)/, 1_000);
    const gatewayUrls = Array.from(
      { length: gateways },
      (_, i) => `http://127.0.0.1:${options.portBase + i}`,
    );
    const gatewayPids = () => childPids(child.pid);
    await eventually(
      () => gatewayPids().length === gateways,
      5_000,
      `${gateways} gateway processes`,
    );
    const publish = async (url: string, channel: string, data: unknown): Promise<number> => {
      const response = await fetch(`${url}/v1/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key[1]}`, 'content-type': 'application/json' },
        body: JSON.stringify({ channel, data }),
      });
      if (response.status !== 200) throw new Error(`publish answered ${response.status}`);
      return ((await response.json()) as { position: number }).position;
    };
    return {
      ...child,
      publishKey: key[1]!,
      controlUrl: ready[2]!,
      gatewayUrls,
      clusterFile,
      env,
      gatewayPids,
      cli: (args, extra = {}) => runCli(args, { ...env, ...extra }),
      dispose: () => {
        if (child.proc.exitCode === null && child.proc.signalCode === null) {
          killPids([...gatewayPids(), child.pid]);
        }
        rmSync(dir, { recursive: true, force: true });
      },
      stop: async () => {
        const pids = [...gatewayPids(), child.pid];
        child.proc.kill('SIGTERM');
        const left = await waitUntilGone(pids, 10_000);
        killPids(left);
        rmSync(dir, { recursive: true, force: true });
        return left;
      },
      publish,
      keepPublishing(urls, channel) {
        let published = 0;
        let stopped = false;
        const loop = (async () => {
          while (!stopped) {
            published = await publish(urls[published % urls.length]!, channel, {
              n: published,
            });
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
        })();
        return {
          stop: async () => {
            stopped = true;
            await loop;
            return published;
          },
        };
      },
      gatewayPid: async (url) => {
        const status = (await (await fetch(`${ready[2]}/v1/status`)).json()) as {
          nodes: { url: string; pid: number }[];
        };
        const node = status.nodes.find((n) => n.url === url);
        if (!node) throw new Error(`no node at ${url}`);
        return node.pid;
      },
    };
  } catch (error) {
    killPids([...childPids(child.pid), child.pid]);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Runs `streamheal ...args` (the compiled CLI) to completion. */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs?: number,
): Promise<RunResult> {
  return runNode(dist('workers/cli/main.js'), args, env, timeoutMs);
}
