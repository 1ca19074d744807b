/**
 * The publisher: POST /v1/publish with small bodies `{"channel","data":{"seq","t"}}`, either as
 * fast as the server answers with a fixed number of requests in flight (throughput), or at a
 * fixed rate (latency). `t` is the wall clock in ms (fractional) when the request is sent.
 */
import { Agent, request } from 'node:http';
import { serveRequests } from './procs.js';

interface Run {
  url: URL;
  key: string;
  channel: string;
  agent: Agent;
  seq: number;
  inFlight: number;
  ok: number;
  failed: number;
  firstError?: string;
  lastPosition: number;
  stopped: boolean;
  timer?: NodeJS.Timeout;
  idle?: () => void;
}

let run: Run | undefined;
const now = () => performance.timeOrigin + performance.now();

function publishOne(r: Run, onDone: () => void): void {
  const body = `{"channel":"${r.channel}","data":{"seq":${++r.seq},"t":${now().toFixed(3)}}}`;
  r.inFlight++;
  const req = request(
    r.url,
    {
      method: 'POST',
      agent: r.agent,
      headers: {
        authorization: `Bearer ${r.key}`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    },
    (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode === 200) {
          r.ok++;
          const { position } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
            position: number;
          };
          r.lastPosition = Math.max(r.lastPosition, position);
        } else {
          r.failed++;
          r.firstError ??= `${res.statusCode} ${Buffer.concat(chunks).toString('utf8').slice(0, 200)}`;
        }
        finish();
      });
    },
  );
  const finish = () => {
    r.inFlight--;
    if (r.inFlight === 0) r.idle?.();
    onDone();
  };
  req.on('error', (error) => {
    r.failed++;
    r.firstError ??= error.message;
    finish();
  });
  req.end(body);
}

serveRequests({
  /** Starts publishing: `concurrency` requests in flight, or `rate` per second if given. */
  start(msg) {
    if (run && !run.stopped) throw new Error('already publishing');
    const concurrency = (msg.concurrency as number | undefined) ?? 4;
    const rate = msg.rate as number | undefined;
    const r: Run = {
      url: new URL('/v1/publish', msg.url as string),
      key: msg.key as string,
      channel: msg.channel as string,
      agent: new Agent({ keepAlive: true, maxSockets: rate ? 64 : concurrency }),
      seq: 0,
      inFlight: 0,
      ok: 0,
      failed: 0,
      lastPosition: 0,
      stopped: false,
    };
    run = r;
    if (rate) {
      // Fixed rate, catching up on timer lateness so the average stays at `rate`.
      const started = performance.now();
      let sent = 0;
      r.timer = setInterval(() => {
        const due = Math.floor(((performance.now() - started) / 1000) * rate);
        while (sent < due && !r.stopped) {
          sent++;
          publishOne(r, () => undefined);
        }
      }, 1);
    } else {
      const loop = () => {
        if (!r.stopped) publishOne(r, loop);
      };
      for (let i = 0; i < concurrency; i++) loop();
    }
    return null;
  },

  snapshot() {
    const r = run;
    return {
      ok: r?.ok ?? 0,
      failed: r?.failed ?? 0,
      at: performance.now(),
      firstError: r?.firstError,
    };
  },

  /** Stops and waits for the requests in flight; answers with the totals. */
  async stop() {
    const r = run;
    if (!r) return null;
    r.stopped = true;
    clearInterval(r.timer);
    if (r.inFlight > 0) await new Promise<void>((resolve) => (r.idle = resolve));
    r.agent.destroy();
    return { ok: r.ok, failed: r.failed, lastPosition: r.lastPosition, firstError: r.firstError };
  },
});
