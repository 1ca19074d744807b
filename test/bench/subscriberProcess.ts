/**
 * A load-generating process holding many WebSocket subscribers (plain `ws`, not the SDK),
 * driven by the orchestrator over IPC. The same code talks to the gateway and to the raw ws
 * baseline: connect, wait for `welcome`, subscribe, wait for `subscribed`, then count.
 *
 * Per message frame the work is identical for both servers:
 * - `scan` mode (throughput): check the frame is a text `message` frame and read its position
 *   with a byte search (to count gaps and duplicates), no JSON.parse;
 * - `parse` mode (latency): JSON.parse every frame and record now - data.t.
 */
import { WebSocket } from 'ws';
import { serveRequests } from './procs.js';
import { HeartbeatType, heartbeatType, pongFor } from '../../shared/protocol/heartbeat.js';

type Mode = 'scan' | 'parse';

export interface Counters {
  messages: number;
  bytes: number;
  gaps: number;
  duplicates: number;
  errors: number;
  unexpectedCloses: number;
}

const zeroCounters = (): Counters => ({
  messages: 0,
  bytes: 0,
  gaps: 0,
  duplicates: 0,
  errors: 0,
  unexpectedCloses: 0,
});
const counters = zeroCounters();
const clients: WebSocket[] = [];
let mode: Mode = 'scan';
let closing = false;
/** Latency samples in ms (parse mode), recorded only while `recording`. */
let samples: number[] = [];
let recording = false;
let firstError: string | undefined;

const MESSAGE_PREFIX = Buffer.from('{"type":"message"');
const POSITION_KEY = Buffer.from('"position":');
const now = () => performance.timeOrigin + performance.now();

function positionOf(frame: Buffer): number {
  const at = frame.indexOf(POSITION_KEY, MESSAGE_PREFIX.length);
  if (at < 0) return -1;
  let value = 0;
  for (let i = at + POSITION_KEY.length; i < frame.length; i++) {
    const c = frame[i]!;
    if (c < 48 || c > 57) break;
    value = value * 10 + (c - 48);
  }
  return value;
}

function noteError(text: string): void {
  counters.errors++;
  firstError ??= text.slice(0, 300);
}

/** Opens one subscriber; resolves once it is subscribed. */
function openClient(url: string, channel: string, timeoutMs: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true });
    let subscribed = false;
    let last = 0;
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('subscribe timed out'));
    }, timeoutMs);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      // Answer the gateway's heartbeat pings as the SDK does (the raw ws server sends none).
      if (isBinary && heartbeatType(data) === HeartbeatType.ping) return ws.send(pongFor(data));
      if (subscribed) {
        if (mode === 'scan') {
          if (
            isBinary ||
            data.compare(MESSAGE_PREFIX, 0, MESSAGE_PREFIX.length, 0, MESSAGE_PREFIX.length) !== 0
          ) {
            return noteError(data.toString('utf8'));
          }
          const position = positionOf(data);
          if (last !== 0) {
            if (position === last + 1) {
              /* in order */
            } else if (position <= last) counters.duplicates++;
            else counters.gaps++;
          }
          last = position;
        } else {
          const frame = JSON.parse(data.toString('utf8')) as {
            type: string;
            position: number;
            data: { t: number };
          };
          if (isBinary || frame.type !== 'message') return noteError(data.toString('utf8'));
          if (last !== 0) {
            if (frame.position <= last) counters.duplicates++;
            else if (frame.position !== last + 1) counters.gaps++;
          }
          last = frame.position;
          if (recording) samples.push(now() - frame.data.t);
        }
        counters.messages++;
        counters.bytes += data.length;
        return;
      }
      const frame = JSON.parse(data.toString('utf8')) as { type: string };
      if (frame.type === 'welcome') {
        ws.send(JSON.stringify({ type: 'subscribe', channel }));
      } else if (frame.type === 'subscribed') {
        subscribed = true;
        clearTimeout(timer);
        resolve(ws);
      } else {
        clearTimeout(timer);
        ws.terminate();
        reject(
          new Error(`unexpected frame before subscribed: ${data.toString('utf8').slice(0, 200)}`),
        );
      }
    });
    ws.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    ws.on('close', (code, reason) => {
      if (!closing && subscribed) {
        counters.unexpectedCloses++;
        firstError ??= `closed ${code} ${reason.toString()}`;
      }
    });
  });
}

serveRequests({
  /** Opens `count` subscribers to `urls` (round robin), `concurrency` at a time. */
  async connect(msg) {
    const urls = msg.urls as string[];
    const count = msg.count as number;
    const channel = msg.channel as string;
    const concurrency = (msg.concurrency as number | undefined) ?? 100;
    mode = (msg.mode as Mode | undefined) ?? 'scan';
    closing = false;
    const started = performance.now();
    let next = 0;
    let failed = 0;
    let failure: string | undefined;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        try {
          clients.push(await openClient(urls[i % urls.length]!, channel, 30_000));
        } catch (error) {
          failed++;
          failure ??= error instanceof Error ? error.message : String(error);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
    return { connected: clients.length, failed, failure, ms: performance.now() - started };
  },

  /** Counters with this process's clock, so rates use local elapsed time. */
  snapshot() {
    return { ...counters, at: performance.now(), clients: clients.length, firstError };
  },

  startLatency() {
    samples = [];
    recording = true;
    return null;
  },

  stopLatency() {
    recording = false;
    const out = samples;
    samples = [];
    return out;
  },

  async close() {
    closing = true;
    await Promise.all(
      clients.map(
        (ws) =>
          new Promise<void>((resolve) => {
            if (ws.readyState === WebSocket.CLOSED) return resolve();
            ws.once('close', () => resolve());
            ws.terminate();
          }),
      ),
    );
    clients.length = 0;
    Object.assign(counters, zeroCounters());
    firstError = undefined;
    return null;
  },
});
