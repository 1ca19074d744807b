/**
 * `streamheal policy` as a real process against a real local cluster (`streamheal start`: the
 * control process with its embedded store, one gateway), on free loopback ports. What `apply`
 * stores is read back both through the CLI and straight from the control process's store over
 * the control link.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { LinkClient } from '../../../shared/link/LinkClient.js';
import { RemoteStore } from '../../../shared/link/RemoteStore.js';
import {
  API_V1,
  POLICY_PREFIX,
  defaultPolicy,
  type FailoverPolicy,
} from '../../../shared/records/index.js';
import type { ClusterFile } from '../../../workers/control/clusterFile.js';
import { runCli, startClusterProcess, type ClusterProcess } from '../../support/cluster.js';
import { ROOT, killPids } from '../../support/processes.js';

const EXAMPLE = join(ROOT, 'examples/policies/default.yaml');

/** A port nobody listens on right now (bound to 127.0.0.1:0, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('streamheal policy', () => {
  let cluster: ClusterProcess;
  let dir: string;
  let store: RemoteStore;
  let link: LinkClient;
  const pids = new Set<number>();

  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const policyCli = (args: string[], env?: Record<string, string>) =>
    cluster.cli(['policy', ...args], env);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'streamheal-policy-'));
    cluster = await startClusterProcess({
      controlPort: await freePort(),
      portBase: await freePort(),
      gateways: 1,
    });
    pids.add(cluster.pid);
    for (const pid of cluster.gatewayPids()) pids.add(pid);
    const file = JSON.parse(readFileSync(cluster.clusterFile, 'utf8')) as ClusterFile;
    link = new LinkClient({
      url: `${cluster.controlUrl.replace(/^http/, 'ws')}/v1/link`,
      secret: file.clusterSecret!,
    });
    store = new RemoteStore(link);
    await link.waitOpen(5_000);
  }, 60_000);

  afterAll(async () => {
    await store?.close();
    await link?.close();
    const left = cluster ? await cluster.stop() : [];
    killPids([...pids, ...left]);
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('validates the example policy offline', async () => {
    // Act
    const result = await runCli(['policy', 'validate', EXAMPLE]);

    // Assess
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${EXAMPLE}: failoverpolicy/default is valid\n`);
  });

  it('applies a file, then get shows it with its version; applying it again changes nothing', async () => {
    // Act
    const applied = await policyCli(['apply', EXAMPLE]);

    // Assess
    expect(applied.code, applied.stderr).toBe(0);
    const version = Number(
      /^failoverpolicy\/default created \(version (\d+)\)\n$/.exec(applied.stdout)?.[1],
    );
    expect(version).toBeGreaterThan(0);

    const list = await policyCli(['get']);
    expect(list.code, list.stderr).toBe(0);
    const [header, row] = list.stdout.trim().split('\n');
    expect(header!.split(/\s+/)).toEqual([
      'NAME',
      'VERSION',
      'MAX-ATTEMPTS',
      'AUTO-REJOIN',
      'TIMEOUT-S',
      'LAG-MS',
      'NODE-RULES',
      'STORED-AS',
    ]);
    expect(row!.split(/\s+/)).toEqual([
      'default',
      String(version),
      '3',
      'true',
      '300',
      '500',
      'ping-timeouts,cpu-overload',
      'v2',
    ]);

    const one = await policyCli(['get', 'default']);
    expect(one.code, one.stderr).toBe(0);
    const shown = parseYaml(one.stdout) as FailoverPolicy;
    const expected = defaultPolicy();
    expect(shown.spec).toEqual(expected.spec);
    expect(shown.metadata).toMatchObject({ name: 'default', resourceVersion: version });
    expect(shown.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);

    // Stored in the control process's store as v2, without the resourceVersion.
    const raw = await store.get<FailoverPolicy>(`${POLICY_PREFIX}default`);
    expect(raw?.version).toBe(version);
    expect(raw?.value).toEqual({
      ...expected,
      metadata: { name: 'default', uid: shown.metadata.uid },
    });

    const again = await policyCli(['apply', EXAMPLE]);
    expect(again.stdout).toBe(`failoverpolicy/default unchanged (version ${version})\n`);
  });

  it('updates a policy (a new version), shows it as v1 on request, and refuses a stale resourceVersion', async () => {
    const before = (await store.get(`${POLICY_PREFIX}default`))!.version;
    const changed = readFileSync(EXAMPLE, 'utf8').replace(
      'maxFailoverAttempts: 3',
      'maxFailoverAttempts: 5',
    );
    const applied = await policyCli(['apply', write('five.yaml', changed)]);
    expect(applied.code, applied.stderr).toBe(0);
    const version = Number(/configured \(version (\d+)\)/.exec(applied.stdout)?.[1]);
    expect(version).toBeGreaterThan(before);

    const json = await policyCli(['get', 'default', '-o', 'json']);
    expect((JSON.parse(json.stdout) as FailoverPolicy).spec.maxFailoverAttempts).toBe(5);
    const v1 = await policyCli(['get', 'default', '-o', 'json', '--api-version', 'v1']);
    const asV1 = JSON.parse(v1.stdout) as FailoverPolicy;
    expect(asV1.apiVersion).toBe(API_V1);
    expect('maxFailoverAttempts' in asV1.spec).toBe(false);
    expect(asV1.metadata.annotations).toEqual({
      'streamheal.io/conversion-data': '{"spec":{"maxFailoverAttempts":5}}',
    });

    const stale = changed.replace(
      '  name: default',
      `  name: default\n  resourceVersion: ${before}`,
    );
    const refused = await policyCli(['apply', write('stale.yaml', stale)]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      `failoverpolicy/default refused: it is no longer at version ${before} (metadata.resourceVersion)`,
    );
    expect((await store.get(`${POLICY_PREFIX}default`))!.version).toBe(version);
  });

  it('applies a v1 JSON file, storing it as v2 with maxFailoverAttempts 3', async () => {
    const file = write(
      'old.json',
      JSON.stringify({
        apiVersion: API_V1,
        kind: 'FailoverPolicy',
        metadata: { name: 'legacy' },
        spec: { autoRejoin: false, timeoutSeconds: 120 },
      }),
    );
    const applied = await policyCli(['apply', file]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toMatch(/^failoverpolicy\/legacy created \(version \d+\)\n$/);
    const raw = await store.get<FailoverPolicy>(`${POLICY_PREFIX}legacy`);
    expect(raw?.value.apiVersion).toBe('streamheal.io/v2');
    expect(raw?.value.spec).toMatchObject({
      autoRejoin: false,
      timeoutSeconds: 120,
      maxFailoverAttempts: 3,
    });
  });

  it('refuses an invalid file with exit code 2 and the exact path of every problem, storing nothing', async () => {
    const invalid = write(
      'invalid.yaml',
      [
        'apiVersion: streamheal.io/v2',
        'kind: FailoverPolicy',
        'metadata:',
        '  name: broken',
        'spec:',
        '  timeoutSeconds: 3601',
        '  nodeRules:',
        '    match: all',
        '    rules:',
        '      - name: cpu',
        '        when: { type: thresholdFor, fact: cpu, op: ">", value: 0.9, forMs: -1 }',
        '        then: { action: isolate }',
        '',
      ].join('\n'),
    );
    for (const verb of ['apply', 'validate']) {
      const result = await policyCli([verb, invalid]);
      expect(result.code, verb).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toBe(
        `streamheal: ${invalid} is not a valid policy file:\n` +
          `  ${invalid}:6:19: spec.timeoutSeconds: must be ≤ 3600\n` +
          `  ${invalid}:11:76: spec.nodeRules.rules[0].when.forMs: must be ≥ 0\n`,
      );
    }
    expect(await store.get(`${POLICY_PREFIX}broken`)).toBeUndefined();
    const missing = await policyCli(['get', 'broken']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('streamheal: no policy named "broken"\n');
    const unreadable = await policyCli(['validate', join(dir, 'nope.yaml')]);
    expect(unreadable.code).toBe(2);
    expect(unreadable.stderr).toMatch(/cannot read .*nope\.yaml: ENOENT/);
  });

  it('refuses the control link with a wrong cluster secret, storing nothing', async () => {
    const before = await store.get(`${POLICY_PREFIX}default`);
    const result = await policyCli(['apply', EXAMPLE], {
      STREAMHEAL_CONTROL_URL: cluster.controlUrl,
      STREAMHEAL_CLUSTER_SECRET: 'not-the-cluster-secret-0000',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/refused the control link \(is the cluster secret right\?\)/);
    expect(await store.get(`${POLICY_PREFIX}default`)).toEqual(before);
  });
});
