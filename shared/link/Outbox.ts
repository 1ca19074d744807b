/**
 * Frames queued in one turn of the event loop leave as one WebSocket message: a lone frame as
 * it is, several as a JSON array (both ends of the control link read either). Under load that
 * is one write per turn instead of one per frame. Used by both ends (LinkConnection, LinkServer).
 */
import { WebSocket } from 'ws';

export class Outbox {
  private frames: string[] = [];
  private scheduled = false;
  private closed = false;

  /** `afterSend`: called after each message has gone out (LinkServer checks the backlog). */
  constructor(
    private readonly ws: WebSocket,
    private readonly afterSend?: () => void,
  ) {}

  push(frame: string): void {
    if (this.closed) return;
    this.frames.push(frame);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Drops what is queued; nothing is sent any more. */
  close(): void {
    this.closed = true;
    this.frames = [];
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const frames = this.frames;
    // Not open yet: the frames wait for the next push.
    if (this.closed || frames.length === 0 || this.ws.readyState !== WebSocket.OPEN) return;
    const payload = frames.length === 1 ? (frames[0] as string) : `[${frames.join(',')}]`;
    frames.length = 0;
    this.ws.send(payload);
    this.afterSend?.();
  };
}
