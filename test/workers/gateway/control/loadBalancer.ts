/**
 * A plain TCP proxy on 127.0.0.1 playing the cluster's Network Load Balancer in tests: every new
 * connection goes to one registered, healthy backend (in turn), bytes pass through untouched,
 * and deregistering a backend only stops new connections to it (open ones carry on), as NLB does
 * with connection termination off. A test may also send the next connections to a backend of
 * its choice, registered or not (the load balancer routing a client back where it came from).
 */
import {
  createConnection,
  createServer,
  type AddressInfo,
  type Server,
  type Socket,
} from 'node:net';

export class TestLoadBalancer {
  /** Which backend each accepted connection went to, in order (`refused` when none was left). */
  readonly routed: string[] = [];
  private readonly backends = new Map<string, number>();
  private readonly sockets = new Set<Socket>();
  private readonly forced: string[] = [];
  private next = 0;

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<TestLoadBalancer> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const balancer = new TestLoadBalancer(server, `http://127.0.0.1:${port}`);
    server.on('connection', (socket) => balancer.forward(socket));
    return balancer;
  }

  /** A backend (a gateway's name and its loopback HTTP port) takes new connections. */
  register(name: string, port: number): void {
    this.backends.set(name, port);
    this.next = 0; // in turn over the backends in the order registered, from the first
  }

  /** New connections no longer go to `name`; its open ones stay. */
  deregister(name: string): void {
    this.backends.delete(name);
    this.next = 0;
  }

  /** The next connection goes to `name` at `port`, whatever its registration. */
  routeNextTo(name: string, port: number): void {
    this.forced.push(`${name}@${port}`);
  }

  private pick(): { name: string; port: number } | undefined {
    const forced = this.forced.shift();
    if (forced) {
      const at = forced.lastIndexOf('@');
      return { name: forced.slice(0, at), port: Number(forced.slice(at + 1)) };
    }
    const healthy = [...this.backends];
    if (healthy.length === 0) return undefined;
    const [name, port] = healthy[this.next++ % healthy.length]!;
    return { name, port };
  }

  private forward(client: Socket): void {
    this.track(client);
    const backend = this.pick();
    this.routed.push(backend?.name ?? 'refused');
    if (!backend) {
      client.destroy();
      return;
    }
    const upstream = this.track(createConnection({ host: '127.0.0.1', port: backend.port }));
    client.pipe(upstream);
    upstream.pipe(client);
    // Either side going away takes the other with it (a reset stays a reset).
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  private track(socket: Socket): Socket {
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => this.sockets.delete(socket));
    return socket;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
