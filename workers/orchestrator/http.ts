/**
 * The orchestrator's status server: `GET /healthz` (the process answers), `GET /readyz` (it is
 * campaigning: leader or standby; 503 while it cannot reach etcd), `GET /v1/status` (role,
 * leader, term, what the feed did).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { OrchestratorStatus } from './Orchestrator.js';

/** `status` is called per request: undefined until the orchestrator exists (then 503). */
export async function serveStatus(
  status: () => OrchestratorStatus | undefined,
  host: string,
  port: number,
): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const { pathname } = new URL(req.url ?? '/', 'http://orchestrator');
    const send = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
    };
    if (req.method !== 'GET') return send(405, { error: { code: 'method_not_allowed' } });
    const now = status();
    switch (pathname) {
      case '/healthz':
        return send(200, { status: 'ok', pid: process.pid });
      case '/readyz': {
        const ready = now?.role === 'leader' || now?.role === 'standby';
        return send(ready ? 200 : 503, { ready, role: now?.role ?? 'starting' });
      }
      case '/v1/status':
        return now ? send(200, now) : send(503, { error: { code: 'starting' } });
      default:
        return send(404, { error: { code: 'not_found', message: `no route for ${pathname}` } });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return { server, url: `http://${host}:${address.port}` };
}
