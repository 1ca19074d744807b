/**
 * The `ws` receiver workaround (wsRetention.ts) over a real loopback WebSocket: the array a
 * finished message was built from is emptied (so a dead array in the old generation no longer
 * keeps the message alive), and every kind of message still arrives intact.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import * as ws from 'ws';
import { WebSocket, WebSocketServer } from 'ws';
import { releaseFinishedFragments } from '../../../workers/gateway/wsRetention.js';

interface ReceiverView {
  _fragments: unknown[];
}

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** A server and a connected client; resolves with both ends. */
async function connection(binaryType?: 'nodebuffer' | 'arraybuffer' | 'fragments') {
  releaseFinishedFragments();
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[WebSocket]>;
  const { port } = server.address() as AddressInfo;
  const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  await once(client, 'open');
  const [serverSide] = await accepted;
  if (binaryType) serverSide.binaryType = binaryType;
  closers.push(async () => {
    client.terminate();
    await new Promise((resolve) => server.close(resolve));
  });
  const received: Array<{ data: unknown; isBinary: boolean }> = [];
  serverSide.on('message', (data, isBinary) => received.push({ data, isBinary }));
  const receiver = (serverSide as unknown as { _receiver: ReceiverView })._receiver;
  const until = async (count: number) => {
    for (let i = 0; i < 200 && received.length < count; i++)
      await new Promise((r) => setTimeout(r, 5));
    expect(received).toHaveLength(count);
  };
  return { client, receiver, received, until };
}

describe('releaseFinishedFragments', () => {
  it('empties the array each finished message was built from', async () => {
    const { client, receiver, received, until } = await connection();
    const waiting = receiver._fragments;
    client.send(Buffer.from([1, 2, 3]));
    await until(1);
    expect(Buffer.from(received[0]!.data as Buffer)).toEqual(Buffer.from([1, 2, 3]));
    expect(waiting).toHaveLength(0); // it held the message; nothing points at it any more
    expect(receiver._fragments).not.toBe(waiting);
    expect(receiver._fragments).toHaveLength(0);
  });

  it('delivers text, binary and fragmented messages intact', async () => {
    const { client, received, until } = await connection();
    client.send('héllo');
    client.send(Buffer.alloc(70_000, 7));
    client.send(Buffer.from('par'), { fin: false });
    client.send(Buffer.from('ts '), { fin: false });
    client.send(Buffer.from('joined'), { fin: true });
    client.send('after');
    await until(4);
    expect(received.map((m) => [Buffer.from(m.data as Buffer).toString(), m.isBinary])).toEqual([
      ['héllo', false],
      [Buffer.alloc(70_000, 7).toString(), true],
      ['parts joined', true],
      ['after', false],
    ]);
  });

  it("leaves the array alone when it is the message itself (binaryType 'fragments')", async () => {
    const { client, received, until } = await connection('fragments');
    client.send(Buffer.from('ab'), { fin: false });
    client.send(Buffer.from('cd'), { fin: true });
    client.send(Buffer.from('ef'));
    await until(2);
    const [first, second] = received.map((m) => m.data as Buffer[]);
    expect(first!.map((b) => b.toString())).toEqual(['ab', 'cd']);
    expect(second!.map((b) => b.toString())).toEqual(['ef']);
  });

  it('arraybuffer messages are copies, unaffected', async () => {
    const { client, received, until } = await connection('arraybuffer');
    client.send(Buffer.from([9, 8, 7]));
    await until(1);
    expect([...new Uint8Array(received[0]!.data as ArrayBuffer)]).toEqual([9, 8, 7]);
  });

  it('wraps the receiver once however often it is called', () => {
    releaseFinishedFragments();
    const { Receiver } = ws as unknown as { Receiver: { prototype: { dataMessage: unknown } } };
    const wrapped = Receiver.prototype.dataMessage;
    releaseFinishedFragments();
    expect(Receiver.prototype.dataMessage).toBe(wrapped);
  });
});
