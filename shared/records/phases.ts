/**
 * A session's phase (seed 4.1: `status.phase` is one of Pending | Active | Failed | Terminated)
 * and the edges between phases, as pure data and functions.
 *
 *   Pending ──► Active ──► Terminated
 *      │  ╲       │  ▲        ▲
 *      │   ╲      ▼  │        │
 *      │    ──► Failed ───────┘
 *      └──────────────────────┘ (Pending ──► Terminated)
 *
 * - Pending: known to the control plane, no gateway holds it yet.
 * - Active: a gateway holds it and delivers.
 * - Failed: its gateway was lost or isolated; it waits to resume elsewhere. Failed → Active is
 *   one failover (counted against the policy's `maxFailoverAttempts`).
 * - Terminated: closed by the client, idle past `timeoutSeconds`, or given up on. Final.
 *
 * Writing the phase a record already has is always allowed (a no-op), so an update repeated by
 * at-least-once delivery is not an error.
 */

export const SESSION_PHASES = ['Pending', 'Active', 'Failed', 'Terminated'] as const;
export type SessionPhase = (typeof SESSION_PHASES)[number];

/** Phases a session may be created in. */
export const INITIAL_PHASES: readonly SessionPhase[] = ['Pending', 'Active'];

const NEXT: Readonly<Record<SessionPhase, readonly SessionPhase[]>> = {
  Pending: ['Active', 'Failed', 'Terminated'],
  Active: ['Failed', 'Terminated'],
  Failed: ['Active', 'Terminated'],
  Terminated: [],
};

/** The phases reachable from `from` in one step (not counting `from` itself). */
export function nextPhases(from: SessionPhase): readonly SessionPhase[] {
  return NEXT[from];
}

/** Whether a session may go from `from` to `to`; staying in the same phase is allowed. */
export function isLegalTransition(from: SessionPhase, to: SessionPhase): boolean {
  return from === to || NEXT[from].includes(to);
}

export function isTerminal(phase: SessionPhase): boolean {
  return NEXT[phase].length === 0;
}

/** `Failed → Active` is a failover: the session resumed on another gateway. */
export function isFailover(from: SessionPhase, to: SessionPhase): boolean {
  return from === 'Failed' && to === 'Active';
}
