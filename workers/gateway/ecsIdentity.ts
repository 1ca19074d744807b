/**
 * Who a gateway is and where it is reached, on ECS and off it.
 *
 * On ECS (Fargate platform 1.4.0 and later) every container gets ECS_CONTAINER_METADATA_URI_V4,
 * the task metadata endpoint version 4; `${uri}/task` describes the task
 * (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v4-fargate.html):
 *   - node id: the task id (last segment of `TaskARN`), unique per task. Every task of the
 *     service gets the same environment, so STREAMHEAL_NODE_ID cannot tell them apart; and
 *     nodeLost names the node of a stopped task by its task id once the registration has gone
 *     with its lease (shared/control/nodeLost.ts).
 *   - `taskArn`: written in the node record; nodeLost finds the registration of a stopped task
 *     by it while the registration lives.
 *   - the task's private IPv4 (`Containers[].Networks[].IPv4Addresses`; awsvpc, one network
 *     interface shared by every container of the task): the gateway binds 0.0.0.0 there, so
 *     its node record advertises this address for its URL and control service instead.
 * Off ECS nothing is read: the node id is STREAMHEAL_NODE_ID (default `gateway-1`) and the
 * record holds the listening addresses, unless STREAMHEAL_ADVERTISE_HOST / _URL say otherwise.
 * On ECS and off it, STREAMHEAL_PUBLIC_URL (the load balancer clients use) is advertised beside
 * them: moves of this gateway's sessions redirect there (Gateway `advertise.publicUrl`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { StreamhealError } from '../../shared/errors.js';

export const DEFAULT_NODE_ID = 'gateway-1';

/** The task metadata endpoint did not answer in time, or not with a usable task. */
export class EcsMetadataError extends StreamhealError {
  constructor(message: string, options?: ErrorOptions) {
    super('ecs_metadata_unavailable', message, options);
  }
}

/** What a gateway takes from `${ECS_CONTAINER_METADATA_URI_V4}/task`. */
export interface EcsTask {
  taskArn: string;
  /** Last segment of the ARN (`arn:aws:ecs:<region>:<account>:task/<cluster>/<id>`). */
  taskId: string;
  /** Cluster ARN or name. */
  cluster?: string;
  availabilityZone?: string;
  /** The task's private IPv4 address (its awsvpc network interface). */
  privateIpv4: string;
}

/** Reads the task's identity out of a `/task` response; throws EcsMetadataError naming what is missing. */
export function parseTaskMetadata(body: unknown, from: string): EcsTask {
  const task = (body ?? {}) as Record<string, unknown>;
  const taskArn = task.TaskARN;
  if (typeof taskArn !== 'string' || !/^arn:[^:]+:ecs:[^:]*:[^:]*:task\/\S+$/.test(taskArn)) {
    throw new EcsMetadataError(`${from}: no task ARN in TaskARN (got ${JSON.stringify(taskArn)})`);
  }
  const networks: { mode: unknown; addresses: unknown }[] = [];
  for (const container of Array.isArray(task.Containers) ? task.Containers : []) {
    const list = (container as { Networks?: unknown }).Networks;
    for (const network of Array.isArray(list) ? list : []) {
      const { NetworkMode, IPv4Addresses } = network as Record<string, unknown>;
      networks.push({ mode: NetworkMode, addresses: IPv4Addresses });
    }
  }
  // awsvpc first: on EC2 a bridge network's address is the Docker bridge's, not reachable.
  networks.sort((a, b) => Number(b.mode === 'awsvpc') - Number(a.mode === 'awsvpc'));
  const privateIpv4 = networks
    .flatMap((network) => (Array.isArray(network.addresses) ? network.addresses : []))
    .find((address): address is string => typeof address === 'string' && address !== '');
  if (!privateIpv4) {
    throw new EcsMetadataError(
      `${from}: no IPv4 address in Containers[].Networks[].IPv4Addresses (the task needs awsvpc networking)`,
    );
  }
  return {
    taskArn,
    taskId: taskArn.slice(taskArn.lastIndexOf('/') + 1),
    ...(typeof task.Cluster === 'string' ? { cluster: task.Cluster } : {}),
    ...(typeof task.AvailabilityZone === 'string'
      ? { availabilityZone: task.AvailabilityZone }
      : {}),
    privateIpv4,
  };
}

export interface ReadEcsTaskOptions {
  /** Whole budget, retries included. @default 5000 */
  timeoutMs?: number;
  /** Pause between attempts. @default 200 */
  retryMs?: number;
}

/**
 * GET `${metadataUri}/task`, retried until `timeoutMs` (the endpoint is local to the task but
 * may not answer in the first moments of a container). Throws EcsMetadataError with the URL and
 * the last failure when no attempt succeeds in time.
 */
export async function readEcsTask(
  metadataUri: string,
  options: ReadEcsTaskOptions = {},
): Promise<EcsTask> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const url = `${metadataUri.replace(/\/+$/, '')}/task`;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(left) });
      const text = await response.text();
      if (!response.ok) throw new Error(`HTTP ${response.status}: ${text.slice(0, 200)}`);
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new Error(`not JSON: ${text.slice(0, 200)}`);
      }
      return parseTaskMetadata(body, url);
    } catch (error) {
      last = error;
    }
    await sleep(Math.min(options.retryMs ?? 200, Math.max(0, deadline - Date.now())));
  }
  const why =
    last instanceof Error && last.name === 'TimeoutError'
      ? 'no answer'
      : last instanceof Error
        ? last.message
        : String(last ?? 'no attempt');
  throw new EcsMetadataError(
    `ECS task metadata not read from ${url} within ${timeoutMs} ms (ECS_CONTAINER_METADATA_URI_V4): ${why}`,
    { cause: last },
  );
}

/** The variables of workers/gateway/config.ts that decide a gateway's identity. */
export interface IdentityEnv {
  STREAMHEAL_NODE_ID?: string | undefined;
  STREAMHEAL_ADVERTISE_HOST?: string | undefined;
  STREAMHEAL_ADVERTISE_URL?: string | undefined;
  /** The cluster's public endpoint (checked by config.ts), advertised as is. */
  STREAMHEAL_PUBLIC_URL?: string | undefined;
  STREAMHEAL_ECS_METADATA_TIMEOUT_MS?: number | undefined;
  ECS_CONTAINER_METADATA_URI_V4?: string | undefined;
}

export interface GatewayIdentity {
  nodeId: string;
  /** On ECS: the task's ARN, for the node record. */
  taskArn?: string;
  /**
   * For the Gateway's `advertise` option; absent when the listening addresses are meant and
   * there is no public URL.
   */
  advertise?: { host?: string; url?: string; publicUrl?: string };
  /** On ECS: what the metadata endpoint said. */
  ecs?: EcsTask;
}

/**
 * The gateway's node id, task ARN and advertised addresses. Explicit variables win over the
 * metadata: STREAMHEAL_NODE_ID over the task id, STREAMHEAL_ADVERTISE_HOST over the task's IPv4.
 */
export async function gatewayIdentity(env: IdentityEnv): Promise<GatewayIdentity> {
  const uri = env.ECS_CONTAINER_METADATA_URI_V4;
  const ecs = uri
    ? await readEcsTask(uri, {
        ...(env.STREAMHEAL_ECS_METADATA_TIMEOUT_MS === undefined
          ? {}
          : { timeoutMs: env.STREAMHEAL_ECS_METADATA_TIMEOUT_MS }),
      })
    : undefined;
  const host = env.STREAMHEAL_ADVERTISE_HOST ?? ecs?.privateIpv4;
  const url = env.STREAMHEAL_ADVERTISE_URL;
  const publicUrl = env.STREAMHEAL_PUBLIC_URL;
  return {
    nodeId: env.STREAMHEAL_NODE_ID ?? ecs?.taskId ?? DEFAULT_NODE_ID,
    ...(ecs ? { taskArn: ecs.taskArn, ecs } : {}),
    ...(host || url || publicUrl
      ? {
          advertise: {
            ...(host ? { host } : {}),
            ...(url ? { url } : {}),
            ...(publicUrl ? { publicUrl } : {}),
          },
        }
      : {}),
  };
}
