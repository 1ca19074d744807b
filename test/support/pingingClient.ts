/**
 * A WebSocket client in its own process, for freezing (SIGSTOP) or killing in tests and
 * benchmarks: `node dist/test/support/pingingClient.js WS_URL [CHANNEL]`. It answers the
 * gateway's heartbeat pings, prints `port P session S` when welcomed, subscribes to CHANNEL
 * when given and prints `subscribed`, and exits when the connection closes.
 */
import { WebSocket } from 'ws';
import { HeartbeatType, heartbeatType, pongFor } from '../../shared/protocol/heartbeat.js';

const [url, channel] = process.argv.slice(2);
if (!url) throw new Error('usage: pingingClient WS_URL [CHANNEL]');
const ws = new WebSocket(url);
ws.on('message', (data: Buffer, isBinary) => {
  if (isBinary) {
    if (heartbeatType(data) === HeartbeatType.ping) ws.send(pongFor(data));
    return;
  }
  const frame = JSON.parse(data.toString('utf8')) as { type: string; session?: string };
  if (frame.type === 'welcome') {
    const port = (ws as unknown as { _socket: { localPort: number } })._socket.localPort;
    console.log(`port ${port} session ${frame.session}`);
    if (channel) ws.send(JSON.stringify({ type: 'subscribe', channel }));
  } else if (frame.type === 'subscribed') console.log('subscribed');
});
ws.on('error', () => undefined);
ws.on('close', () => process.exit(0));
