/**
 * Connection churn from its own process: `node churnClient.js URL CYCLES CONCURRENCY`. Each
 * cycle opens a WebSocket, waits for `welcome`, subscribes, waits for `subscribed`, and closes.
 * Prints one JSON line with the counts when done.
 */
import { WebSocket } from 'ws';

const [url, cyclesArg = '1000', concurrencyArg = '50'] = process.argv.slice(2);
if (!url) throw new Error('usage: churnClient URL CYCLES CONCURRENCY');
const cycles = Number(cyclesArg);
let started = 0;
let completed = 0;
let failed = 0;

function cycle(): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url!);
    const finish = (ok: boolean) => {
      if (ok) completed++;
      else failed++;
      ws.removeAllListeners();
      ws.on('error', () => undefined);
      ws.close();
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.CLOSED) resolve();
    };
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { type: string };
      if (frame.type === 'welcome')
        ws.send(JSON.stringify({ type: 'subscribe', channel: `churn-${started % 10}` }));
      else if (frame.type === 'subscribed') finish(true);
    });
    ws.on('error', () => finish(false));
  });
}

async function worker(): Promise<void> {
  while (started < cycles) {
    started++;
    await cycle();
  }
}

await Promise.all(Array.from({ length: Number(concurrencyArg) }, worker));
process.stdout.write(`${JSON.stringify({ completed, failed })}\n`);
