import { afterEach, describe, expect, it } from 'vitest';
import { errorCode } from '../../../shared/errors.js';
import {
  API_V1,
  API_V2,
  POLICY_PREFIX,
  RecordRepository,
  SESSION_PREFIX,
  defaultPolicy,
  failoverPolicyV2ToV1,
  transitionSession,
  type FailoverPolicy,
  type RecordWatchEvent,
} from '../../../shared/records/index.js';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';

const policyFile = (spec: Record<string, unknown> = {}, name = 'default') => ({
  apiVersion: API_V2,
  kind: 'FailoverPolicy',
  metadata: { name },
  spec,
});

const sessionFile = (phase = 'Active', name = 's1') => ({
  apiVersion: API_V2,
  kind: 'StreamSession',
  metadata: { name },
  spec: { sessionId: name, clusterId: 'local', nodeId: 'gateway-1' },
  status: { phase },
});

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return errorCode(error);
  }
}

describe('RecordRepository', () => {
  let store: MemoryStore;
  const repo = () => {
    let uids = 0;
    return new RecordRepository(store, { newUid: () => `uid-${++uids}` });
  };

  afterEach(async () => {
    await store.close();
  });

  it('creates, leaves unchanged, and updates policies, storing v2 without resourceVersion', async () => {
    // Arrange
    store = new MemoryStore();
    const records = repo();

    // Act
    const created = await records.putPolicy(policyFile());
    const again = await records.putPolicy(policyFile());
    const updated = await records.putPolicy(policyFile({ maxFailoverAttempts: 5 }));

    // Assess
    expect(created.outcome).toBe('created');
    expect(created.record.metadata).toEqual({
      name: 'default',
      uid: 'uid-1',
      resourceVersion: created.version,
    });
    expect(created.record.spec).toEqual(defaultPolicy().spec);
    expect(again).toMatchObject({ outcome: 'unchanged', version: created.version });
    expect(updated.outcome).toBe('updated');
    expect(updated.version).toBeGreaterThan(created.version);
    expect(updated.record.metadata.uid).toBe('uid-1');
    const raw = await store.get<FailoverPolicy>(`${POLICY_PREFIX}default`);
    expect(raw?.value.apiVersion).toBe(API_V2);
    expect(raw?.value.metadata).toEqual({ name: 'default', uid: 'uid-1' });
    expect(raw?.value.spec.maxFailoverAttempts).toBe(5);
    const got = await records.getPolicy('default');
    expect(got).toEqual({ record: updated.record, version: updated.version, storedAs: 'v2' });
    expect(await records.getPolicy('missing')).toBeUndefined();
  });

  it('refuses invalid records and changed ids, naming the path', async () => {
    store = new MemoryStore();
    const records = repo();
    await records.putPolicy(policyFile());
    await expect(records.putPolicy(policyFile({ timeoutSeconds: 4000 }))).rejects.toMatchObject({
      code: 'invalid_record',
      message: 'spec.timeoutSeconds: must be ≤ 3600',
    });
    const withUid = { ...policyFile(), metadata: { name: 'default', uid: 'another' } };
    await expect(records.putPolicy(withUid)).rejects.toMatchObject({
      code: 'immutable_field',
      message: 'metadata.uid: is immutable (was "uid-1", the update has "another")',
    });
    expect((await records.getPolicy('default'))?.record.spec.timeoutSeconds).toBe(300);
  });

  it('writes conditionally: a pinned version (option or resourceVersion) must still be current', async () => {
    store = new MemoryStore();
    const records = repo();
    const first = await records.putPolicy(policyFile());
    await records.putPolicy(policyFile({ autoRejoin: false }));
    expect(await codeOf(records.putPolicy(policyFile(), { ifVersion: first.version }))).toBe(
      'condition_failed',
    );
    const stale = {
      ...policyFile(),
      metadata: { name: 'default', resourceVersion: first.version },
    };
    expect(await codeOf(records.putPolicy(stale))).toBe('condition_failed');
    expect(await codeOf(records.putPolicy(policyFile({}, 'new'), { ifVersion: 0 }))).toBe('ok');
    expect(await codeOf(records.putPolicy(policyFile({}, 'new'), { ifVersion: 0 }))).toBe(
      'condition_failed',
    );
    // A record read back can be written back: its resourceVersion is the condition.
    const current = (await records.getPolicy('default'))!.record;
    current.spec.timeoutSeconds = 600;
    expect((await records.putPolicy(current)).outcome).toBe('updated');
    expect(await codeOf(records.putPolicy(current))).toBe('condition_failed');
  });

  it('lets exactly one of two writers pinned to the same version win; unpinned writers both land', async () => {
    store = new MemoryStore();
    const records = repo();
    const { version } = await records.putPolicy(policyFile());
    const pinned = await Promise.all([
      codeOf(records.putPolicy(policyFile({ timeoutSeconds: 100 }), { ifVersion: version })),
      codeOf(records.putPolicy(policyFile({ timeoutSeconds: 200 }), { ifVersion: version })),
    ]);
    expect(pinned.sort()).toEqual(['condition_failed', 'ok']);
    const [a, b] = await Promise.all([
      records.putPolicy(policyFile({ timeoutSeconds: 1000 })),
      new RecordRepository(store).putPolicy(policyFile({ timeoutSeconds: 2000 })),
    ]);
    expect([a.outcome, b.outcome]).toEqual(['updated', 'updated']);
    const last = a.version > b.version ? a : b;
    expect((await records.getPolicy('default'))?.record.spec.timeoutSeconds).toBe(
      last.record.spec.timeoutSeconds,
    );
  });

  it('reads policies stored as v1 and rewrites them as v2 on the next write', async () => {
    store = new MemoryStore();
    const records = repo();
    const v1 = failoverPolicyV2ToV1({
      ...defaultPolicy(),
      metadata: { name: 'old', uid: 'u-old' },
    });
    await store.put(`${POLICY_PREFIX}old`, v1);
    const read = await records.getPolicy('old');
    expect(read?.storedAs).toBe('v1');
    expect(read?.record.apiVersion).toBe(API_V2);
    expect(read?.record.spec.maxFailoverAttempts).toBe(3);
    // Same content, but stored in an old version: written again, as v2.
    const put = await records.putPolicy({ ...policyFile({}, 'old'), apiVersion: API_V1 });
    expect(put.outcome).toBe('updated');
    expect((await store.get<{ apiVersion: string }>(`${POLICY_PREFIX}old`))?.value.apiVersion).toBe(
      API_V2,
    );
    expect((await records.listPolicies()).map((p) => [p.record.metadata.name, p.storedAs])).toEqual(
      [['old', 'v2']],
    );
  });

  it('reports a record that something else wrote into its prefix as invalid', async () => {
    store = new MemoryStore();
    await store.put(`${POLICY_PREFIX}broken`, { apiVersion: API_V2, kind: 'FailoverPolicy' });
    await store.put(`${POLICY_PREFIX}renamed`, policyFile());
    await expect(repo().getPolicy('broken')).rejects.toMatchObject({
      code: 'invalid_stored_record',
      message: `metadata: required (stored at ${POLICY_PREFIX}broken)`,
    });
    await expect(repo().getPolicy('renamed')).rejects.toMatchObject({
      code: 'invalid_stored_record',
      message: /metadata\.name: must be "renamed"/,
    });
  });

  it('tells watchers about validated policy puts and deletes', async () => {
    store = new MemoryStore();
    const records = repo();
    const events: RecordWatchEvent<FailoverPolicy>[] = [];
    const invalid: string[] = [];
    const watch = await records.watchPolicies(
      (event) => events.push(event),
      (error) => invalid.push(error.key),
    );
    const { version } = await records.putPolicy(policyFile({ maxFailoverAttempts: 9 }));
    await store.put(`${POLICY_PREFIX}junk`, { nope: true });
    await records.deletePolicy('default');
    await new Promise((resolve) => setImmediate(resolve));
    watch.close();
    expect(events.map((e) => (e.type === 'put' ? [e.type, e.version] : [e.type, e.name]))).toEqual([
      ['put', version],
      ['delete', 'default'],
    ]);
    expect(events[0]?.type === 'put' && events[0].record.spec.maxFailoverAttempts).toBe(9);
    expect(invalid).toEqual([`${POLICY_PREFIX}junk`]);
  });

  it('keeps session ids immutable and phases on the state machine', async () => {
    store = new MemoryStore();
    const records = repo();
    expect(await codeOf(records.putSession(sessionFile('Failed')))).toBe('illegal_transition');
    const created = await records.putSession(sessionFile('Active'));
    expect(created.record.metadata.uid).toBe('uid-1');
    expect(await codeOf(records.putSession(sessionFile('Pending')))).toBe('illegal_transition');
    const moved = { ...sessionFile('Active'), spec: { ...sessionFile().spec, clusterId: 'eu' } };
    expect(await codeOf(records.putSession(moved))).toBe('immutable_field');
    expect((await records.putSession(sessionFile('Failed'))).outcome).toBe('updated');
    expect((await store.get(`${SESSION_PREFIX}s1`))?.value).toMatchObject({
      status: { phase: 'Failed' },
    });
  });

  it('updates sessions from their current state, once, under concurrent updaters', async () => {
    store = new MemoryStore();
    const records = repo();
    await records.putSession(sessionFile('Active'));
    await records.putSession(sessionFile('Failed'));
    // Two deciders both resume the failed session: one failover, not two.
    const results = await Promise.all(
      ['gateway-2', 'gateway-3'].map((nodeId) =>
        records.updateSession('s1', (s) =>
          s.status.phase === 'Failed' ? transitionSession(s, 'Active', { nodeId }) : s,
        ),
      ),
    );
    expect(results.map((r) => r?.outcome).sort()).toEqual(['unchanged', 'updated']);
    const final = (await records.getSession('s1'))!.record;
    expect(final.status).toMatchObject({ phase: 'Active', failoverAttempts: 1 });
    expect(await records.updateSession('missing', (s) => s)).toBeUndefined();
    expect((await records.listSessions()).map((s) => s.record.metadata.name)).toEqual(['s1']);
  });
});
