/**
 * Orchestrator configuration from environment variables. The store and bus variables
 * (STREAMHEAL_STORE=etcd, STREAMHEAL_ETCD_ENDPOINTS, ...) are read by workers/backends.ts.
 */
import { hostname } from 'node:os';
import { z } from 'zod';

const positive = (def: number) => z.coerce.number().int().positive().default(def);

export const OrchestratorEnv = z.object({
  /** Name in logs and in the leader record. @default orchestrator-<host>-<pid> */
  STREAMHEAL_NODE_ID: z
    .string()
    .min(1)
    .default(() => `orchestrator-${hostname()}-${process.pid}`),
  /** Address of the status server (`GET /healthz`, `/readyz`, `/v1/status`). */
  STREAMHEAL_HOST: z.string().default('127.0.0.1'),
  /** Port of the status server; 0 for a free one. */
  STREAMHEAL_PORT: z.coerce.number().int().min(0).max(65535).default(7071),
  /**
   * Election lease: a dead leader is replaced this long (up to ~0.5 s more) after its last
   * renewal. etcd counts whole seconds, at least 1.5 x its election timeout.
   */
  STREAMHEAL_ORCHESTRATOR_LEASE_MS: positive(2_000),
  /** How often the leader records how far it got. */
  STREAMHEAL_ORCHESTRATOR_CHECKPOINT_MS: positive(200),
  /** An event whose run never finished (its leader died) is run again after this long. */
  STREAMHEAL_ORCHESTRATOR_IN_PROGRESS_MS: positive(5_000),
  /** The FailoverPolicy that applies. */
  STREAMHEAL_POLICY_NAME: z.string().min(1).optional(),
  /**
   * An EventBridge bus decision events are forwarded to as well (AWS with the etcd store: the
   * alerting stack listens there). Endpoint and credentials: the AWS SDK's own variables.
   */
  STREAMHEAL_EVENT_BUS_NAME: z.string().min(1).optional(),
  /** How often dead-lettered alerts are sent again (by the leader). */
  STREAMHEAL_ALERT_REDELIVER_MS: positive(30_000),
  STREAMHEAL_LOG_LEVEL: z
    .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
    .default('info'),
});
export type OrchestratorEnv = z.infer<typeof OrchestratorEnv>;
