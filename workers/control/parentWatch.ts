/**
 * Preloaded into every supervised child (`node --import <this module> script.js`): when the
 * supervising process goes away, even by SIGKILL, the child stops itself (SIGINT to itself, so
 * its own clean shutdown runs) instead of living on as an orphan that holds its port.
 *
 * Two signals of a lost parent: the IPC channel the supervisor opens closes (immediate), and,
 * as a fallback for children started without one, the parent pid changes (polled every second).
 *
 * The clean shutdown may never finish: the store may have gone with the parent, and stdout is
 * now a broken pipe, on which pino's exit-time flush (sonic-boom `flushSync`) retries EPIPE
 * forever, blocking the main thread. So a worker thread, which no blocked main thread can
 * stop, SIGKILLs the process if it is still there after FORCED_EXIT_AFTER_MS.
 */
import { Worker } from 'node:worker_threads';

const FORCED_EXIT_AFTER_MS = 3_000;
const POLL_MS = 1_000;

const parent = process.ppid;
let gone = false;

function parentGone(reason: string): void {
  if (gone) return;
  gone = true;
  // The parent held the other ends of our stdout/stderr pipes: writing may now fail with EPIPE.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  process.stderr.write(`supervisor (pid ${parent}) gone: ${reason}; stopping\n`);
  const watchdog = `setTimeout(() => process.kill(process.pid, 'SIGKILL'), ${FORCED_EXIT_AFTER_MS})`;
  new Worker(watchdog, { eval: true }).unref();
  process.kill(process.pid, 'SIGINT'); // stop at once: the cluster it belonged to is gone
}

if (process.channel) {
  process.on('disconnect', () => parentGone('control channel closed'));
  // A 'disconnect' listener would keep the channel referenced; the channel alone must never
  // keep the child alive.
  process.channel.unref();
}

setInterval(() => {
  if (process.ppid !== parent) parentGone(`reparented to pid ${process.ppid}`);
}, POLL_MS).unref();
