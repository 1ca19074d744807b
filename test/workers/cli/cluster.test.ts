/**
 * `streamheal start` as a real process (control + 3 gateways on 127.0.0.1:189xx / 199xx), and the
 * CLI against it: status, publish, tail (also across a gateway failure), and a clean stop that
 * leaves no process and no cluster file. A SIGKILLed control process leaves no orphans either.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClusterStatus } from '../../../workers/control/ControlServer.js';
import { runCli, startClusterProcess, type ClusterProcess } from '../../support/cluster.js';
import {
  dist,
  eventually,
  isAlive,
  killPids,
  spawnNode,
  waitUntilGone,
  type Spawned,
} from '../../support/processes.js';

interface TailLine {
  channel: string;
  position: number;
  time: number;
  data: unknown;
}

function tailLines(tail: Spawned): TailLine[] {
  return tail
    .stdout()
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as TailLine);
}

async function status(cluster: ClusterProcess): Promise<ClusterStatus> {
  const result = await cluster.cli(['status', '--json']);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as ClusterStatus;
}

describe('streamheal CLI with a local cluster', () => {
  const CONTROL_PORT = 18970;
  const PORT_BASE = 18971;
  let cluster: ClusterProcess;
  const pids = new Set<number>();
  const tails: Spawned[] = [];

  const startTail = async (args: string[]) => {
    const tail = spawnNode(dist('workers/cli/main.js'), ['tail', ...args], cluster.env);
    tails.push(tail);
    await tail.waitFor(/tail: subscribed to \S+ after position \d+/, 10_000);
    return tail;
  };

  beforeAll(async () => {
    cluster = await startClusterProcess({ controlPort: CONTROL_PORT, portBase: PORT_BASE });
    pids.add(cluster.pid);
    for (const pid of cluster.gatewayPids()) pids.add(pid);
  });

  afterAll(async () => {
    for (const tail of tails) tail.proc.kill('SIGKILL');
    killPids([...pids, ...tails.map((t) => t.pid)]);
    cluster?.dispose();
  });

  it('start prints every endpoint and the publish key, and writes the cluster file', () => {
    // Assess
    const out = cluster.stdout();
    for (let i = 0; i < 3; i++) {
      const port = PORT_BASE + i;
      expect(out).toContain(`gateway-${i + 1}`);
      expect(out).toContain(`ws://127.0.0.1:${port}/v1/ws`);
      expect(out).toContain(`http://127.0.0.1:${port}/v1/sse`);
      expect(out).toContain(`POST http://127.0.0.1:${port}/v1/publish`);
      expect(out).toContain(`http://127.0.0.1:${port}/metrics`);
    }
    expect(out).toContain(`http://127.0.0.1:${CONTROL_PORT}/v1/status`);
    expect(cluster.publishKey.length).toBeGreaterThanOrEqual(32);
    expect(statSync(cluster.clusterFile).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(cluster.clusterFile, 'utf8'))).toMatchObject({
      version: 1,
      pid: cluster.pid,
      control: `http://127.0.0.1:${CONTROL_PORT}`,
      gateways: cluster.gatewayUrls.map((url, i) => ({ name: `gateway-${i + 1}`, url })),
      publishKey: cluster.publishKey,
    });
  });

  it('status shows the 3 gateways with their pids', async () => {
    // Act
    const table = await cluster.cli(['status']);
    const json = await status(cluster);

    // Assess
    expect(table.code, table.stderr).toBe(0);
    for (let i = 1; i <= 3; i++) {
      expect(table.stdout).toMatch(
        new RegExp(
          `^gateway-${i}\\s+ready\\s+http://127\\.0\\.0\\.1:${PORT_BASE + i - 1}\\s+\\d+`,
          'm',
        ),
      );
    }
    expect(table.stdout).toMatch(
      /^NODE\s+STATE\s+URL\s+PID\s+WS\s+SSE\s+SUBSCRIPTIONS\s+CHANNELS/m,
    );
    expect(json.nodes.map((n) => n.id)).toEqual(['gateway-1', 'gateway-2', 'gateway-3']);
    expect(json.nodes.map((n) => n.pid).sort()).toEqual(cluster.gatewayPids().sort());
    expect(json.processes.map((p) => p.state)).toEqual(['ready', 'ready', 'ready']);
  });

  it('publish prints the position and tail receives the message', async () => {
    // Prepare
    const tail = await startTail(['news']);

    // Act
    const first = await cluster.cli(['publish', 'news', '{"hello":"world"}']);
    const second = await cluster.cli(['publish', 'news', 'plain text']);

    // Assess
    expect(first, first.stderr).toMatchObject({ code: 0, stdout: '1\n' });
    expect(second, second.stderr).toMatchObject({ code: 0, stdout: '2\n' });
    const lines = await eventually(
      () => tailLines(tail).length >= 2 && tailLines(tail),
      5_000,
      'two lines',
    );
    expect(lines.map(({ channel, position, data }) => ({ channel, position, data }))).toEqual([
      { channel: 'news', position: 1, data: { hello: 'world' } },
      { channel: 'news', position: 2, data: 'plain text' },
    ]);
    const table = await cluster.cli(['status']);
    expect(table.stdout).toMatch(/^news\s+2\s+2$/m);
  });

  it('tail --after replays history and resumes on another gateway when its gateway is killed', async () => {
    // Prepare
    const tail = await startTail(['news', '--after', '0']);
    const connected = await tail.waitFor(/tail: connected to (gateway-\d)/, 5_000);
    const victim = (await status(cluster)).nodes.find((n) => n.id === connected[1]);
    pids.add(victim!.pid);

    // Act
    process.kill(victim!.pid, 'SIGKILL');
    for (let n = 3; n <= 6; n++) {
      const result = await cluster.cli(['publish', 'news', String(n)]);
      expect(result, result.stderr).toMatchObject({ code: 0, stdout: `${n}\n` });
    }

    // Assess: every position exactly once, in order.
    const lines = await eventually(
      () => tailLines(tail).length >= 6 && tailLines(tail),
      10_000,
      'six lines',
    );
    expect(lines.map((line) => line.position)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(lines.slice(2).map((line) => line.data)).toEqual([3, 4, 5, 6]);
    expect(tail.stderr()).toMatch(/tail: resumed on http:\/\/127\.0\.0\.1:\d+ after position \d+/);
    // The supervisor brings the killed gateway back on its port.
    await eventually(
      async () =>
        (await status(cluster)).nodes.find((n) => n.id === connected[1] && n.pid !== victim!.pid),
      10_000,
      `${connected[1]} restarted`,
    );
    expect(cluster.stdout()).toMatch(
      new RegExp(
        `${connected[1]} exited \\(signal SIGKILL\\); restarting on port ${new URL(victim!.url).port} in \\d+ ms \\(attempt 1\\)`,
      ),
    );
  });

  it('SIGTERM to the control process stops all 4 processes and removes the cluster file', async () => {
    // Prepare
    for (const tail of tails) tail.proc.kill('SIGTERM');
    const all = [cluster.pid, ...cluster.gatewayPids()];
    expect(all).toHaveLength(4);
    expect(all.every(isAlive)).toBe(true);

    // Act
    process.kill(cluster.pid, 'SIGTERM');
    const exit = await cluster.exited;

    // Assess
    expect(exit).toEqual({ code: 0, signal: null });
    expect(await waitUntilGone(all, 2_000)).toEqual([]);
    expect(existsSync(cluster.clusterFile)).toBe(false);
    const after = await cluster.cli(['status']);
    expect(after.code).toBe(1);
    expect(after.stderr).toContain('no local cluster found: run `npm start`');
  });
});

describe('streamheal CLI without a cluster', () => {
  const env = {
    STREAMHEAL_CLUSTER_FILE: '/nonexistent/streamheal/cluster.json',
    STREAMHEAL_URL: '',
    STREAMHEAL_PUBLISH_KEY: '',
  };

  it('explains how to start one, with exit code 1', async () => {
    for (const args of [['status'], ['publish', 'news', '1'], ['tail', 'news']]) {
      const result = await runCli(args, env);
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(
        'streamheal: no local cluster found: run `npm start` (or `streamheal start`) first or pass --url\n',
      );
    }
  });

  it('reports an unreachable control process and usage errors (exit code 2)', async () => {
    const unreachable = await runCli(['status', '--url', 'http://127.0.0.1:19999'], env);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain(
      'cannot reach the control process at http://127.0.0.1:19999: connection refused',
    );
    const usage = await runCli(['publish', 'news'], env);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('expected CHANNEL and DATA');
    const unknown = await runCli(['nope'], env);
    expect(unknown.code).toBe(2);
    const help = await runCli(['tail', '--help'], env);
    expect(help).toMatchObject({ code: 0 });
    expect(help.stdout).toMatch(/^Usage: streamheal tail CHANNEL/);
  });
});

describe('streamheal start when the control process dies', () => {
  let cluster: ClusterProcess | undefined;
  const pids = new Set<number>();

  afterAll(() => {
    killPids(pids);
    cluster?.dispose();
  });

  it('leaves no orphan gateway: each stops itself when its supervisor is SIGKILLed', async () => {
    // Prepare
    cluster = await startClusterProcess({ controlPort: 19970, portBase: 19971 });
    const gateways = cluster.gatewayPids();
    for (const pid of [cluster.pid, ...gateways]) pids.add(pid);
    expect(gateways).toHaveLength(3);

    // Act
    process.kill(cluster.pid, 'SIGKILL');
    await cluster.exited;

    // Assess
    expect(await waitUntilGone(gateways, 6_000)).toEqual([]);
    const stale = await cluster.cli(['status']);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain(`was left by control process ${cluster.pid}, which is gone`);
  });
});
