/**
 * The baseline: the least a Node `ws` server can do for the same clients. It speaks just
 * enough of the protocol for the same subscriber code (`welcome`, `subscribe` -> `subscribed`),
 * and for every POST /v1/publish it builds the same `message` frame once (same JSON shape,
 * incrementing position) and writes it to every subscriber with `client.send(buffer)` as a
 * text frame. No store, no history, no cursors, no metrics, no tracing.
 *
 * Usage: node rawWsServer.js  (env PORT, default 0; prints `listening <port>`)
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

const channels = new Map<string, Set<WebSocket>>();
const positions = new Map<string, number>();
let connections = 0;

const wss = new WebSocketServer({
  noServer: true,
  maxPayload: 64 * 1024,
  perMessageDeflate: false,
  clientTracking: false,
});

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const server = createServer((req, res) => {
  const reply = (status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  };
  if (req.method === 'GET' && req.url === '/readyz')
    return reply(200, { ready: true, connections });
  if (req.method !== 'POST' || req.url !== '/v1/publish') return reply(404, { error: 'not found' });
  readBody(req).then(
    (raw) => {
      let body: { channel?: unknown; data?: unknown };
      try {
        body = JSON.parse(raw.toString('utf8')) as typeof body;
      } catch {
        return reply(400, { error: 'bad json' });
      }
      const channel = body.channel;
      if (typeof channel !== 'string' || body.data === undefined)
        return reply(400, { error: 'bad body' });
      const position = (positions.get(channel) ?? 0) + 1;
      positions.set(channel, position);
      const frame = Buffer.from(
        `{"type":"message","channel":${JSON.stringify(channel)},"position":${position},"time":${Date.now()},"data":${JSON.stringify(body.data)}}`,
      );
      const subscribers = channels.get(channel);
      if (subscribers) for (const client of subscribers) client.send(frame, { binary: false });
      reply(200, { channel, position });
    },
    () => reply(400, { error: 'body' }),
  );
});

server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    connections++;
    const mine = new Set<string>();
    ws.send(JSON.stringify({ type: 'welcome', version: 1, session: randomUUID(), node: 'raw-ws' }));
    ws.on('message', (data: Buffer) => {
      let frame: { type?: string; channel?: string };
      try {
        frame = JSON.parse(data.toString('utf8')) as typeof frame;
      } catch {
        return;
      }
      if (frame.type === 'subscribe' && typeof frame.channel === 'string') {
        let set = channels.get(frame.channel);
        if (!set) channels.set(frame.channel, (set = new Set()));
        set.add(ws);
        mine.add(frame.channel);
        ws.send(
          JSON.stringify({
            type: 'subscribed',
            channel: frame.channel,
            position: positions.get(frame.channel) ?? 0,
          }),
        );
      }
    });
    ws.on('close', () => {
      connections--;
      for (const channel of mine) channels.get(channel)?.delete(ws);
    });
    ws.on('error', () => undefined);
  });
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`listening ${(server.address() as AddressInfo).port}`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
