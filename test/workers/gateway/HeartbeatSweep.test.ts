/**
 * The gateway's side of the heartbeat (seed 3.1) over real loopback sockets: it answers pings,
 * pings every client, resends on L1, declares L2 and drops the connection, refuses binary
 * garbage; and a real client process frozen with SIGSTOP (its kernel still
 * acknowledges TCP) is declared dead within the documented bound.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_HEARTBEAT,
  decodeHeartbeat,
  encodeHeartbeat,
  heartbeatClock,
  heartbeatDetectionBoundMs,
  pongFor,
} from '../../../shared/protocol/heartbeat.js';
import type { Gateway } from '../../../workers/gateway/Gateway.js';
import {
  DEFAULT_GATEWAY_HEARTBEAT,
  type SessionDegradedInfo,
} from '../../../workers/gateway/HeartbeatSweep.js';
import { dist, eventually, isAlive, killPids } from '../../support/processes.js';
import { Cluster, publish } from './harness.js';

type Frame = Record<string, unknown> & { type: string };

/** A raw WebSocket client that records text frames and heartbeats, and may answer pings. */
class HeartbeatClient {
  readonly frames: Frame[] = [];
  /** Pings from the gateway: arrival time (heartbeatClock) and timestamp. */
  readonly pings: { at: number; timestampMs: number }[] = [];
  readonly pongs: { at: number; timestampMs: number }[] = [];
  answering = true;
  closeCode?: number;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary) {
        this.frames.push(JSON.parse(data.toString('utf8')) as Frame);
        return;
      }
      const frame = decodeHeartbeat(data);
      if (!frame) throw new Error(`the gateway sent binary garbage: ${data.toString('hex')}`);
      const entry = { at: heartbeatClock(), timestampMs: frame.timestampMs };
      if (frame.type === 'ping') {
        this.pings.push(entry);
        if (this.answering) ws.send(pongFor(data));
      } else {
        this.pongs.push(entry);
      }
    });
    ws.on('close', (code) => (this.closeCode = code));
  }

  static async connect(gateway: Gateway, answering = true): Promise<HeartbeatClient> {
    const ws = new WebSocket(`${gateway.url.replace('http', 'ws')}/v1/ws`);
    const client = new HeartbeatClient(ws);
    client.answering = answering;
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    await client.next((f) => f.type === 'welcome');
    return client;
  }

  get session(): string {
    return this.frames.find((f) => f.type === 'welcome')!.session as string;
  }

  async next(predicate: (frame: Frame) => boolean, timeoutMs = 3_000): Promise<Frame> {
    return eventually(() => this.frames.find(predicate), timeoutMs, 'a matching frame');
  }

  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  messages(channel: string): number[] {
    return this.frames
      .filter((f) => f.type === 'message' && f.channel === channel)
      .map((f) => f.position as number);
  }
}

const metric = (text: string, name: string): number => {
  const match = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm'));
  return match ? Number(match[1]) : Number.NaN;
};

describe('gateway heartbeat', () => {
  let cluster: Cluster;
  const clients: HeartbeatClient[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) client.ws.terminate();
    await cluster.close();
  });

  async function client(gateway: Gateway, answering = true): Promise<HeartbeatClient> {
    const c = await HeartbeatClient.connect(gateway, answering);
    clients.push(c);
    return c;
  }

  it("answers a client's ping with a pong echoing its timestamp, with or without its own pings", async () => {
    cluster = new Cluster();
    for (const gateway of [await cluster.gateway(), await cluster.gateway({ heartbeat: true })]) {
      const c = await client(gateway);
      c.ws.send(encodeHeartbeat('ping', 1_718_000_000_000));
      c.ws.send(encodeHeartbeat('ping', 7));
      await eventually(() => c.pongs.length === 2, 2_000, 'two pongs');
      expect(c.pongs.map((p) => p.timestampMs)).toEqual([1_718_000_000_000, 7]);
      expect(c.frames.filter((f) => f.type === 'error')).toEqual([]);
      const text = await (await fetch(`${gateway.url}/metrics`)).text();
      expect(metric(text, 'streamheal_heartbeat_client_pings_total')).toBe(2);
    }
  });

  it('pings every client every interval and measures the RTT from the pongs', async () => {
    cluster = new Cluster();
    // sweepMs 100: one timer ticking every 20 ms over five lanes of sessions.
    const gateway = await cluster.gateway({
      heartbeat: { intervalMs: 200, timeoutMs: 100, sweepMs: 100 },
    });
    const all = await Promise.all(Array.from({ length: 10 }, () => client(gateway)));
    await eventually(() => all.every((c) => c.pings.length >= 5), 3_000, 'five pings each');
    for (const c of all) {
      const gaps = c.pings.slice(1).map((p, i) => p.timestampMs - c.pings[i]!.timestampMs);
      // Answered, so one ping per interval after the previous one, at most one sweep late;
      // never a probe (the pongs come back within the probe time).
      for (const gap of gaps) {
        expect(gap).toBeGreaterThanOrEqual(200);
        expect(gap).toBeLessThan(200 + 100 + 30);
      }
      // The timestamp is the gateway's heartbeat clock at the sweep that sent it.
      expect(c.pings.at(-1)!.at - c.pings.at(-1)!.timestampMs).toBeLessThan(50);
    }
    const sessions = gateway.heartbeatSweep!.sessionHeartbeats();
    expect(sessions.map((s) => s.session).sort()).toEqual(all.map((c) => c.session).sort());
    for (const s of sessions) {
      expect(s.samples).toBeGreaterThanOrEqual(4);
      expect(s.misses).toBe(0);
      expect(s.srttMs).toBeGreaterThanOrEqual(0);
      expect(s.srttMs).toBeLessThan(50);
      expect(s.rttStdDevMs).toBeGreaterThanOrEqual(0);
      expect(s.phi).toBeLessThan(DEFAULT_GATEWAY_HEARTBEAT.phiThreshold);
    }
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metric(text, 'streamheal_heartbeat_pings_sent_total')).toBeGreaterThanOrEqual(50);
    expect(metric(text, 'streamheal_heartbeat_rtt_seconds_count')).toBeGreaterThanOrEqual(40);
    expect(metric(text, 'streamheal_heartbeat_timeouts_total')).toBe(0);
    expect(metric(text, 'streamheal_heartbeat_degraded_total')).toBe(0);
    expect(metric(text, 'streamheal_heartbeat_phi_suspect_sessions')).toBe(0);
    expect(text).toContain('# TYPE streamheal_heartbeat_sweep_duration_seconds histogram');
  });

  it('L1 sends again after a timeout with no ping in flight; L2 declares the session degraded and drops it', async () => {
    cluster = new Cluster();
    const degraded: { at: number; info: SessionDegradedInfo }[] = [];
    // Probes slower than the timeout: each timeout finds no ping in flight and sends one.
    const heartbeat = { intervalMs: 300, probeMs: 200, timeoutMs: 150, misses: 3, sweepMs: 10 };
    const gateway = await cluster.gateway({
      heartbeat,
      onSessionDegraded: (info) => degraded.push({ at: heartbeatClock(), info }),
    });
    const quiet = await client(gateway);
    const healthy = await client(gateway);
    await eventually(() => quiet.pings.length >= 2, 2_000, 'answered pings');
    quiet.answering = false;
    const silentFrom = heartbeatClock();
    const before = quiet.pings.length;
    await eventually(() => quiet.closeCode !== undefined, 3_000, 'the quiet client dropped');
    expect(quiet.closeCode).toBe(1006); // terminated, no closing handshake
    // The interval's ping; its timeout (nothing else in flight) sends one at once, and so
    // does that one's; the third timeout is L2. Three pings unanswered in all.
    const unanswered = quiet.pings.slice(before);
    expect(unanswered).toHaveLength(3);
    expect(unanswered[1]!.timestampMs - unanswered[0]!.timestampMs).toBeGreaterThanOrEqual(150);
    expect(unanswered[1]!.timestampMs - unanswered[0]!.timestampMs).toBeLessThan(150 + 50);
    expect(unanswered[2]!.timestampMs - unanswered[1]!.timestampMs).toBeGreaterThanOrEqual(150);
    expect(degraded).toHaveLength(1);
    const { at, info } = degraded[0]!;
    expect(info).toMatchObject({ node: 'gateway-1', session: quiet.session, misses: 3 });
    expect(info.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(info.silentMs).toBeGreaterThanOrEqual(3 * 150);
    // Dead when the third times out: three timeouts after the first.
    expect(at - unanswered[0]!.timestampMs).toBeGreaterThanOrEqual(3 * 150);
    expect(at - silentFrom).toBeLessThanOrEqual(heartbeatDetectionBoundMs(heartbeat, 10) + 50);
    // The other client never noticed.
    expect(healthy.closeCode).toBeUndefined();
    expect(gateway.heartbeatSweep!.sessionHeartbeats().map((s) => s.session)).toEqual([
      healthy.session,
    ]);
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metric(text, 'streamheal_heartbeat_timeouts_total')).toBe(2);
    expect(metric(text, 'streamheal_heartbeat_degraded_total')).toBe(1);
    expect(metric(text, 'streamheal_connections')).toBe(1);
  });

  it('refuses binary frames that are not heartbeats with bad_frame and keeps serving everyone', async () => {
    cluster = new Cluster();
    const gateway = await cluster.gateway({
      heartbeat: { intervalMs: 200, timeoutMs: 100, sweepMs: 20 },
    });
    const noisy = await client(gateway);
    const bystander = await client(gateway);
    for (const c of [noisy, bystander]) c.send({ type: 'subscribe', id: 1, channel: 'news' });
    await noisy.next((f) => f.type === 'subscribed');
    await bystander.next((f) => f.type === 'subscribed');
    const ping = encodeHeartbeat('ping', 5);
    const withByte = (index: number, value: number) => {
      const copy = Buffer.from(ping);
      copy[index] = value;
      return copy;
    };
    const garbage = [
      Buffer.from([1, 2, 3]),
      Buffer.alloc(0),
      withByte(0, 0x01), // flag
      withByte(2, 0x0a), // length field
      withByte(3, 0x03), // unknown type
      withByte(4, 0xff), // timestamp beyond 2^53
      Buffer.concat([ping, Buffer.from([0])]), // one byte too many
      ping.subarray(0, 11),
      Buffer.from('{"type":"subscribe","channel":"x"}'), // JSON, but binary
      Buffer.alloc(1_000, 0xab),
    ];
    for (const frame of garbage) noisy.ws.send(frame, { binary: true });
    noisy.ws.send(encodeHeartbeat('ping', 6));
    await eventually(() => noisy.pongs.length === 1, 2_000, 'the pong after the garbage');
    const errors = await eventually(
      () => {
        const found = noisy.frames.filter((f) => f.type === 'error');
        return found.length === garbage.length && found;
      },
      2_000,
      'one error per garbage frame',
    );
    for (const error of errors) {
      expect(error).toEqual({
        type: 'error',
        code: 'bad_frame',
        message: 'binary frames are not accepted',
      });
    }
    expect(noisy.pongs[0]!.timestampMs).toBe(6);
    for (let i = 0; i < 5; i++) await publish(gateway, { channel: 'news', data: i });
    await eventually(
      () => noisy.messages('news').length === 5 && bystander.messages('news').length === 5,
      2_000,
      'five messages each',
    );
    expect(bystander.frames.filter((f) => f.type === 'error')).toEqual([]);
    expect(noisy.closeCode).toBeUndefined();
    expect(bystander.closeCode).toBeUndefined();
    const pingsBefore = bystander.pings.length;
    await eventually(() => bystander.pings.length > pingsBefore, 1_000, 'pings go on');
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(text).toMatch(/stream_push_errors_total\{reason="bad_frame",node="gateway-1"\} 10/);
  });

  describe('a client process frozen with SIGSTOP', () => {
    let child: ChildProcess | undefined;
    afterEach(() => {
      const pid = child?.pid;
      child = undefined;
      if (pid === undefined) return;
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone
      }
      killPids([pid]);
    });

    function spawnClient(gateway: Gateway): Promise<{ pid: number; session: string }> {
      const proc = spawn(
        process.execPath,
        [
          dist('test/support/pingingClient.js'),
          `${gateway.url.replace('http', 'ws')}/v1/ws`,
          'frozen',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child = proc;
      let out = '';
      proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
      proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
      return eventually(
        () => {
          const session = out.match(/session (\S+)/)?.[1];
          return out.includes('subscribed') && session !== undefined && { pid: proc.pid!, session };
        },
        10_000,
        `the client process subscribed (output: ${out})`,
      );
    }

    it('is declared dead through the heartbeat within the documented bound, others unaffected', async () => {
      cluster = new Cluster();
      const degraded: { at: number; info: SessionDegradedInfo }[] = [];
      // The defaults the gateway process runs with: 500 / 125 / 500 / 3, sweep 50 ms.
      const gateway = await cluster.gateway({
        heartbeat: true,
        onSessionDegraded: (info) => degraded.push({ at: performance.now(), info }),
      });
      const bound = heartbeatDetectionBoundMs(DEFAULT_HEARTBEAT, DEFAULT_GATEWAY_HEARTBEAT.sweepMs);
      expect(bound).toBe(1_450);
      const neighbour = await client(gateway);
      neighbour.send({ type: 'subscribe', channel: 'frozen' });
      await neighbour.next((f) => f.type === 'subscribed');
      const frozen = await spawnClient(gateway);
      // Let a few pings be answered so the phi detector learns the rhythm.
      await eventually(
        () =>
          (gateway.heartbeatSweep!.sessionHeartbeats().find((s) => s.session === frozen.session)
            ?.samples ?? 0) >= 3,
        10_000,
        'three answered pings',
      );
      let suspectedAt: number | undefined;
      const watchPhi = setInterval(async () => {
        const text = await (await fetch(`${gateway.url}/metrics`)).text();
        if (
          suspectedAt === undefined &&
          metric(text, 'streamheal_heartbeat_phi_suspect_sessions') >= 1
        )
          suspectedAt = performance.now();
      }, 20);

      const stoppedAt = performance.now();
      process.kill(frozen.pid, 'SIGSTOP');
      for (let i = 0; i < 20; i++) {
        await publish(gateway, { channel: 'frozen', data: i });
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await eventually(() => degraded.length === 1, 5_000, 'the frozen client declared dead');
      clearInterval(watchPhi);
      const detectedMs = degraded[0]!.at - stoppedAt;
      const phiMs = suspectedAt === undefined ? undefined : suspectedAt - stoppedAt;
      console.log(
        `frozen client: declared dead ${detectedMs.toFixed(0)} ms after SIGSTOP (bound ${bound} ms), ` +
          `phi >= 8 after ${phiMs?.toFixed(0)} ms; ${JSON.stringify(degraded[0]!.info)}`,
      );
      expect(degraded[0]!.info).toMatchObject({ session: frozen.session, misses: 3 });
      expect(detectedMs).toBeLessThanOrEqual(bound);
      // The third unanswered ping leaves two probes after the first and waits its timeout.
      expect(detectedMs).toBeGreaterThanOrEqual(2 * 125 + 500 - 50);
      // Beside the fixed tiers, the phi-accrual level crossed its threshold first.
      expect(phiMs).toBeDefined();
      expect(phiMs!).toBeLessThan(detectedMs);
      // Still frozen, so not gone by itself: the gateway dropped it.
      expect(isAlive(frozen.pid)).toBe(true);
      await eventually(
        async () =>
          metric(await (await fetch(`${gateway.url}/metrics`)).text(), 'streamheal_connections') ===
          1,
        2_000,
        'one connection left',
      );
      await eventually(() => neighbour.messages('frozen').length === 20, 2_000, 'all 20 messages');
      expect(neighbour.closeCode).toBeUndefined();
      expect(gateway.heartbeatSweep!.sessionHeartbeats().map((s) => s.session)).toEqual([
        neighbour.session,
      ]);
    }, 30_000);
  });
});
