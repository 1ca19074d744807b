/**
 * An emulator of the ECS task metadata endpoint version 4 on 127.0.0.1 (not the real one: that
 * exists only inside an ECS task, at http://169.254.170.2/v4/<container id>). It serves, per
 * container path, `GET <path>` (the container's metadata) and `GET <path>/task` (the task's),
 * in the shape the Amazon ECS Developer Guide documents for Fargate ("Amazon ECS task metadata
 * v4 JSON response for tasks on Fargate" and its example task metadata response): PascalCase
 * fields, `TaskARN`, `Containers[]` with `Networks[]` of `NetworkMode: awsvpc` and
 * `IPv4Addresses`. A container path can be made to fail its first answers or never answer.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface EmulatedTask {
  /** `arn:aws:ecs:<region>:<account>:task/<cluster>/<task id>` */
  taskArn: string;
  /** The task's private IPv4 (its elastic network interface). */
  ipv4: string;
  /** Answer this many requests with 503 first. @default 0 */
  failFirst?: number;
  /** Never answer (the request stays open until the emulator stops). @default false */
  hang?: boolean;
}

export const CLUSTER_ARN = 'arn:aws:ecs:us-west-2:111122223333:cluster/streamheal';

/** A task id as ECS makes them: 32 hexadecimal digits. */
export function taskArnFor(taskId: string): string {
  return `arn:aws:ecs:us-west-2:111122223333:task/streamheal/${taskId}`;
}

/** One container of the documented `/task` response, on the task's awsvpc network. */
function container(task: EmulatedTask, name: string, dockerId: string): Record<string, unknown> {
  return {
    DockerId: dockerId,
    Name: name,
    DockerName: name,
    Image: `111122223333.dkr.ecr.us-west-2.amazonaws.com/${name}:latest`,
    ImageID: 'sha256:25f3695bedfb454a50f12d127839a68ad3caf91e451c1da073db34c542c4d2cb',
    Labels: {
      'com.amazonaws.ecs.cluster': CLUSTER_ARN,
      'com.amazonaws.ecs.container-name': name,
      'com.amazonaws.ecs.task-arn': task.taskArn,
      'com.amazonaws.ecs.task-definition-family': 'streamheal-gateway',
      'com.amazonaws.ecs.task-definition-version': '3',
    },
    DesiredStatus: 'RUNNING',
    KnownStatus: 'RUNNING',
    Limits: { CPU: 2, Memory: 0 },
    CreatedAt: '2020-10-08T20:09:11.44527186Z',
    StartedAt: '2020-10-08T20:09:11.44527186Z',
    Type: 'NORMAL',
    Networks: [
      {
        NetworkMode: 'awsvpc',
        IPv4Addresses: [task.ipv4],
        AttachmentIndex: 0,
        MACAddress: '0e:9e:32:c7:48:85',
        IPv4SubnetCIDRBlock: '10.0.0.0/24',
        PrivateDNSName: `ip-${task.ipv4.replaceAll('.', '-')}.us-west-2.compute.internal`,
        SubnetGatewayIpv4Address: '10.0.0.1/24',
      },
    ],
    ContainerARN: `arn:aws:ecs:us-west-2:111122223333:container/${dockerId}`,
    LogOptions: {
      'awslogs-group': '/ecs/streamheal-gateway',
      'awslogs-region': 'us-west-2',
      'awslogs-stream': `gateway/${name}/${dockerId}`,
    },
    LogDriver: 'awslogs',
    Snapshotter: 'overlayfs',
  };
}

/** The `${ECS_CONTAINER_METADATA_URI_V4}/task` response for `task`. */
export function taskMetadata(task: EmulatedTask): Record<string, unknown> {
  const taskId = task.taskArn.slice(task.taskArn.lastIndexOf('/') + 1);
  return {
    Cluster: CLUSTER_ARN,
    TaskARN: task.taskArn,
    Family: 'streamheal-gateway',
    Revision: '3',
    DesiredStatus: 'RUNNING',
    KnownStatus: 'RUNNING',
    Limits: { CPU: 1, Memory: 2048 },
    PullStartedAt: '2020-10-08T20:47:16.053330955Z',
    PullStoppedAt: '2020-10-08T20:47:19.592684631Z',
    AvailabilityZone: 'us-west-2b',
    Containers: [
      container(task, 'gateway', `${taskId}-2495160603`),
      container(task, 'otel-collector', `${taskId}-3416810512`),
    ],
    LaunchType: 'FARGATE',
    ClockDrift: {
      ClockErrorBound: 0.446931,
      ReferenceTimestamp: '2020-10-08T20:45:00Z',
      ClockSynchronizationStatus: 'SYNCHRONIZED',
    },
    EphemeralStorageMetrics: { Utilized: 261, Reserved: 20496 },
  };
}

export class EcsMetadataEndpoint {
  private readonly tasks = new Map<string, EmulatedTask & { answered: number }>();
  private readonly sockets = new Set<Socket>();
  /** Paths requested, in order. */
  readonly requests: string[] = [];

  private constructor(
    private readonly server: Server,
    readonly base: string,
  ) {}

  static async start(): Promise<EcsMetadataEndpoint> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const endpoint = new EcsMetadataEndpoint(
      server,
      `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    );
    server.on('connection', (socket: Socket) => {
      endpoint.sockets.add(socket);
      socket.once('close', () => endpoint.sockets.delete(socket));
    });
    server.on('request', (req, res) => {
      const path = req.url ?? '/';
      endpoint.requests.push(path);
      const [, version, id, rest] = path.split('/');
      const task = version === 'v4' && id ? endpoint.tasks.get(id) : undefined;
      const send = (status: number, body: unknown) =>
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (!task || req.method !== 'GET') return send(404, { error: `no route for ${path}` });
      if (task.hang) return; // held open
      if (task.answered++ < (task.failFirst ?? 0)) return send(503, { error: 'not ready' });
      const metadata = taskMetadata(task);
      if (rest === 'task') return send(200, metadata);
      if (rest === undefined) return send(200, (metadata.Containers as unknown[])[0]);
      return send(404, { error: `no route for ${path}` });
    });
    return endpoint;
  }

  /** Serves `task`; returns its ECS_CONTAINER_METADATA_URI_V4 (`<base>/v4/<container id>`). */
  add(task: EmulatedTask): string {
    const containerId = `${task.taskArn.slice(task.taskArn.lastIndexOf('/') + 1)}-2495160603`;
    this.tasks.set(containerId, { ...task, answered: 0 });
    return `${this.base}/v4/${containerId}`;
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}
