/**
 * Works around a retention in `ws`'s Receiver (8.x) that a gateway holding many idle
 * connections pays for in memory.
 *
 * After each message the receiver starts a new `_fragments` array, which then waits for the
 * connection's next message. When messages come a few hundred milliseconds apart (heartbeat
 * pongs), the array has been promoted to V8's old generation by then. The next message is
 * pushed into it and the array dropped, but the scavenger treats every pointer from the old
 * generation as a root, so that dead array keeps the message and the whole socket read it
 * points into alive, and promoted, until the next full GC. Measured with 10,000 connections
 * each sending two 12-byte messages a second to a plain `ws` server: 2.7 MB promoted per
 * scavenge and 231 MB RSS, against 0.06 MB and 129 MB once the finished array is emptied.
 *
 * `releaseFinishedFragments` makes every receiver empty its finished array after the message is
 * built from it, which clears that pointer. Idempotent; a no-op if `ws` no longer has the
 * method it wraps.
 */
import * as ws from 'ws';

interface ReceiverInternals {
  _fragments: unknown[];
  _binaryType: string;
  dataMessage(this: ReceiverInternals, cb: unknown): void;
}

const patched = Symbol.for('streamheal.releaseFinishedFragments');

export function releaseFinishedFragments(): void {
  const Receiver = (ws as unknown as { Receiver?: { prototype: ReceiverInternals } }).Receiver;
  const proto = Receiver?.prototype as (ReceiverInternals & { [patched]?: true }) | undefined;
  if (!proto || typeof proto.dataMessage !== 'function' || proto[patched]) return;
  const dataMessage = proto.dataMessage;
  proto.dataMessage = function (this: ReceiverInternals, cb: unknown): void {
    const fragments = this._fragments;
    dataMessage.call(this, cb);
    // A finished message replaced the array; with binaryType 'fragments' the array itself is
    // the message the application receives, so it is left alone.
    if (this._fragments !== fragments && this._binaryType !== 'fragments') fragments.length = 0;
  };
  proto[patched] = true;
}
