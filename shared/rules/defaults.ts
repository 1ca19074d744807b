import type { RuleSet } from './types.js';

/**
 * The seed's node rules (chapter 1), as data. The control plane observes each health event
 * about a node and evaluates these for that node.
 *
 * Facts they read:
 *   pingTimedOut    boolean, one observation per ping of the node: true when no pong came back
 *                   in time, false when one did (a pong ends the run).
 *   cpuUtilisation  number 0–1, the node's process CPU, observed with every load report.
 *
 * Actions are names for the control plane to carry out; `reason` is the text of its log line
 * ("isolating gateway-01 due to CPU > 95% for 30s").
 */
export const SEED_NODE_RULES: RuleSet = {
  match: 'all',
  rules: [
    {
      name: 'ping-timeouts',
      description: '3 consecutive ping timeouts → mark the node unhealthy → migrate its sessions',
      when: { type: 'consecutive', count: 3, of: { type: 'fact', fact: 'pingTimedOut' } },
      then: {
        action: 'migrateSessions',
        markNode: 'unhealthy',
        reason: '3 consecutive ping timeouts',
      },
    },
    {
      name: 'cpu-overload',
      description: 'CPU > 95 % for 30 s → isolate the node',
      when: { type: 'thresholdFor', fact: 'cpuUtilisation', op: '>', value: 0.95, forMs: 30_000 },
      then: { action: 'isolate', reason: 'CPU > 95% for 30s' },
    },
  ],
};
