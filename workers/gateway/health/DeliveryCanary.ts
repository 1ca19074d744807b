/**
 * A synthetic subscriber on the gateway's own canary channel, fed through the normal publish
 * path (HTTP POST /v1/publish) every interval: the end-to-end signal that messages really are
 * delivered, which stays red when every other health check is green but nothing arrives.
 */
import { WebSocket } from 'ws';
import { HeartbeatType, heartbeatType, pongFor } from '../../../shared/protocol/heartbeat.js';

export interface CanaryResult {
  ok: boolean;
  /** Publish-to-delivery time, when delivered. */
  latencyMs?: number;
  /** Consecutive misses so far (0 after a delivery). */
  misses: number;
}

export interface DeliveryCanaryOptions {
  /** Base URL of the gateway (http://host:port). */
  gatewayUrl: string;
  publishKey: string;
  channel: string;
  /** @default 1000 */
  intervalMs?: number;
  /** A probe not delivered within this counts as a miss. @default 2000 */
  timeoutMs?: number;
  onResult(result: CanaryResult): void;
}

export function canaryChannel(nodeId: string): string {
  return `_streamheal.canary.${nodeId}`;
}

export class DeliveryCanary {
  private ws?: WebSocket;
  private timer?: NodeJS.Timeout;
  private seq = 0;
  /** Probes sent and not yet delivered: sequence number → send time. */
  private readonly inFlight = new Map<number, number>();
  private misses = 0;
  private stopped = false;

  constructor(private readonly options: DeliveryCanaryOptions) {}

  start(): void {
    this.connect();
    this.timer = setInterval(() => this.tick(), this.options.intervalMs ?? 1_000).unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.ws?.terminate();
  }

  private connect(): void {
    if (this.stopped) return;
    const ws = new WebSocket(`${this.options.gatewayUrl.replace(/^http/, 'ws')}/v1/ws`);
    this.ws = ws;
    ws.on('message', (data: Buffer, isBinary) => {
      // Like any client, it answers the gateway's heartbeat, or it would be dropped as dead.
      if (isBinary) {
        if (heartbeatType(data) === HeartbeatType.ping) ws.send(pongFor(data));
      } else this.onFrame(data.toString('utf8'));
    });
    ws.on('error', () => undefined); // a failed connection shows up as misses
    ws.on('close', () => {
      if (this.ws === ws) this.ws = undefined;
    });
  }

  private onFrame(text: string): void {
    const frame = JSON.parse(text) as { type: string; data?: { seq?: number } };
    if (frame.type === 'welcome') {
      this.ws?.send(JSON.stringify({ type: 'subscribe', channel: this.options.channel }));
    } else if (frame.type === 'message' && typeof frame.data?.seq === 'number') {
      const sentAt = this.inFlight.get(frame.data.seq);
      if (sentAt === undefined) return;
      this.inFlight.delete(frame.data.seq);
      this.misses = 0;
      this.options.onResult({ ok: true, latencyMs: performance.now() - sentAt, misses: 0 });
    }
  }

  private tick(): void {
    const now = performance.now();
    const timeoutMs = this.options.timeoutMs ?? 2_000;
    for (const [seq, sentAt] of this.inFlight) {
      if (now - sentAt < timeoutMs) continue;
      this.inFlight.delete(seq);
      this.options.onResult({ ok: false, misses: ++this.misses });
    }
    if (!this.ws) this.connect();
    const seq = ++this.seq;
    this.inFlight.set(seq, now);
    fetch(`${this.options.gatewayUrl}/v1/publish`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${this.options.publishKey}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ channel: this.options.channel, data: { seq } }),
      signal: AbortSignal.timeout(timeoutMs),
    }).catch(() => undefined); // not published → not delivered → a miss at its deadline
  }
}
