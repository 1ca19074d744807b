/**
 * Orchestrator processes as children of the local control process (`streamheal start --store
 * etcd`): one Supervisor child per orchestrator, each with its status server on its own port
 * (the Supervisor's readiness check calls its `/readyz`).
 */
import { fileURLToPath } from 'node:url';
import type { ChildSpec } from '../control/Supervisor.js';

export interface OrchestratorChildrenOptions {
  count: number;
  host: string;
  /** Port of `orchestrator-1`; `orchestrator-i` listens on `portBase + i - 1`. */
  portBase: number;
  /** The store and bus variables (workers/backends.ts `childBackendEnv`). */
  env: Record<string, string>;
  /** @default the compiled entry beside this module, ./main.js */
  script?: string;
}

export function orchestratorChildren(options: OrchestratorChildrenOptions): ChildSpec[] {
  const script = options.script ?? fileURLToPath(new URL('./main.js', import.meta.url));
  return Array.from({ length: options.count }, (_, i) => {
    const name = `orchestrator-${i + 1}`;
    const port = options.portBase + i;
    return {
      name,
      port,
      host: options.host,
      script,
      env: {
        ...options.env,
        STREAMHEAL_NODE_ID: name,
        STREAMHEAL_HOST: options.host,
        STREAMHEAL_PORT: String(port),
      },
    };
  });
}
