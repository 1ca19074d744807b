/**
 * Gateway configuration from environment variables (the process contract used by the local
 * supervisor, the container image and the tests). Every value has a default for one machine.
 */
import { z } from 'zod';
import { CLUSTER_TARGET, parsePublicUrl } from '../../shared/redirectTokens.js';
import { DEFAULT_GATEWAY_HEARTBEAT } from './HeartbeatSweep.js';

const list = z.string().transform((s) =>
  s
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean),
);
const int = (def: number) => z.coerce.number().int().positive().default(def);

export const GatewayEnv = z.object({
  /** Default: the ECS task id on ECS, else `gateway-1` (ecsIdentity.ts). */
  STREAMHEAL_NODE_ID: z
    .string()
    .min(1)
    .refine((id) => id !== CLUSTER_TARGET, {
      message: `"${CLUSTER_TARGET}" is reserved (the target of cluster-wide redirect tokens)`,
    })
    .optional(),
  STREAMHEAL_HOST: z.string().default('127.0.0.1'),
  /**
   * Address other processes reach this gateway at, when STREAMHEAL_HOST is a wildcard
   * (0.0.0.0): its node record then says `<host>:<control port>` for the control service and
   * `http://<host>:<port>` for its URL. Default: the task's private IPv4 on ECS, else the
   * listening address.
   */
  STREAMHEAL_ADVERTISE_HOST: z.string().min(1).optional(),
  /** The URL in the node record (what moved clients are sent to), when not `http://<advertised host>:<port>`. */
  STREAMHEAL_ADVERTISE_URL: z.string().url().optional(),
  /**
   * The cluster's public endpoint, when clients reach the gateways through a load balancer and
   * not at their own URLs (AWS: the NLB, e.g. `wss://push.example.com`, `ws://<nlb dns>:<port>`):
   * moves then send clients there with tokens any other gateway of the cluster accepts
   * (docs/protocol.md "Moves"). ws, wss, http or https; a host, a port and a path prefix at most.
   */
  STREAMHEAL_PUBLIC_URL: z
    .string()
    .transform((text, ctx) => {
      if (text.trim() === '') return undefined; // set but empty: none
      try {
        return parsePublicUrl(text);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    })
    .optional(),
  /** Set by ECS (task metadata endpoint v4): the gateway reads its task id, ARN and IPv4 there. */
  ECS_CONTAINER_METADATA_URI_V4: z.string().url().optional(),
  /** Budget for reading the task metadata at start (retries included); the gateway exits after it. */
  STREAMHEAL_ECS_METADATA_TIMEOUT_MS: int(5000),
  STREAMHEAL_PORT: z.coerce.number().int().min(0).max(65535).default(8081),
  /** `memory`: a single node with its own store; `link`: the embedded store of the control process. */
  STREAMHEAL_STORE: z.enum(['memory', 'link']).default('memory'),
  STREAMHEAL_CONTROL_URL: z.string().url().default('ws://127.0.0.1:7070/v1/link'),
  /** Authenticates the control link and signs resume tokens; shared by the cluster. */
  STREAMHEAL_CLUSTER_SECRET: z.string().min(16).optional(),
  /** Bearer key required by POST /v1/publish. */
  STREAMHEAL_PUBLISH_KEY: z.string().min(8).optional(),
  /** Origins allowed to use the HTTP API from browsers (`*` for any). */
  STREAMHEAL_CORS_ORIGINS: list.default([]),
  STREAMHEAL_MAX_FRAME_BYTES: int(64 * 1024),
  STREAMHEAL_MAX_CHANNELS: int(100),
  STREAMHEAL_REQUESTS_PER_SECOND: int(50),
  /**
   * High-water mark of one client's queue: WebSocket delivery pauses above it (the fast path
   * then retries, and closes a client that stays blocked); an SSE stream is closed.
   */
  STREAMHEAL_MAX_BUFFERED_BYTES: int(1024 * 1024),
  /** SSE `retry:` field, the browser's reconnect delay. */
  STREAMHEAL_SSE_RETRY_MS: int(1000),
  /**
   * Application heartbeat (seed 3.1, docs/protocol.md "Heartbeat"): the gateway pings every
   * WebSocket client that answers this often; 0 turns the gateway's pings off (clients' pings
   * are still answered).
   */
  STREAMHEAL_HEARTBEAT_INTERVAL_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(DEFAULT_GATEWAY_HEARTBEAT.intervalMs),
  /** A ping unanswered this long is followed by another (a probe), and so on until a pong. */
  STREAMHEAL_HEARTBEAT_PROBE_MS: int(DEFAULT_GATEWAY_HEARTBEAT.probeMs),
  /** L1: a ping without a pong within this time is a miss; another is sent at once. */
  STREAMHEAL_PING_TIMEOUT_MS: int(DEFAULT_GATEWAY_HEARTBEAT.timeoutMs),
  /** L2: this many misses in a row mark the session degraded and close it as dead. */
  STREAMHEAL_HEARTBEAT_MISSES: int(DEFAULT_GATEWAY_HEARTBEAT.misses),
  /** Period of the one sweep that drives every session's heartbeat. */
  STREAMHEAL_HEARTBEAT_SWEEP_MS: int(DEFAULT_GATEWAY_HEARTBEAT.sweepMs),
  /** Phi-accrual suspicion level at which a session counts as suspect (metrics). */
  STREAMHEAL_PHI_THRESHOLD: z.coerce
    .number()
    .positive()
    .default(DEFAULT_GATEWAY_HEARTBEAT.phiThreshold),
  /** L3: TCP keepalive idle time on every accepted socket; 0 disables. */
  STREAMHEAL_TCP_KEEPALIVE_MS: z.coerce.number().int().min(0).default(1000),
  /** L3: TCP_USER_TIMEOUT, how long the kernel waits for unacknowledged data; 0 keeps the default. */
  STREAMHEAL_TCP_USER_TIMEOUT_MS: z.coerce.number().int().min(0).default(5000),
  /** Kernel TCP_INFO sweep interval (seed 2.1); 0 turns the sweeps off. */
  STREAMHEAL_KERNEL_SWEEP_MS: z.coerce.number().int().min(0).default(500),
  /** Delivery canary: a probe through publish and delivery this often; 0 turns it off. */
  STREAMHEAL_CANARY_INTERVAL_MS: z.coerce.number().int().min(0).default(1000),
  /**
   * Port of the gRPC control service (Reload, Drain, Migrate, Status; docs/protocol.md
   * "Gateway control service"); unset: no control service; 0: a free port.
   */
  STREAMHEAL_CONTROL_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  /** SIGTERM drains: sessions get this long to move to other gateways; 0 closes at once. */
  STREAMHEAL_DRAIN_MS: z.coerce.number().int().min(0).default(20_000),
  STREAMHEAL_HISTORY_MAX_COUNT: int(10_000),
  STREAMHEAL_HISTORY_MAX_AGE_MS: int(10 * 60_000),
  STREAMHEAL_LOG_LEVEL: z
    .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
    .default('info'),
});
export type GatewayEnv = z.infer<typeof GatewayEnv>;
