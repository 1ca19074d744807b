/**
 * The control link's frame batching, shared by LinkConnection and LinkServer, over a real
 * WebSocket on 127.0.0.1.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { Outbox } from '../../../shared/link/Outbox.js';

describe('Outbox', () => {
  let server: WebSocketServer;
  let client: WebSocket;
  let received: string[];

  beforeEach(async () => {
    received = [];
    server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    server.on('connection', (ws) => ws.on('message', (data) => received.push(data.toString())));
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    const { port } = server.address() as AddressInfo;
    client = new WebSocket(`ws://127.0.0.1:${port}`);
    await new Promise<void>((resolve, reject) => {
      client.once('open', () => resolve());
      client.once('error', reject);
    });
  });

  afterEach(async () => {
    client.terminate();
    for (const ws of server.clients) ws.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  it('sends the frames of one turn as one message: a lone frame as is, several as an array', async () => {
    const sent: number[] = [];
    const outbox = new Outbox(client, () => sent.push(received.length));

    outbox.push('{"id":1}');
    outbox.push('{"id":2}');
    outbox.push('{"id":3}');
    await settle();
    outbox.push('{"id":4}');
    await settle();

    expect(received).toEqual(['[{"id":1},{"id":2},{"id":3}]', '{"id":4}']);
    expect(sent).toHaveLength(2);
  });

  it('sends nothing once closed, not even what was queued', async () => {
    const outbox = new Outbox(client);

    outbox.push('{"id":1}');
    outbox.close();
    outbox.push('{"id":2}');
    await settle();

    expect(received).toEqual([]);
  });
});
