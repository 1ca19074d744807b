/**
 * KernelSweeper's bookkeeping against a scripted kernel: thousands of rows in random order
 * (matched across event-loop slices), same remote port on two addresses, IPv6, deltas, flash
 * cuts by state and by disappearance, registrations changing mid-sweep. The real-socket
 * behaviour is in kernelProbe.test.ts.
 */
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  KernelSweeper,
  SWEEP_STRIDE,
  SweepField,
  TcpState,
  parseEndpoint,
  type ConnectionDelta,
  type FlashCutEvent,
  type KernelProbes,
  type RawSweep,
  type TcpInfo,
} from '../../../../workers/gateway/probes/kernelProbe.js';

interface FakeConn {
  address: string;
  port: number;
  state: number;
  totalRetrans: number;
  unacked: number;
  inode: number;
  fd: number;
}

class FakeKernel {
  readonly conns: FakeConn[] = [];
  /** fd -> what getsockopt answers (absent: EBADF -> null). */
  readonly byFd = new Map<number, Partial<TcpInfo>>();
  hidden = new Set<FakeConn>();

  sweepRaw = async (): Promise<RawSweep> => {
    const rows = this.conns.filter((c) => !this.hidden.has(c));
    // The kernel's hash order, not ours.
    for (let i = rows.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [rows[i], rows[j]] = [rows[j]!, rows[i]!];
    }
    const data = new Uint32Array(rows.length * SWEEP_STRIDE);
    rows.forEach((c, i) => {
      const b = i * SWEEP_STRIDE;
      const ep = parseEndpoint(c.address, c.port)!;
      data[b + SweepField.family] = ep.family;
      data[b + SweepField.state] = c.state;
      data[b + SweepField.localPort] = 443;
      data[b + SweepField.remotePort] = c.port;
      data[b + SweepField.inode] = c.inode;
      data[b + SweepField.rtt] = 50;
      data[b + SweepField.totalRetrans] = c.totalRetrans;
      data[b + SweepField.unacked] = c.unacked;
      data[b + SweepField.hasInfo] = 1;
      data.set([ep.a0 >>> 0, ep.a1 >>> 0, ep.a2 >>> 0, ep.a3 >>> 0], b + SweepField.remoteAddr);
    });
    return { data, count: rows.length, stride: SWEEP_STRIDE, dumpUs: 1 };
  };

  probes(): KernelProbes {
    const info = (fd: number): TcpInfo | null => {
      const known = this.byFd.get(fd);
      if (!known) return null;
      return {
        state: 1,
        rtt: 0,
        rttvar: 0,
        retransmits: 0,
        totalRetrans: 0,
        unacked: 0,
        lost: 0,
        notsentBytes: 0,
        lastDataRecv: 0,
        sndCwnd: 10,
        sndBuf: 0,
        outq: 0,
        inq: 0,
        ...known,
      };
    };
    return {
      available: true,
      reason: null,
      path: null,
      tcpInfo: info,
      setUserTimeout: () => true,
      getUserTimeout: () => 0,
      setKeepalive: () => true,
      getKeepalive: () => null,
      sweepRaw: this.sweepRaw,
      sweep: async () => [],
    };
  }
}

/** What the sweeper reads of a socket; tests change these as Node would. */
interface FakeSocket {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  destroyed: boolean;
  errored: Error | null;
  readableEnded: boolean;
  _handle: { fd: number };
}

function fakeSocket(c: FakeConn): FakeSocket {
  return {
    remoteAddress: c.address,
    remotePort: c.port,
    destroyed: false,
    errored: null,
    readableEnded: false,
    _handle: { fd: c.fd },
  };
}
const asSocket = (fake: FakeSocket) => fake as unknown as Socket;

const sweepers: KernelSweeper[] = [];
afterEach(() => {
  for (const s of sweepers.splice(0)) s.close();
});

function setup(count: number) {
  const kernel = new FakeKernel();
  for (let i = 0; i < count; i++) {
    kernel.conns.push({
      address: i % 3 === 2 ? '2001:db8::7' : i % 3 === 1 ? '127.0.0.2' : '127.0.0.1',
      port: 10_000 + Math.floor(i / 3), // three addresses share each remote port
      state: TcpState.ESTABLISHED,
      totalRetrans: 0,
      unacked: 0,
      inode: 5_000_000 + i,
      fd: 100 + i,
    });
  }
  const deltas: ConnectionDelta[] = [];
  const cuts: FlashCutEvent[] = [];
  const sweeper = new KernelSweeper({
    port: 443,
    probes: kernel.probes(),
    onDelta: (d) => deltas.push(d),
    onFlashCut: (e) => cuts.push(e),
  });
  sweepers.push(sweeper);
  const sockets = kernel.conns.map(fakeSocket);
  const slots = sockets.map((s, i) => sweeper.register(`k${i}`, asSocket(s)));
  return { kernel, sweeper, sockets, slots, deltas, cuts };
}

describe('KernelSweeper bookkeeping', () => {
  it('parses endpoints the way rows carry them', () => {
    expect(parseEndpoint('127.0.0.1', 80)).toEqual({
      family: 4,
      a0: 0x7f000001,
      a1: 0,
      a2: 0,
      a3: 0,
      port: 80,
    });
    expect(parseEndpoint('::ffff:127.0.0.1', 80)).toEqual(parseEndpoint('127.0.0.1', 80));
    expect(parseEndpoint('::ffff:7f00:1', 80)).toEqual(parseEndpoint('127.0.0.1', 80));
    expect(parseEndpoint('::1', 8)).toMatchObject({ family: 6, a0: 0, a1: 0, a2: 0, a3: 1 });
    expect(parseEndpoint('2001:db8::7', 8)).toMatchObject({
      family: 6,
      a0: 0x20010db8,
      a1: 0,
      a2: 0,
      a3: 7,
    });
    expect(parseEndpoint('fe80::1%eth0', 8)).toMatchObject({ family: 6, a0: 0xfe800000 | 0 });
    expect(parseEndpoint('::ffff:10.1.2.3', 8)).toMatchObject({ family: 4, a0: 0x0a010203 });
    expect(parseEndpoint('64:ff9b::10.1.2.3', 8)).toMatchObject({ family: 6, a3: 0x0a010203 });
    expect(parseEndpoint(undefined, 8)).toBeNull();
    expect(parseEndpoint('nonsense', 8)).toBeNull();
  });

  it('matches 9,000 rows in random order to their registrations, across slices', async () => {
    const { sweeper, slots, deltas, cuts } = setup(9_000);
    const stats = (await sweeper.sweepOnce())!;
    expect(stats).toMatchObject({
      mode: 'netlink',
      rows: 9_000,
      registered: 9_000,
      matched: 9_000,
    });
    expect(stats.maxSliceMs).toBeLessThanOrEqual(stats.mainMs);
    for (const i of [0, 1, 2, 4_444, 8_999])
      expect(sweeper.sample(slots[i]!)).toMatchObject({ state: 1, rtt: 50, source: 'netlink' });
    expect(deltas).toEqual([]);
    expect(cuts).toEqual([]);
  });

  it('reports growth, state changes and flash cuts once, for the right connection', async () => {
    const { kernel, sweeper, deltas, cuts } = setup(3_000);
    await sweeper.sweepOnce();
    const grow = kernel.conns[1]!; // 127.0.0.2, shares its port with k0 and k2
    grow.totalRetrans = 2;
    grow.unacked = 3;
    kernel.conns[5]!.state = TcpState.CLOSE_WAIT; // IPv6
    const gone = kernel.conns[7]!;
    kernel.hidden.add(gone);
    kernel.byFd.set(gone.fd, { state: TcpState.CLOSE });
    kernel.hidden.add(kernel.conns[8]!); // and getsockopt knows nothing of it
    await sweeper.sweepOnce();

    const byKey = new Map(deltas.map((d) => [d.key, d]));
    expect(byKey.get('k1')).toMatchObject({
      slot: 1,
      stateChanged: false,
      totalRetransDelta: 2,
      unackedDelta: 3,
      current: { totalRetrans: 2, unacked: 3 },
      previous: { totalRetrans: 0, unacked: 0 },
    });
    expect(byKey.get('k5')).toMatchObject({
      stateChanged: true,
      current: { stateName: 'CLOSE_WAIT' },
    });
    expect(byKey.get('k7')).toMatchObject({
      stateChanged: true,
      current: { state: TcpState.CLOSE, source: 'getsockopt' },
    });
    expect([...byKey.keys()].sort()).toEqual(['k1', 'k5', 'k7']);
    expect(cuts.map((c) => [c.key, c.stateName, c.vanished]).sort()).toEqual([
      ['k5', 'CLOSE_WAIT', false],
      ['k7', 'CLOSE', true],
      ['k8', 'UNKNOWN', true],
    ]);
    expect(cuts.find((c) => c.key === 'k5')!.last).toMatchObject({ state: TcpState.ESTABLISHED });

    deltas.length = 0;
    await sweeper.sweepOnce();
    expect(cuts).toHaveLength(3); // each reported once
    expect(deltas).toEqual([]);
  });

  it('no flash cut after the application saw an error, or after it closed', async () => {
    const { kernel, sweeper, sockets, slots, cuts } = setup(30);
    await sweeper.sweepOnce();
    sockets[4]!.errored = new Error('ECONNRESET');
    sockets[6]!.destroyed = true;
    for (const i of [4, 6]) kernel.conns[i]!.state = TcpState.CLOSE_WAIT;
    kernel.conns[9]!.state = TcpState.CLOSE_WAIT;
    sockets[9]!.readableEnded = true; // Node read the FIN but reported no error: still a flash cut
    await sweeper.sweepOnce();
    expect(cuts.map((c) => [c.key, c.slot, c.peerEnded])).toEqual([['k9', slots[9], true]]);
    // A closed socket stays registered (and silent) until its owner unregisters it.
    expect(sweeper.size).toBe(30);
    sweeper.unregister(slots[6]!);
    expect(sweeper.size).toBe(29);
    expect(sweeper.sample(slots[6]!)).toBeNull();
  });

  it('keeps matching right when registrations change, slots are reused and sockets connect late', async () => {
    const { kernel, sweeper, sockets, slots } = setup(10);
    await sweeper.sweepOnce();
    sweeper.unregister(slots[2]!);
    sweeper.unregister(slots[5]!);
    sweeper.unregister(slots[5]!); // twice: ignored
    const late: FakeConn = {
      ...kernel.conns[0]!,
      address: '127.0.0.9',
      port: 20_000,
      inode: 9,
      fd: 99,
    };
    kernel.conns.push(late);
    const lateSocket = fakeSocket(late);
    lateSocket.remoteAddress = undefined; // not connected yet when registered
    lateSocket.remotePort = undefined;
    const lateSlot = sweeper.register('late', asSocket(lateSocket));
    expect([slots[2], slots[5]]).toContain(lateSlot); // a freed slot, reused
    sweeper.unregister(slots[0]!);
    expect(sweeper.register('k0', asSocket(sockets[0]!))).toBe(slots[0]);
    expect(sweeper.size).toBe(9);
    lateSocket.remoteAddress = '127.0.0.9';
    lateSocket.remotePort = 20_000;
    kernel.byFd.set(99, { state: TcpState.ESTABLISHED, rtt: 7 });
    const first = (await sweeper.sweepOnce())!;
    // 'late' has no address at the sweep's start: read by getsockopt, then indexed.
    expect(first.matched).toBe(9);
    expect(sweeper.sample(lateSlot)).toMatchObject({ source: 'getsockopt', rtt: 7 });
    const second = (await sweeper.sweepOnce())!;
    expect(second.matched).toBe(9);
    expect(sweeper.sample(lateSlot)).toMatchObject({ source: 'netlink', rtt: 50 });
    expect(sweeper.reading(lateSlot, 'notsentBytes')).toBe(0);
    const freed = [slots[2]!, slots[5]!].find((slot) => slot !== lateSlot)!;
    expect(sweeper.sample(freed)).toBeNull();
    expect(sweeper.reading(freed, 'lost')).toBeNull();
  });

  it('ignores rows without an inode (TIME_WAIT of an earlier connection from the same endpoint)', async () => {
    const { kernel, sweeper, slots, deltas, cuts } = setup(6);
    const old = { ...kernel.conns[0]!, state: TcpState.TIME_WAIT, inode: 0, fd: -1 };
    kernel.conns.push(old, { ...old }, { ...old });
    for (let i = 0; i < 5; i++) {
      const stats = (await sweeper.sweepOnce())!;
      expect(stats.matched).toBe(6);
      expect(sweeper.sample(slots[0]!)).toMatchObject({ state: TcpState.ESTABLISHED });
    }
    expect(deltas).toEqual([]);
    expect(cuts).toEqual([]);
  });

  it('registrations made while a sweep is in flight are not taken for vanished', async () => {
    const { kernel, sweeper, cuts } = setup(5);
    const extra: FakeConn = { ...kernel.conns[0]!, port: 30_000, inode: 77, fd: 77 };
    const pending = sweeper.sweepOnce(); // the dump does not have `extra`
    kernel.conns.push(extra);
    const slot = sweeper.register('extra', asSocket(fakeSocket(extra)));
    await pending;
    expect(cuts).toEqual([]);
    await sweeper.sweepOnce();
    expect(sweeper.sample(slot)).toMatchObject({ source: 'netlink' });
    expect(cuts).toEqual([]);
  });
});
