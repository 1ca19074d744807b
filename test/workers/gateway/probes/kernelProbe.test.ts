/**
 * Kernel probes against real sockets on loopback: TCP_INFO, TCP_USER_TIMEOUT, the sock_diag
 * sweep, flash cuts of SIGKILLed client processes, and a path cut silently by an nftables drop
 * rule (needs `nft` and root: CI installs nftables; the test fails, never skips, without it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { dropInputTo, removeNftRules, requireNft } from '../../../support/nft.js';
import {
  KernelSweeper,
  TCP_STATES,
  TcpState,
  fdOf,
  inodeOf,
  kernelProbes,
  loadKernelProbes,
  tcpStateName,
  type ConnectionDelta,
  type FlashCutEvent,
  type KernelProbes,
} from '../../../../workers/gateway/probes/kernelProbe.js';

// ---------------------------------------------------------------------------------------------
// Everything a test opens is recorded here and closed in afterEach.

const servers: Server[] = [];
const sockets: Socket[] = [];
const children: ChildProcess[] = [];
const sweepers: KernelSweeper[] = [];
const tempDirs: string[] = [];

afterEach(async () => {
  for (const s of sweepers.splice(0)) s.close();
  removeNftRules();
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(
    servers.splice(0).map((s) => new Promise((resolve) => s.close(() => resolve(undefined)))),
  );
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function requireProbes(): KernelProbes {
  if (!kernelProbes.available)
    throw new Error(`kernel probes unavailable on Linux: ${kernelProbes.reason}`);
  return kernelProbes;
}

interface TestServer {
  server: Server;
  port: number;
  /** Server-side sockets, in accept order. */
  accepted: Socket[];
  /** Resolves with the server-side socket whose peer port is `remotePort`. */
  peerOf(remotePort: number): Promise<Socket>;
}

async function listen(
  host = '127.0.0.1',
  options: { pauseOnConnect?: boolean } = {},
): Promise<TestServer> {
  const accepted: Socket[] = [];
  const server = createServer({ pauseOnConnect: options.pauseOnConnect ?? false }, (socket) => {
    socket.on('error', () => {});
    accepted.push(socket);
    sockets.push(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as { port: number }).port;
  return {
    server,
    port,
    accepted,
    async peerOf(remotePort) {
      for (let i = 0; i < 200; i++) {
        const found = accepted.find((s) => s.remotePort === remotePort);
        if (found) return found;
        await sleep(10);
      }
      throw new Error(`no accepted socket from port ${remotePort}`);
    },
  };
}

async function dial(port: number, host = '127.0.0.1'): Promise<Socket> {
  const socket = connect(port, host);
  sockets.push(socket);
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

/** A connected pair: client and the server's socket for it. */
async function pair(ts: TestServer, host = '127.0.0.1'): Promise<[Socket, Socket]> {
  const client = await dial(ts.port, host);
  return [client, await ts.peerOf(client.localPort!)];
}

/** Exchanges a few bytes so the kernel has an RTT sample on both sides. */
async function pingPong(client: Socket, server: Socket): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const got = new Promise((resolve) => server.once('data', resolve));
    client.write('ping');
    await got;
    const back = new Promise((resolve) => client.once('data', resolve));
    server.write('pong');
    await back;
  }
}

/** Waits until both ends have everything acknowledged (delayed ACKs included). */
async function settled(probes: KernelProbes, ...ends: Socket[]): Promise<void> {
  await until(
    () =>
      ends.every((s) => {
        const info = probes.tcpInfo(fdOf(s));
        return info && info.unacked === 0 && info.outq === 0;
      }),
    2_000,
    'every byte to be acknowledged',
  );
}

/**
 * A client in its own process: connects, stops reading (so data the server sends stays unread
 * in its receive queue), prints its local port and waits to be killed.
 */
async function clientProcess(port: number): Promise<{ child: ChildProcess; localPort: number }> {
  const script = `
    const s = require('node:net').connect(${port}, '127.0.0.1', () => {
      s.pause();
      process.stdout.write('port ' + s.localPort + '\\n');
    });
    s.on('error', () => {});
    setInterval(() => {}, 60000);
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const localPort = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /port (\d+)/.exec(out);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`client process exited (${code})`)));
  });
  return { child, localPort };
}

async function killHard(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

async function until<T>(
  check: () => T | undefined | null | false,
  timeoutMs: number,
  what: string,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

function track(options: ConstructorParameters<typeof KernelSweeper>[0]): {
  sweeper: KernelSweeper;
  cuts: Array<FlashCutEvent & { t: number }>;
  deltas: ConnectionDelta[];
  errors: Error[];
} {
  const cuts: Array<FlashCutEvent & { t: number }> = [];
  const deltas: ConnectionDelta[] = [];
  const errors: Error[] = [];
  const sweeper = new KernelSweeper({
    onFlashCut: (e) => cuts.push({ ...e, t: performance.now() }),
    onDelta: (d) => deltas.push(d),
    onError: (e) => errors.push(e),
    ...options,
  });
  sweepers.push(sweeper);
  return { sweeper, cuts, deltas, errors };
}

// ---------------------------------------------------------------------------------------------

describe('kernel probes: loading', () => {
  it('loads the addon on Linux', () => {
    expect(process.platform).toBe('linux');
    expect(kernelProbes.reason).toBeNull();
    expect(kernelProbes.available).toBe(true);
    expect(kernelProbes.path).toMatch(/streamheal_probes\.node$/);
  });

  it('names every Linux TCP state, the seed table included', () => {
    expect(tcpStateName(1)).toBe('ESTABLISHED');
    expect(tcpStateName(7)).toBe('CLOSE');
    expect(tcpStateName(6)).toBe('TIME_WAIT');
    expect(tcpStateName(8)).toBe('CLOSE_WAIT');
    expect(tcpStateName(null)).toBe('UNKNOWN');
    expect(tcpStateName(99)).toBe('UNKNOWN');
    expect(TCP_STATES.map((s) => s.value)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    expect(TCP_STATES.find((s) => s.value === 7)?.kernelName).toBe('TCP_CLOSE');
  });

  it('reports unavailable, with the reason, when the addon path is wrong, and degrades to unknown', async () => {
    const missing = loadKernelProbes('/nonexistent/build/Release/streamheal_probes.node');
    expect(missing.available).toBe(false);
    expect(missing.reason).toContain('/nonexistent/build/Release/streamheal_probes.node');
    expect(missing.tcpInfo(0)).toBeNull();
    expect(missing.setUserTimeout(0, 1000)).toBe(false);
    expect(missing.getUserTimeout(0)).toBeNull();
    expect(missing.setKeepalive(0, 1, 1, 1)).toBe(false);
    expect(missing.getKeepalive(0)).toBeNull();
    await expect(missing.sweepRaw(80)).resolves.toBeNull();
    await expect(missing.sweep(80)).resolves.toBeNull();

    const dir = mkdtempSync(join(tmpdir(), 'shprobe-'));
    tempDirs.push(dir);
    const garbage = join(dir, 'streamheal_probes.node');
    writeFileSync(garbage, 'not an ELF file');
    const broken = loadKernelProbes(garbage);
    expect(broken.available).toBe(false);
    expect(broken.reason).toMatch(/failed to load/);

    const sweeper = new KernelSweeper({ port: 80, probes: missing });
    sweepers.push(sweeper);
    expect(sweeper.available).toBe(false);
    expect(sweeper.reason).toBe(missing.reason);
    sweeper.start();
    const ts = await listen();
    const [, server] = await pair(ts);
    const slot = sweeper.register('c', server);
    await expect(sweeper.sweepOnce()).resolves.toBeNull();
    expect(sweeper.sample(slot)).toBeNull();
  });
});

describe('kernel probes: per socket', () => {
  it('reads TCP_INFO of an established connection', async () => {
    const probes = requireProbes();
    const ts = await listen();
    const [client, server] = await pair(ts);
    await pingPong(client, server);
    await settled(probes, client, server);
    for (const socket of [client, server]) {
      const fd = fdOf(socket);
      expect(fd).toBeGreaterThan(2);
      const info = probes.tcpInfo(fd)!;
      expect(info).not.toBeNull();
      expect(info.state).toBe(TcpState.ESTABLISHED);
      expect(info.rtt).toBeGreaterThan(0);
      expect(info.rttvar).toBeGreaterThan(0);
      expect(info.retransmits).toBe(0);
      expect(info.totalRetrans).toBe(0);
      expect(info.unacked).toBe(0);
      expect(info.lost).toBe(0);
      expect(info.notsentBytes).toBe(0);
      expect(info.sndCwnd).toBeGreaterThan(0);
      expect(info.sndBuf).toBeGreaterThan(0);
      expect(info.outq).toBe(0);
      expect(info.inq).toBe(0);
      expect(info.lastDataRecv).toBeLessThan(5_000);
    }
  });

  it('answers unknown for a closed socket or a bad fd', async () => {
    const probes = requireProbes();
    const ts = await listen();
    const [client] = await pair(ts);
    client.destroy();
    expect(fdOf(client)).toBe(-1);
    expect(probes.tcpInfo(-1)).toBeNull();
    expect(probes.tcpInfo(1_000_000)).toBeNull();
    expect(probes.setUserTimeout(-1, 1000)).toBe(false);
  });

  it('sets TCP_USER_TIMEOUT and the three keepalive knobs', async () => {
    const probes = requireProbes();
    const ts = await listen();
    const [, server] = await pair(ts);
    const fd = fdOf(server);
    expect(probes.getUserTimeout(fd)).toBe(0);
    expect(probes.setUserTimeout(fd, 1000)).toBe(true);
    expect(probes.getUserTimeout(fd)).toBe(1000);
    expect(probes.setKeepalive(fd, 5, 2, 3)).toBe(true);
    expect(probes.getKeepalive(fd)).toEqual({ enabled: true, idleS: 5, intervalS: 2, count: 3 });
  });
});

describe('kernel probes: sweep', () => {
  it('finds exactly the connections of the port, with their addresses and tcp_info', async () => {
    const probes = requireProbes();
    const a = await listen();
    const b = await listen();
    const pairsA = [await pair(a), await pair(a), await pair(a)];
    await pair(b);
    await pair(b);
    for (const [c, s] of pairsA) await pingPong(c, s);
    await settled(probes, ...pairsA.flat());

    const rows = (await probes.sweep(a.port))!;
    expect(rows).toHaveLength(3);
    expect(rows.map((r) => r.remotePort).sort()).toEqual(pairsA.map(([c]) => c.localPort!).sort());
    for (const row of rows) {
      const [client, server] = pairsA.find(([c]) => c.localPort === row.remotePort)!;
      expect(row).toMatchObject({
        family: 4,
        state: TcpState.ESTABLISHED,
        stateName: 'ESTABLISHED',
        localAddress: '127.0.0.1',
        localPort: a.port,
        remoteAddress: client.localAddress,
        remotePort: client.localPort,
        inode: inodeOf(server),
        hasInfo: true,
        retransmits: 0,
        totalRetrans: 0,
        unacked: 0,
      });
      expect(row.rtt).toBeGreaterThan(0);
      const info = probes.tcpInfo(fdOf(server))!;
      expect(row.sndCwnd).toBe(info.sndCwnd);
      expect(row.sndBuf).toBe(info.sndBuf);
      expect(row.outq).toBe(info.outq);
    }
    const raw = (await probes.sweepRaw(b.port))!;
    expect(raw.count).toBe(2);
    expect(raw.stride).toBe(26);
    expect(raw.data.length).toBe(52);
    expect(raw.dumpUs).toBeGreaterThan(0);
  });

  it('sees IPv6 and IPv4-mapped connections of a dual-stack listener', async () => {
    const probes = requireProbes();
    const ts = await listen('::');
    const [v4] = await pair(ts, '127.0.0.1');
    const [v6] = await pair(ts, '::1');
    const rows = (await probes.sweep(ts.port))!;
    expect(rows).toHaveLength(2);
    const r4 = rows.find((r) => r.remotePort === v4.localPort)!;
    const r6 = rows.find((r) => r.remotePort === v6.localPort)!;
    expect(r4).toMatchObject({ family: 4, remoteAddress: '127.0.0.1', localAddress: '127.0.0.1' });
    expect(r6).toMatchObject({ family: 6, remoteAddress: '::1', localAddress: '::1' });
    expect(r6.state).toBe(TcpState.ESTABLISHED);
  });

  it('matches registered sockets by remote address and port, IPv4 and IPv6', async () => {
    requireProbes();
    const ts = await listen('::');
    const [, s4] = await pair(ts, '127.0.0.1');
    const [, s6] = await pair(ts, '::1');
    const { sweeper, cuts } = track({ port: ts.port });
    const v4 = sweeper.register('v4', s4);
    const v6 = sweeper.register('v6', s6);
    const stats = (await sweeper.sweepOnce())!;
    expect(stats).toMatchObject({ mode: 'netlink', rows: 2, registered: 2, matched: 2 });
    expect(sweeper.sample(v4)).toMatchObject({ state: 1, source: 'netlink' });
    expect(sweeper.sample(v6)).toMatchObject({ state: 1, source: 'netlink' });
    expect(cuts).toEqual([]);
  });
});

describe('kernel probes: flash cuts', () => {
  it('a SIGKILLed client process: CLOSE_WAIT on the next sweep, one flash cut', async () => {
    requireProbes();
    // The server does not read (as a gateway busy elsewhere), so Node has not seen the FIN.
    const ts = await listen('127.0.0.1', { pauseOnConnect: true });
    const { child, localPort } = await clientProcess(ts.port);
    const server = await ts.peerOf(localPort);
    const { sweeper, cuts, deltas } = track({ port: ts.port });
    const slot = sweeper.register('victim', server);
    sweeper.start();
    await until(() => sweeper.sample(slot), 2_000, 'a first sample');
    expect(sweeper.sample(slot)!.state).toBe(TcpState.ESTABLISHED);

    const killedAt = performance.now();
    await killHard(child);
    await until(() => cuts.length > 0, 2_000, 'a flash cut');
    expect(cuts).toHaveLength(1);
    expect(cuts[0]).toMatchObject({
      key: 'victim',
      state: TcpState.CLOSE_WAIT,
      stateName: 'CLOSE_WAIT',
      vanished: false,
      peerEnded: false,
    });
    expect(cuts[0]!.last?.state).toBe(TcpState.ESTABLISHED);
    expect(cuts[0]!.t - killedAt).toBeLessThan(sweeper.intervalMs + 400);
    expect(deltas.some((d) => d.stateChanged && d.current.stateName === 'CLOSE_WAIT')).toBe(true);
    await sleep(sweeper.intervalMs * 2);
    expect(cuts).toHaveLength(1); // reported once
  });

  it('a SIGKILLed client with unread data (RST): gone from the dump, CLOSE by getsockopt', async () => {
    const probes = requireProbes();
    const ts = await listen('127.0.0.1', { pauseOnConnect: true });
    const { child, localPort } = await clientProcess(ts.port);
    const server = await ts.peerOf(localPort);
    server.write('unread by the client');
    await until(() => probes.tcpInfo(fdOf(server))?.outq === 0, 2_000, 'the data to be acked');
    const { sweeper, cuts } = track({ port: ts.port, intervalMs: 200 });
    const slot = sweeper.register('victim', server);
    sweeper.start();
    await until(() => sweeper.sample(slot), 2_000, 'a first sample');

    const killedAt = performance.now();
    await killHard(child);
    await until(() => cuts.length > 0, 2_000, 'a flash cut');
    expect(cuts[0]).toMatchObject({
      key: 'victim',
      state: TcpState.CLOSE,
      stateName: 'CLOSE',
      vanished: true,
    });
    expect(cuts[0]!.t - killedAt).toBeLessThan(sweeper.intervalMs + 400);
    expect(probes.tcpInfo(fdOf(server))?.state).toBe(TcpState.CLOSE);
  });

  it('no flash cut when the application saw the close first', async () => {
    requireProbes();
    const ts = await listen(); // reads, so Node sees the FIN and closes
    const { child, localPort } = await clientProcess(ts.port);
    const server = await ts.peerOf(localPort);
    const { sweeper, cuts } = track({ port: ts.port, intervalMs: 100 });
    const slot = sweeper.register('graceful', server);
    sweeper.start();
    await until(() => sweeper.sample(slot), 2_000, 'a first sample');
    const closed = new Promise((resolve) => server.once('close', resolve));
    await killHard(child);
    await closed;
    await sleep(400);
    expect(cuts).toEqual([]);
  });

  it('the per-socket getsockopt fallback sees the flash cut too (auto mode, dump refused)', async () => {
    const real = requireProbes();
    const refusing: KernelProbes = {
      ...real,
      sweepRaw: () =>
        Promise.reject(
          Object.assign(new Error('socket(NETLINK_SOCK_DIAG): EPERM'), { code: 'EPERM' }),
        ),
    };
    const ts = await listen('127.0.0.1', { pauseOnConnect: true });
    const { child, localPort } = await clientProcess(ts.port);
    const server = await ts.peerOf(localPort);
    const { sweeper, cuts, errors } = track({ port: ts.port, probes: refusing, intervalMs: 100 });
    const slot = sweeper.register('victim', server);
    sweeper.start();
    await until(() => sweeper.sample(slot), 2_000, 'a first sample');
    expect(sweeper.sample(slot)!.source).toBe('getsockopt');
    await killHard(child);
    await until(() => cuts.length > 0, 2_000, 'a flash cut');
    expect(cuts[0]).toMatchObject({ key: 'victim', state: TcpState.CLOSE_WAIT });
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]!.message).toMatch(/EPERM/);
    await until(() => sweeper.currentMode === 'getsockopt', 2_000, 'the switch to getsockopt');
  });
});

describe('kernel probes: a silently cut path (nftables)', () => {
  it('retransmits and unacked grow in the sweep; TCP_USER_TIMEOUT=1000 closes it with ETIMEDOUT', async () => {
    const probes = requireProbes();
    requireNft();
    const ts = await listen();
    const [client, server] = await pair(ts);
    await pingPong(client, server);
    await settled(probes, client, server);
    expect(probes.setUserTimeout(fdOf(server), 1000)).toBe(true);

    const { sweeper, cuts, deltas } = track({ port: ts.port, intervalMs: 100 });
    const slot = sweeper.register('cut', server);
    sweeper.start();
    await until(() => sweeper.sample(slot), 2_000, 'a first sample');
    expect(sweeper.sample(slot)).toMatchObject({ unacked: 0, totalRetrans: 0 });

    dropInputTo(client.localPort!);
    const serverError = new Promise<{ error: NodeJS.ErrnoException; t: number }>((resolve) =>
      server.once('error', (error) => resolve({ error, t: performance.now() })),
    );
    const writtenAt = performance.now();
    server.write(Buffer.alloc(1000, 1));

    await until(
      () => deltas.some((d) => d.key === 'cut' && d.current.totalRetrans > 0),
      2_000,
      'retransmits in a sweep',
    );
    const { error, t } = await serverError;
    expect(error.code).toBe('ETIMEDOUT');
    const elapsed = t - writtenAt;
    expect(elapsed).toBeGreaterThan(900);
    expect(elapsed).toBeLessThan(2_000);

    const grew = deltas.filter((d) => d.key === 'cut');
    expect(grew.some((d) => d.unackedDelta > 0)).toBe(true);
    expect(grew.some((d) => d.totalRetransDelta > 0)).toBe(true);
    expect(grew.some((d) => d.retransmitsDelta > 0 && d.current.retransmits > 0)).toBe(true);
    expect(grew.every((d) => d.current.state === TcpState.ESTABLISHED)).toBe(true);
    expect(grew.at(-1)!.current.unacked).toBeGreaterThan(0);
    expect(grew.at(-1)!.current.totalRetrans).toBeGreaterThanOrEqual(2);
    // Node closes the socket after the error: no flash cut is reported after that (one may
    // have been, if a sweep saw the kernel's CLOSE before Node read the error).
    const cutsAtError = cuts.length;
    expect(cutsAtError).toBeLessThanOrEqual(1);
    if (!server.closed) await new Promise((resolve) => server.once('close', resolve));
    await sweeper.sweepOnce();
    expect(cuts.length).toBe(cutsAtError);
  });
});
