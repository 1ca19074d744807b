import { describe, expect, it } from 'vitest';
import {
  INITIAL_PHASES,
  SESSION_PHASES,
  isFailover,
  isLegalTransition,
  isTerminal,
  nextPhases,
  type SessionPhase,
} from '../../../shared/records/index.js';

describe('session phases', () => {
  it('allow exactly the state machine edges, and staying put', () => {
    const legal = new Set([
      'Pending→Active',
      'Pending→Failed',
      'Pending→Terminated',
      'Active→Failed',
      'Active→Terminated',
      'Failed→Active',
      'Failed→Terminated',
    ]);
    for (const from of SESSION_PHASES) {
      for (const to of SESSION_PHASES) {
        const expected = from === to || legal.has(`${from}→${to}`);
        expect(isLegalTransition(from, to), `${from}→${to}`).toBe(expected);
      }
    }
  });

  it('end in Terminated, start in Pending or Active, and count Failed → Active as a failover', () => {
    expect(SESSION_PHASES.filter(isTerminal)).toEqual(['Terminated']);
    expect(nextPhases('Terminated')).toEqual([]);
    expect(INITIAL_PHASES).toEqual(['Pending', 'Active']);
    const failovers: string[] = [];
    for (const from of SESSION_PHASES)
      for (const to of SESSION_PHASES) if (isFailover(from, to)) failovers.push(`${from}→${to}`);
    expect(failovers).toEqual(['Failed→Active']);
    // Every phase can reach Terminated: no session is stuck forever.
    const reaches = (from: SessionPhase, seen = new Set<SessionPhase>()): boolean =>
      from === 'Terminated' ||
      nextPhases(from).some((to) => !seen.has(to) && reaches(to, new Set([...seen, from])));
    for (const phase of SESSION_PHASES) expect(reaches(phase), phase).toBe(true);
  });
});
