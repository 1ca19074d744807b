/**
 * Helper process of the detection-sweep benchmark: opens plain TCP connections to one port on
 * loopback and holds them (idle) until told to close or stopped.
 */
import { connect, type Socket } from 'node:net';
import { serveRequests } from './procs.js';

const held: Socket[] = [];

async function open(port: number, count: number, concurrency = 256): Promise<number> {
  let next = 0;
  let failed = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.setNoDelay(true);
      let settled = false;
      socket.once('connect', () => {
        settled = true;
        held.push(socket);
        resolve();
      });
      socket.on('error', () => {
        socket.destroy();
        if (settled) return;
        settled = true;
        failed++;
        resolve();
      });
    });
  const lane = async () => {
    while (next < count) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  if (failed) throw new Error(`${failed} of ${count} connections failed`);
  return held.length;
}

serveRequests({
  open: (msg) => open(Number(msg.port), Number(msg.count)),
  close: () => {
    for (const s of held.splice(0)) s.destroy();
    return 0;
  },
});
