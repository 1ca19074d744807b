/**
 * Real etcd for tests: one member or a 3-member cluster on 127.0.0.1, each member with its own
 * free client and peer ports and a temp data dir. Members are killed, restarted and stopped by
 * pid, never by name. Raft timings are short (heartbeat 50 ms, election 500 ms) so a leader
 * change takes well under a second; leases then have etcd's minimum TTL of 1 s.
 *
 * etcd's output goes to a log file beside the data dir (a pipe nobody reads would block it);
 * `logTail()` shows the end of it when a start fails.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isAlive, killPids, waitUntilGone } from './processes.js';

/** Debian's etcd-server installs /usr/bin/etcd; STREAMHEAL_ETCD_BIN points elsewhere. */
export const ETCD_BINARY =
  process.env.STREAMHEAL_ETCD_BIN ?? (existsSync('/usr/bin/etcd') ? '/usr/bin/etcd' : 'etcd');

export interface EtcdClusterOptions {
  /** 1 or 3 (any odd number works). */
  size?: number;
  heartbeatMs?: number;
  electionMs?: number;
  /** Milliseconds to wait for every member to report healthy. */
  startTimeoutMs?: number;
}

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** Pid of the running process; undefined while the member is down. */
  pid: number | undefined;
}

interface MemberStatus {
  memberId: string;
  leaderId: string;
  revision: number;
}

export class EtcdCluster {
  private constructor(
    readonly members: EtcdMember[],
    private readonly root: string,
    private readonly flags: (member: EtcdMember) => string[],
  ) {}

  /** Client URLs of every member, for `EtcdStore.connect({ endpoints })`. */
  get endpoints(): string[] {
    return this.members.map((member) => member.clientUrl);
  }

  static async start(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const size = options.size ?? 1;
    const heartbeatMs = options.heartbeatMs ?? 50;
    const electionMs = options.electionMs ?? 500;
    const root = mkdtempSync(join(tmpdir(), 'streamheal-etcd-'));
    const token = `streamheal-test-${process.pid}-${Date.now()}`;
    const members: EtcdMember[] = [];
    for (let i = 0; i < size; i++) {
      const [clientPort, peerPort] = [await freePort(), await freePort()];
      const name = `m${i}`;
      members.push({
        name,
        clientUrl: `http://127.0.0.1:${clientPort}`,
        peerUrl: `http://127.0.0.1:${peerPort}`,
        dataDir: join(root, name),
        logFile: join(root, `${name}.log`),
        pid: undefined,
      });
    }
    const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
    const flags = (member: EtcdMember) => [
      `--name=${member.name}`,
      `--data-dir=${member.dataDir}`,
      `--listen-client-urls=${member.clientUrl}`,
      `--advertise-client-urls=${member.clientUrl}`,
      `--listen-peer-urls=${member.peerUrl}`,
      `--initial-advertise-peer-urls=${member.peerUrl}`,
      `--initial-cluster=${initialCluster}`,
      `--initial-cluster-token=${token}`,
      '--initial-cluster-state=new',
      `--heartbeat-interval=${heartbeatMs}`,
      `--election-timeout=${electionMs}`,
      '--logger=zap',
      '--log-level=warn',
    ];
    const cluster = new EtcdCluster(members, root, flags);
    try {
      for (const member of members) cluster.spawn(member);
      await cluster.waitHealthy(options.startTimeoutMs ?? 20_000);
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  /** SIGKILL one member and wait until its process is gone. */
  async kill(member: EtcdMember): Promise<void> {
    const pid = member.pid;
    if (pid === undefined) return;
    killPids([pid]);
    const alive = await waitUntilGone([pid], 5_000);
    if (alive.length > 0) throw new Error(`etcd ${member.name} (pid ${pid}) did not die`);
    member.pid = undefined;
  }

  /** Starts a killed member again on the same ports and data dir; waits until it is healthy. */
  async restart(member: EtcdMember, timeoutMs = 20_000): Promise<void> {
    if (member.pid !== undefined && isAlive(member.pid)) return;
    this.spawn(member);
    await this.waitMemberHealthy(member, timeoutMs);
  }

  /** The member that is leader as seen by a majority, waiting for an election if needed. */
  async leader(timeoutMs = 10_000): Promise<EtcdMember> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const statuses = await this.statuses();
      const votes = new Map<string, number>();
      for (const status of statuses.values()) {
        if (status.leaderId !== '0') {
          votes.set(status.leaderId, (votes.get(status.leaderId) ?? 0) + 1);
        }
      }
      for (const [leaderId, count] of votes) {
        if (count * 2 <= this.members.length) continue;
        for (const [member, status] of statuses) {
          if (status.memberId === leaderId) return member;
        }
      }
      if (Date.now() > deadline) throw new Error(`no etcd leader within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /** A running member that is not the leader. */
  async follower(): Promise<EtcdMember> {
    const leader = await this.leader();
    const follower = this.members.find((m) => m !== leader && m.pid !== undefined);
    if (follower === undefined) throw new Error('no running follower');
    return follower;
  }

  /** Kills every member and removes all data dirs. */
  async stop(): Promise<void> {
    const pids = this.members.map((m) => m.pid).filter((pid) => pid !== undefined);
    killPids(pids);
    await waitUntilGone(pids, 5_000);
    for (const member of this.members) member.pid = undefined;
    rmSync(this.root, { recursive: true, force: true });
  }

  /** The last lines etcd wrote for `member`. */
  logTail(member: EtcdMember, lines = 20): string {
    try {
      return readFileSync(member.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Waits until every running member answers /health with a leader. */
  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    await Promise.all(
      this.members
        .filter((m) => m.pid !== undefined)
        .map((m) => this.waitMemberHealthy(m, timeoutMs)),
    );
  }

  private async waitMemberHealthy(member: EtcdMember, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (member.pid === undefined || !isAlive(member.pid)) {
        throw new Error(`etcd ${member.name} exited:\n${this.logTail(member)}`);
      }
      if (await healthy(member)) return;
      if (Date.now() > deadline) {
        throw new Error(
          `etcd ${member.name} not healthy in ${timeoutMs} ms:\n${this.logTail(member)}`,
        );
      }
      await sleep(25);
    }
  }

  private spawn(member: EtcdMember): void {
    const log = openSync(member.logFile, 'a');
    try {
      const proc = spawn(ETCD_BINARY, this.flags(member), {
        stdio: ['ignore', log, log],
      });
      if (proc.pid === undefined) throw new Error(`could not start ${ETCD_BINARY}`);
      // Reap the child when it dies so a SIGKILLed member does not linger as a zombie.
      proc.on('exit', () => {});
      proc.on('error', () => {});
      member.pid = proc.pid;
    } finally {
      closeSync(log);
    }
  }

  private async statuses(): Promise<Map<EtcdMember, MemberStatus>> {
    const statuses = new Map<EtcdMember, MemberStatus>();
    await Promise.all(
      this.members
        .filter((m) => m.pid !== undefined)
        .map(async (member) => {
          const status = await memberStatus(member);
          if (status !== undefined) statuses.set(member, status);
        }),
    );
    return statuses;
  }
}

/** A port the kernel just handed out on 127.0.0.1 (free at the time of asking). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function healthy(member: EtcdMember): Promise<boolean> {
  try {
    const response = await fetch(`${member.clientUrl}/health`, {
      signal: AbortSignal.timeout(1_000),
    });
    const body = (await response.json()) as { health?: string };
    return body.health === 'true';
  } catch {
    return false;
  }
}

async function memberStatus(member: EtcdMember): Promise<MemberStatus | undefined> {
  try {
    const response = await fetch(`${member.clientUrl}/v3/maintenance/status`, {
      method: 'POST',
      body: '{}',
      signal: AbortSignal.timeout(1_000),
    });
    const body = (await response.json()) as {
      header?: { member_id?: string; revision?: string };
      leader?: string;
    };
    if (body.header?.member_id === undefined) return undefined;
    return {
      memberId: body.header.member_id,
      leaderId: body.leader ?? '0',
      revision: Number(body.header.revision ?? 0),
    };
  } catch {
    return undefined;
  }
}
