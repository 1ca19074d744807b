/**
 * The Supervisor with real gateway processes (dist/workers/gateway/main.js, memory store) on
 * 127.0.0.1:184xx: SIGKILLed children come back on the same port after the seed backoff, the
 * exit is logged and published on the bus, and stop() leaves no process behind.
 */
import { createServer, get } from 'node:http';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BusEvent } from '../../../shared/bus/EventBus.js';
import { InProcessBus } from '../../../shared/bus/InProcessBus.js';
import { Sources } from '../../../shared/bus/events.js';
import {
  GATEWAY_PROCESS_EXITED,
  Supervisor,
  type ChildSpec,
  type SupervisorOptions,
} from '../../../workers/control/Supervisor.js';
import { dist, eventually, killPids, waitUntilGone } from '../../support/processes.js';

const PORT_BASE = 18461;

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

function gatewaySpec(name: string, port: number, readyPort = port, logLevel = 'warn'): ChildSpec {
  return {
    name,
    port: readyPort,
    script: dist('workers/gateway/main.js'),
    env: {
      STREAMHEAL_NODE_ID: name,
      STREAMHEAL_PORT: String(port),
      STREAMHEAL_STORE: 'memory',
      STREAMHEAL_PUBLISH_KEY: 'test-publish-key',
      STREAMHEAL_CLUSTER_SECRET: 'test-cluster-secret-0123456789',
      STREAMHEAL_LOG_LEVEL: logLevel,
    },
  };
}

function harness(
  children: ChildSpec[],
  options: Partial<Pick<SupervisorOptions, 'readyTimeoutMs' | 'stableMs' | 'backoff'>> = {},
) {
  const logs: LogLine[] = [];
  const output: string[] = [];
  const events: BusEvent[] = [];
  const bus = new InProcessBus();
  bus.subscribe({ source: [Sources.control] }, (event) => {
    events.push(event);
  });
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => logs.push(JSON.parse(line) as LogLine) },
  );
  const supervisor = new Supervisor({
    children,
    logger,
    bus,
    output: (line, _stream, name) => output.push(`[${name}] ${line}`),
    parentWatch: dist('workers/control/parentWatch.js'),
    ...options,
  });
  const seen = new Set<number>();
  const remember = () => {
    for (const pid of Object.values(supervisor.pids())) seen.add(pid);
  };
  return { supervisor, logs, output, events, bus, seen, remember };
}

function readyStatus(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = get(`http://127.0.0.1:${port}/readyz`, { agent: false, timeout: 1_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

async function newPid(supervisor: Supervisor, name: string, old: number): Promise<number> {
  return eventually(
    () => {
      const pid = supervisor.pids()[name];
      return pid !== undefined && pid !== old && pid;
    },
    10_000,
    `${name} respawned`,
  );
}

describe('Class: Supervisor', () => {
  describe('Method: start / restart on exit', () => {
    const h = harness([
      gatewaySpec('gateway-1', PORT_BASE),
      gatewaySpec('gateway-2', PORT_BASE + 1),
    ]);

    beforeAll(async () => {
      await h.supervisor.start();
      h.remember();
    });

    afterAll(async () => {
      h.remember();
      await h.supervisor.stop();
      killPids(h.seen);
      await h.bus.close();
    });

    it('starts every child and waits until each answers /readyz', async () => {
      // Assess
      const pids = h.supervisor.pids();
      expect(Object.keys(pids).sort()).toEqual(['gateway-1', 'gateway-2']);
      expect(await readyStatus(PORT_BASE)).toBe(200);
      expect(await readyStatus(PORT_BASE + 1)).toBe(200);
      expect(h.supervisor.status().map((c) => c.state)).toEqual(['ready', 'ready']);
    });

    it('restarts a SIGKILLed child on the same port after the seed backoff and logs it', async () => {
      // Prepare
      const before = h.supervisor.pids();
      const victim = before['gateway-2']!;
      const killedAt = Date.now();

      // Act
      process.kill(victim, 'SIGKILL');
      const replacement = await newPid(h.supervisor, 'gateway-2', victim);
      h.seen.add(replacement);
      await h.supervisor.waitReady('gateway-2', 15_000);

      // Assess: seedBackoff(0) is 500 ms * (1 + U[0, 0.3)).
      expect(Date.now() - killedAt).toBeGreaterThanOrEqual(500);
      expect(await readyStatus(PORT_BASE + 1)).toBe(200);
      expect(h.supervisor.pids()['gateway-1']).toBe(before['gateway-1']);
      const exit = h.logs.find((line) => line.msg.startsWith('gateway-2 exited'));
      expect(exit?.msg).toMatch(
        new RegExp(
          `^gateway-2 exited \\(signal SIGKILL\\); restarting on port ${PORT_BASE + 1} in \\d+ ms \\(attempt 1\\)$`,
        ),
      );
      expect(exit?.delayMs).toBeGreaterThanOrEqual(500);
      expect(exit?.delayMs).toBeLessThanOrEqual(650);
      await eventually(() => h.events.length > 0, 2_000, 'exit event');
      expect(h.events[0]).toMatchObject({
        source: Sources.control,
        'detail-type': GATEWAY_PROCESS_EXITED,
        resources: ['gateway-2'],
        detail: {
          node: 'gateway-2',
          pid: victim,
          port: PORT_BASE + 1,
          signal: 'SIGKILL',
          attempt: 1,
        },
      });
      expect(h.supervisor.status().find((c) => c.name === 'gateway-2')).toMatchObject({
        state: 'ready',
        pid: replacement,
        restarts: 1,
      });
    });

    it('backs off further when a child fails again before it was stable', async () => {
      // Prepare
      const victim = h.supervisor.pids()['gateway-2']!;

      // Act
      process.kill(victim, 'SIGKILL');
      h.seen.add(await newPid(h.supervisor, 'gateway-2', victim));
      await h.supervisor.waitReady('gateway-2', 15_000);

      // Assess: seedBackoff(1) is 1000 ms * (1 + U[0, 0.3)).
      const exits = h.logs.filter((line) => line.msg.startsWith('gateway-2 exited'));
      expect(exits).toHaveLength(2);
      expect(exits[1]?.msg).toMatch(/\(attempt 2\)$/);
      expect(exits[1]?.delayMs).toBeGreaterThanOrEqual(1_000);
      expect(exits[1]?.delayMs).toBeLessThanOrEqual(1_300);
    });

    it('stop() SIGINTs every child and leaves no process', async () => {
      // Prepare
      h.remember();
      const pids = [...h.seen];

      // Act
      await h.supervisor.stop();

      // Assess
      expect(await waitUntilGone(pids, 1_000)).toEqual([]);
      expect(h.supervisor.pids()).toEqual({});
      expect(h.supervisor.status().map((c) => c.state)).toEqual(['stopped', 'stopped']);
      expect(h.logs.filter((line) => / stopped \(code 0\)$/.test(line.msg))).toHaveLength(2);
      expect(await readyStatus(PORT_BASE)).toBe(0);
      expect(await readyStatus(PORT_BASE + 1)).toBe(0);
      // Expected exits are not node losses.
      expect(h.events).toHaveLength(2);
    });
  });

  describe('Method: start with stableMs', () => {
    const h = harness([gatewaySpec('gateway-1', PORT_BASE + 2)], { stableMs: 300 });

    afterAll(async () => {
      h.remember();
      await h.supervisor.stop();
      killPids(h.seen);
      await h.bus.close();
    });

    it('starts counting attempts again once a child has stayed up for stableMs', async () => {
      // Prepare
      await h.supervisor.start();
      h.remember();

      // Act: two failures, each after more than stableMs of uptime.
      for (let i = 0; i < 2; i++) {
        const victim = h.supervisor.pids()['gateway-1']!;
        await new Promise((resolve) => setTimeout(resolve, 400));
        process.kill(victim, 'SIGKILL');
        h.seen.add(await newPid(h.supervisor, 'gateway-1', victim));
        await h.supervisor.waitReady('gateway-1', 15_000);
      }

      // Assess
      const exits = h.logs.filter((line) => line.msg.startsWith('gateway-1 exited'));
      expect(exits.map((line) => line.attempt)).toEqual([1, 1]);
    });
  });

  describe('Method: start with a child that never gets ready', () => {
    // The gateway listens on one port while readiness is checked on another.
    const h = harness([gatewaySpec('gateway-1', PORT_BASE + 3, PORT_BASE + 4, 'info')], {
      readyTimeoutMs: 1_500,
    });

    afterAll(async () => {
      await h.supervisor.stop();
      killPids(h.seen);
      await h.bus.close();
    });

    it('rejects with the child, the port and its last output, and stop() leaves no process', async () => {
      // Act
      const started = h.supervisor.start();
      const pid = await eventually(() => h.supervisor.pids()['gateway-1'], 5_000, 'spawned');
      h.seen.add(pid);

      // Assess
      const error = await started.then(
        () => undefined,
        (reason: unknown) => reason as Error,
      );
      expect(error?.message).toMatch(
        new RegExp(
          `^gateway-1 was not ready on port ${PORT_BASE + 4} within 1500 ms; last output:\n[^]*gateway listening`,
        ),
      );
      expect(
        h.output.some(
          (line) => line.startsWith('[gateway-1] ') && line.includes('gateway listening'),
        ),
      ).toBe(true);
      h.remember();
      await h.supervisor.stop();
      expect(await waitUntilGone([...h.seen], 1_000)).toEqual([]);
    });
  });

  describe('Method: start with a port taken by another process', () => {
    const h = harness([gatewaySpec('gateway-1', PORT_BASE + 5)]);
    const squatter = createServer();

    beforeAll(
      () => new Promise<void>((resolve) => squatter.listen(PORT_BASE + 5, '127.0.0.1', resolve)),
    );

    afterAll(async () => {
      await h.supervisor.stop();
      killPids(h.seen);
      await h.bus.close();
      await new Promise((resolve) => squatter.close(resolve));
    });

    it('refuses to start instead of taking the other process for its child', async () => {
      // Act & Assess
      await expect(h.supervisor.start()).rejects.toThrow(
        `ports already in use by another process: 127.0.0.1:${PORT_BASE + 5} (gateway-1)`,
      );
      expect(h.supervisor.pids()).toEqual({});
    });
  });

  describe('Method: restart onto a port another process took meanwhile', () => {
    // A long first delay leaves time to take the port; the retries after it are short.
    const h = harness([gatewaySpec('gateway-1', PORT_BASE + 6)], {
      backoff: (attempt) => (attempt === 0 ? 1_000 : 200),
    });
    const squatter = createServer();

    afterAll(async () => {
      h.remember();
      await h.supervisor.stop();
      killPids(h.seen);
      await h.bus.close();
      if (squatter.listening) await new Promise((resolve) => squatter.close(resolve));
    });

    it('waits with backoff until the port is free again', async () => {
      // Prepare
      await h.supervisor.start();
      const victim = h.supervisor.pids()['gateway-1']!;
      h.seen.add(victim);

      // Act: the port is taken while the child is down, then released.
      process.kill(victim, 'SIGKILL');
      await eventually(() => h.supervisor.status()[0]?.state === 'restarting', 5_000, 'restarting');
      await new Promise<void>((resolve) => squatter.listen(PORT_BASE + 6, '127.0.0.1', resolve));
      await eventually(
        () =>
          h.logs.some((line) => line.msg.startsWith(`gateway-1: port ${PORT_BASE + 6} is in use`)),
        5_000,
        'port conflict logged',
      );
      await new Promise((resolve) => squatter.close(resolve));
      h.seen.add(await newPid(h.supervisor, 'gateway-1', victim));
      await h.supervisor.waitReady('gateway-1', 15_000);

      // Assess
      const conflict = h.logs.find((line) => line.msg.includes('is in use by another process'));
      expect(conflict?.msg).toMatch(
        new RegExp(
          `^gateway-1: port ${PORT_BASE + 6} is in use by another process; retrying in 200 ms \\(attempt \\d+\\)$`,
        ),
      );
      expect(await readyStatus(PORT_BASE + 6)).toBe(200);
    });
  });
});
