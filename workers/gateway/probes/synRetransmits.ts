/**
 * The SYN retransmit rate of seed 2.5 (`retrans_syn / syn_init`, scored `exp(−10·rate)`), read
 * from the kernel's own counters: `TcpExt: TCPSynRetrans` in /proc/net/netstat (SYNs and
 * SYN-ACKs sent again) over the connections opened meanwhile, `Tcp: ActiveOpens +
 * PassiveOpens` in /proc/net/snmp (SYNs we sent, handshakes we answered). The counters are the
 * host's (the network namespace's): a SYN is retransmitted before any connection exists to
 * pin it on, so this is the path quality every connection of the node shares.
 */
import { readFile } from 'node:fs/promises';

export interface TcpOpenCounters {
  synRetransmits: number;
  opens: number;
}

/** The counters from the text of /proc/net/netstat and /proc/net/snmp; undefined if absent. */
export function parseTcpOpenCounters(netstat: string, snmp: string): TcpOpenCounters | undefined {
  const synRetransmits = procCounter(netstat, 'TcpExt', 'TCPSynRetrans');
  const active = procCounter(snmp, 'Tcp', 'ActiveOpens');
  const passive = procCounter(snmp, 'Tcp', 'PassiveOpens');
  if (synRetransmits === undefined || active === undefined || passive === undefined)
    return undefined;
  return { synRetransmits, opens: active + passive };
}

/**
 * Retransmitted SYNs per opened connection between two readings, 0 when nothing was opened
 * (no evidence). Each retransmission is one more SYN, so SYNs sent = opens + retransmits and
 * the rate stays within 0..1 as the seed's ratio does.
 */
export function synRetransmitRate(before: TcpOpenCounters, after: TcpOpenCounters): number {
  const retransmits = Math.max(0, after.synRetransmits - before.synRetransmits);
  const opens = Math.max(0, after.opens - before.opens);
  return retransmits + opens === 0 ? 0 : retransmits / (retransmits + opens);
}

/** Rows come in pairs: `Prefix: Name Name ...` then `Prefix: value value ...`. */
function procCounter(text: string, prefix: string, name: string): number | undefined {
  const lines = text.split('\n').filter((line) => line.startsWith(`${prefix}:`));
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const names = lines[i]!.split(/\s+/);
    const values = lines[i + 1]!.split(/\s+/);
    const at = names.indexOf(name);
    if (at > 0 && at < values.length) return Number(values[at]);
  }
  return undefined;
}

/** Reads the counters every `intervalMs` and keeps the rate over the last interval. */
export class SynRetransmitMonitor {
  /** The latest rate, 0..1; 0 until two readings exist or where /proc has no such counters. */
  rate = 0;
  /** False where the counters cannot be read (not Linux): the score then has no SYN evidence. */
  available = true;
  private last?: TcpOpenCounters;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly intervalMs: number,
    private readonly procNet = '/proc/net',
  ) {}

  start(): void {
    void this.read();
    this.timer = setInterval(() => void this.read(), this.intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async read(): Promise<void> {
    let counters: TcpOpenCounters | undefined;
    try {
      const [netstat, snmp] = await Promise.all([
        readFile(`${this.procNet}/netstat`, 'utf8'),
        readFile(`${this.procNet}/snmp`, 'utf8'),
      ]);
      counters = parseTcpOpenCounters(netstat, snmp);
    } catch {
      counters = undefined;
    }
    if (!counters) {
      this.available = false;
      this.rate = 0;
      this.stop();
      return;
    }
    if (this.last) this.rate = synRetransmitRate(this.last, counters);
    this.last = counters;
  }
}
