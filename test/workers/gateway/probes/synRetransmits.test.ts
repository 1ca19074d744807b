/**
 * The SYN retransmit input of the connection score, from the kernel's counters: parsing,
 * the rate, and a real retransmitted SYN (an nftables rule drops the SYNs to a port).
 */
import { readFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  SynRetransmitMonitor,
  parseTcpOpenCounters,
  synRetransmitRate,
} from '../../../../workers/gateway/probes/synRetransmits.js';
import { dropInputTo, removeNftRules, requireNft } from '../../../support/nft.js';
import { eventually } from '../../../support/processes.js';

async function readCounters() {
  const [netstat, snmp] = await Promise.all([
    readFile('/proc/net/netstat', 'utf8'),
    readFile('/proc/net/snmp', 'utf8'),
  ]);
  return parseTcpOpenCounters(netstat, snmp)!;
}

describe('SYN retransmit rate', () => {
  const servers: Server[] = [];
  const monitors: SynRetransmitMonitor[] = [];
  afterEach(() => {
    removeNftRules();
    for (const monitor of monitors.splice(0)) monitor.stop();
    for (const server of servers.splice(0)) server.close();
  });

  it('reads the named columns of the kernel tables, wherever they are', () => {
    const netstat = 'TcpExt: A TCPSynRetrans B\nTcpExt: 1 7 2\nIpExt: X\nIpExt: 9\n';
    const snmp =
      'Ip: Forwarding\nIp: 1\nTcp: RtoAlgorithm ActiveOpens PassiveOpens\nTcp: 1 10 32\n';
    expect(parseTcpOpenCounters(netstat, snmp)).toEqual({ synRetransmits: 7, opens: 42 });
    expect(parseTcpOpenCounters('TcpExt: A\nTcpExt: 1\n', snmp)).toBeUndefined();
    expect(parseTcpOpenCounters('', '')).toBeUndefined();
  });

  it('is retransmitted SYNs over SYNs sent: within 0..1, 0 without new connections', () => {
    expect(
      synRetransmitRate({ synRetransmits: 5, opens: 100 }, { synRetransmits: 6, opens: 103 }),
    ).toBe(0.25);
    expect(
      synRetransmitRate({ synRetransmits: 5, opens: 100 }, { synRetransmits: 5, opens: 100 }),
    ).toBe(0);
    fc.assert(
      fc.property(fc.nat(), fc.nat(), fc.nat(), fc.nat(), (r0, o0, r1, o1) => {
        const rate = synRetransmitRate(
          { synRetransmits: r0, opens: o0 },
          { synRetransmits: r1, opens: o1 },
        );
        return rate >= 0 && rate <= 1;
      }),
    );
  });

  it('sees a SYN that went unanswered and was sent again', async () => {
    requireNft();
    const server = createServer();
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const monitor = new SynRetransmitMonitor(200);
    monitors.push(monitor);
    monitor.start();
    const before = await readCounters();
    dropInputTo(port);
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    // The first SYN is dropped; TCP sends it again after its initial RTO (1 s).
    await eventually(
      async () => (await readCounters()).synRetransmits > before.synRetransmits,
      5_000,
      'TCPSynRetrans to grow',
    );
    removeNftRules();
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.destroy();
    await eventually(() => monitor.rate > 0, 3_000, 'the monitor to report a rate above 0');
    expect(monitor.available).toBe(true);
    expect(monitor.rate).toBeLessThanOrEqual(1);
  });

  it('says so where the counters cannot be read, and reports no evidence', async () => {
    const monitor = new SynRetransmitMonitor(50, '/nonexistent');
    monitors.push(monitor);
    monitor.start();
    await eventually(() => !monitor.available, 2_000, 'unavailable');
    expect(monitor.rate).toBe(0);
  });
});
