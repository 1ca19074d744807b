import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  API_V1,
  API_V2,
  CONVERSION_ANNOTATION,
  SESSION_PHASES,
  checkSessionCreate,
  checkSessionUpdate,
  convertStreamSession,
  formatIssue,
  isLegalTransition,
  mayFailOver,
  parseStreamSession,
  safeParseStreamSession,
  transitionSession,
  type SessionPhase,
  type StreamSession,
  type StreamSessionV1,
} from '../../../shared/records/index.js';

const session = (spec: Record<string, unknown> = {}, status?: Record<string, unknown>) => ({
  apiVersion: API_V2,
  kind: 'StreamSession',
  metadata: { name: 'sess_abc123' },
  spec: { sessionId: 'sess_abc123', clusterId: 'local', ...spec },
  ...(status ? { status } : {}),
});

function problems(data: unknown): string[] {
  const result = safeParseStreamSession(data);
  if (result.ok) throw new Error('expected validation to fail');
  return result.issues.map(formatIssue);
}

describe('StreamSession schema', () => {
  it('fills in the seed defaults and starts Pending', () => {
    const parsed = parseStreamSession(session());
    expect(parsed.spec).toEqual({
      sessionId: 'sess_abc123',
      clusterId: 'local',
      failoverPolicy: 'default',
      timeoutSeconds: 300,
      replicationLagThresholdMs: 500,
    });
    expect(parsed.status).toEqual({ phase: 'Pending', failoverAttempts: 0 });
  });

  it('names every problem with its path', () => {
    expect(
      problems(
        session(
          { sessionId: '', timeoutSeconds: 3601, replicationLagThresholdMs: -5, extra: true },
          { phase: 'Running', lastTransitionTime: 'yesterday' },
        ),
      ),
    ).toEqual([
      'spec.sessionId: must not be empty',
      'spec.timeoutSeconds: must be ≤ 3600',
      'spec.replicationLagThresholdMs: must be ≥ 0',
      'spec.extra: unknown field',
      'status.phase: must be one of "Pending", "Active", "Failed", "Terminated", got "Running"',
      'status.lastTransitionTime: must be an ISO 8601 UTC date-time (2025-01-31T12:00:00Z), got "yesterday"',
    ]);
    expect(problems({ ...session(), spec: { clusterId: 'local' } })).toEqual([
      'spec.sessionId: required',
    ]);
  });

  it('refuses updates that change an id, and phases that skip the state machine', () => {
    const active = parseStreamSession(session({ nodeId: 'gateway-1' }, { phase: 'Active' }));
    const withUid = { ...active, metadata: { ...active.metadata, uid: 'u1' } };
    const change = (spec: Partial<StreamSession['spec']>) => ({
      ...withUid,
      spec: { ...withUid.spec, ...spec },
    });
    expect(() => checkSessionUpdate(withUid, change({ sessionId: 'sess_other' }))).toThrow(
      'spec.sessionId: is immutable (was "sess_abc123", the update has "sess_other")',
    );
    expect(() => checkSessionUpdate(withUid, change({ clusterId: 'eu-1' }))).toThrow(
      /^spec\.clusterId: is immutable/,
    );
    expect(() =>
      checkSessionUpdate(withUid, { ...withUid, metadata: { name: 'sess_abc123', uid: 'u2' } }),
    ).toThrow(/^metadata\.uid: is immutable/);
    // The node holding it may change (that is what a move is).
    expect(() => checkSessionUpdate(withUid, change({ nodeId: 'gateway-2' }))).not.toThrow();
    const pending = { ...withUid, status: { ...withUid.status, phase: 'Pending' as const } };
    expect(() => checkSessionUpdate(withUid, pending)).toThrow(
      'status.phase: cannot go from "Active" to "Pending" (from "Active": "Failed", "Terminated")',
    );
    expect(() => checkSessionCreate(parseStreamSession(session({}, { phase: 'Failed' })))).toThrow(
      'status.phase: a new session starts "Pending" or "Active", not "Failed"',
    );
  });

  it('moves through phases with transitionSession, counting failovers', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    let s = parseStreamSession(session());
    const original = structuredClone(s);
    s = transitionSession(s, 'Active', { now, nodeId: 'gateway-1' });
    expect(s.status).toEqual({
      phase: 'Active',
      failoverAttempts: 0,
      lastTransitionTime: '2025-01-01T00:00:00.000Z',
    });
    expect(s.spec.nodeId).toBe('gateway-1');
    s = transitionSession(s, 'Failed', { now: now + 1, message: 'gateway-1 lost' });
    expect(mayFailOver(s, 3)).toBe(true);
    expect(mayFailOver(s, 0)).toBe(false);
    s = transitionSession(s, 'Active', { now: now + 2, nodeId: 'gateway-2' });
    expect(s.status.failoverAttempts).toBe(1);
    expect(s.status.message).toBeUndefined();
    // The same phase again (a repeated event) changes nothing.
    expect(transitionSession(s, 'Active', { now: now + 3 })).toEqual(s);
    s = transitionSession(s, 'Terminated', { now: now + 4 });
    expect(() => transitionSession(s, 'Active')).toThrow(
      'status.phase: cannot go from "Terminated" to "Active" ("Terminated" is final)',
    );
    expect(original).toEqual(parseStreamSession(session())); // the input was never changed
  });

  it('keeps, over any walk of requested phases, the machine and the failover count', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...SESSION_PHASES), { maxLength: 30 }), (wanted) => {
        let s = parseStreamSession(session());
        let failovers = 0;
        for (const to of wanted) {
          const from: SessionPhase = s.status.phase;
          if (isLegalTransition(from, to)) {
            s = transitionSession(s, to);
            if (from === 'Failed' && to === 'Active') failovers++;
          } else {
            expect(() => transitionSession(s, to)).toThrow(/cannot go from/);
          }
          expect(s.status.phase).toBe(isLegalTransition(from, to) ? to : from);
          if (from === 'Terminated') expect(s.status.phase).toBe('Terminated');
        }
        expect(s.status.failoverAttempts).toBe(failovers);
      }),
    );
  });
});

describe('StreamSession versions', () => {
  it('reads v1 as v2 (policy "default", 0 attempts) and keeps v2-only values through v1', () => {
    const v1 = { ...session(), apiVersion: API_V1 };
    expect(parseStreamSession(v1)).toMatchObject({
      apiVersion: API_V2,
      spec: { failoverPolicy: 'default' },
      status: { failoverAttempts: 0 },
    });
    const v2 = parseStreamSession(
      session({ failoverPolicy: 'strict' }, { phase: 'Active', failoverAttempts: 2 }),
    );
    const down = convertStreamSession(v2, 'v1');
    expect(down.metadata.annotations).toEqual({
      [CONVERSION_ANNOTATION]:
        '{"spec":{"failoverPolicy":"strict"},"status":{"failoverAttempts":2}}',
    });
    expect('failoverPolicy' in down.spec).toBe(false);
    expect(parseStreamSession(down)).toEqual(v2);
  });

  it('round-trips v2 → v1 → v2 and v1 → v2 → v1 for any valid session, through JSON', () => {
    fc.assert(
      fc.property(sessionV2(), (v2) => {
        const v1 = convertStreamSession(v2, 'v1');
        expect(parseStreamSession(JSON.parse(JSON.stringify(v1)))).toEqual(v2);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(sessionV2(), (source) => {
        const v1: StreamSessionV1 = convertStreamSession(
          {
            ...source,
            spec: { ...source.spec, failoverPolicy: 'default' },
            status: { ...source.status, failoverAttempts: 0 },
          },
          'v1',
        );
        expect(v1.metadata.annotations?.[CONVERSION_ANNOTATION]).toBeUndefined();
        const v2 = parseStreamSession(JSON.parse(JSON.stringify(v1)));
        expect(convertStreamSession(v2, 'v1')).toEqual(v1);
      }),
      { numRuns: 300 },
    );
  });
});

function sessionV2(): fc.Arbitrary<StreamSession> {
  const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,24}$/);
  return fc
    .record({
      name: fc.stringMatching(/^[a-z0-9](?:[a-z0-9._-]{0,20}[a-z0-9])?$/),
      uid: fc.option(fc.uuid(), { nil: undefined }),
      annotations: fc.dictionary(
        fc.stringMatching(/^[a-z][a-z./-]{0,12}$/).filter((k) => k !== CONVERSION_ANNOTATION),
        fc.string({ maxLength: 12 }),
        { maxKeys: 2 },
      ),
      sessionId: id,
      clusterId: id,
      nodeId: fc.option(id, { nil: undefined }),
      failoverPolicy: fc.constantFrom('default', 'strict', 'lenient.v2'),
      timeoutSeconds: fc.integer({ min: 30, max: 3600 }),
      replicationLagThresholdMs: fc.integer({ min: 0, max: 1_000_000 }),
      phase: fc.constantFrom(...SESSION_PHASES),
      failoverAttempts: fc.integer({ min: 0, max: 50 }),
      lastTransitionTime: fc.option(
        fc.integer({ min: 0, max: 4_000_000_000_000 }).map((t) => new Date(t).toISOString()),
        { nil: undefined },
      ),
      message: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
    })
    .map((r) => {
      const drop = <T extends object>(o: T) =>
        Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
      return parseStreamSession({
        apiVersion: API_V2,
        kind: 'StreamSession',
        metadata: drop({ name: r.name, uid: r.uid, annotations: r.annotations }),
        spec: drop({
          sessionId: r.sessionId,
          clusterId: r.clusterId,
          nodeId: r.nodeId,
          failoverPolicy: r.failoverPolicy,
          timeoutSeconds: r.timeoutSeconds,
          replicationLagThresholdMs: r.replicationLagThresholdMs,
        }),
        status: drop({
          phase: r.phase,
          failoverAttempts: r.failoverAttempts,
          lastTransitionTime: r.lastTransitionTime,
          message: r.message,
        }),
      });
    });
}
