/**
 * The tokens function: issues redirect tokens a gateway's verifier accepts, with keys from the
 * environment, or from Secrets Manager (cached, rotated) through the real SDK client against a
 * local stand-in of the API.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { errorCode } from '../../../shared/errors.js';
import { CLUSTER_TARGET, verifyRedirectToken } from '../../../shared/redirectTokens.js';
import { MemoryStore } from '../../../shared/store/MemoryStore.js';
import { keyRingFromSecret } from '../../../shared/tokens.js';
import { handler, issueTokens } from '../../../functions/tokens/handler.js';
import { KeyRingSource } from '../../../functions/tokens/keyRing.js';
import { SecretsManagerEndpoint } from '../../support/secretsManagerEndpoint.js';

const K1 = 'k1:first-secret-0123456789';
const K2 = 'k2:second-secret-0123456789';
const grant = { sessionId: 'sess_abc123', sourceNode: 'gateway-1', targetNode: 'gateway-2' };

describe('tokens: keys from the environment', () => {
  const saved = process.env.STREAMHEAL_TOKEN_KEYS;
  afterAll(() => {
    if (saved === undefined) delete process.env.STREAMHEAL_TOKEN_KEYS;
    else process.env.STREAMHEAL_TOKEN_KEYS = saved;
  });

  it('issues a token the target gateway accepts once (Lambda entry)', async () => {
    process.env.STREAMHEAL_TOKEN_KEYS = `${K2},${K1}`;
    const { tokens } = await handler({ ...grant, lifetimeMs: 10_000 });
    expect(tokens).toHaveLength(1);
    expect(tokens[0]!.claims).toMatchObject({ ...grant, keyId: 'k2' });
    expect(tokens[0]!.claims.expiresAt - tokens[0]!.claims.issuedAt).toBe(10_000);
    const store = new MemoryStore();
    try {
      const ring = keyRingFromSecret(`${K1},${K2}`); // the gateway's ring: same keys, any order
      const claims = await verifyRedirectToken(ring, tokens[0]!.token, {
        expectedTarget: 'gateway-2',
        store,
      });
      expect(claims.sessionId).toBe('sess_abc123');
      const replay = await verifyRedirectToken(ring, tokens[0]!.token, {
        expectedTarget: 'gateway-2',
        store,
      }).catch(errorCode);
      expect(replay).toBe('token_replayed');
    } finally {
      await store.close();
    }
  });

  it('issues several at once, and refuses a grant over 15 s or with an empty id, issuing none', async () => {
    const keys = new KeyRingSource({ env: { STREAMHEAL_TOKEN_KEYS: K1 } });
    const { tokens } = await issueTokens(
      { grants: [grant, { ...grant, sessionId: 's2' }] },
      { keys },
    );
    expect(tokens.map((t) => t.claims.sessionId)).toEqual(['sess_abc123', 's2']);
    expect(new Set(tokens.map((t) => t.claims.tokenId)).size).toBe(2);
    await expect(issueTokens({ ...grant, lifetimeMs: 15_001 }, { keys })).rejects.toMatchObject({
      code: 'invalid_grant',
      message: expect.stringContaining('lifetimeMs'),
    });
    await expect(
      issueTokens({ grants: [grant, { ...grant, targetNode: '' }] }, { keys }),
    ).rejects.toMatchObject({
      code: 'invalid_grant',
      message: expect.stringContaining('grants.1.targetNode'),
    });
  });

  it('issues cluster-targeted tokens ("*"): any gateway but the source takes one, once', async () => {
    const keys = new KeyRingSource({ env: { STREAMHEAL_TOKEN_KEYS: K1 } });
    const { tokens } = await issueTokens({ ...grant, targetNode: CLUSTER_TARGET }, { keys });
    expect(tokens[0]!.claims).toMatchObject({ sourceNode: 'gateway-1', targetNode: '*' });
    const store = new MemoryStore();
    try {
      const ring = keyRingFromSecret(K1);
      const at = (node: string) =>
        verifyRedirectToken(ring, tokens[0]!.token, { expectedTarget: node, store }).then(
          () => 'accepted',
          errorCode,
        );
      expect(await at('gateway-1')).toBe('token_wrong_target');
      expect(await at('gateway-5')).toBe('accepted');
      expect(await at('gateway-2')).toBe('token_replayed');
    } finally {
      await store.close();
    }
    await expect(
      issueTokens({ grants: [grant, { ...grant, sourceNode: CLUSTER_TARGET }] }, { keys }),
    ).rejects.toMatchObject({
      code: 'invalid_grant',
      message: expect.stringContaining('grants.1.sourceNode'),
    });
  });

  it('falls back to the cluster secret, and says so when there is no key at all', async () => {
    const fallback = new KeyRingSource({
      env: { STREAMHEAL_CLUSTER_SECRET: 'cluster-secret-0123456789' },
    });
    expect(fallback.origin).toBe('cluster-secret');
    expect((await fallback.get()).keys.size).toBe(1);
    await expect(new KeyRingSource({ env: {} }).get()).rejects.toMatchObject({
      code: 'key_ring_unavailable',
    });
  });
});

describe('tokens: keys from Secrets Manager', () => {
  let endpoint: SecretsManagerEndpoint;
  const ARN = 'arn:aws:secretsmanager:us-east-1:111122223333:secret:streamheal/token-keys-AbCdEf';
  const sdkEnv = {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_ENDPOINT_URL_SECRETS_MANAGER: '',
  };
  const saved: Record<string, string | undefined> = {};
  const sources: KeyRingSource[] = [];

  beforeAll(async () => {
    endpoint = await SecretsManagerEndpoint.start();
    sdkEnv.AWS_ENDPOINT_URL_SECRETS_MANAGER = endpoint.url;
    for (const [name, value] of Object.entries(sdkEnv)) {
      saved[name] = process.env[name];
      process.env[name] = value;
    }
  });
  afterEach(() => {
    for (const source of sources.splice(0)) source.close();
  });
  afterAll(async () => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await endpoint.stop();
  });

  it('reads the ring once per cache period and picks up a rotation, old tokens still verifying', async () => {
    endpoint.secrets.set(ARN, K1);
    let now = 1_000_000;
    const keys = new KeyRingSource({
      env: { STREAMHEAL_TOKEN_KEYS_SECRET_ARN: ARN },
      cacheMs: 60_000,
      now: () => now,
    });
    sources.push(keys);
    expect(keys.origin).toBe('secretsmanager');
    const before = endpoint.calls;
    const old = (await issueTokens(grant, { keys })).tokens[0]!;
    await issueTokens(grant, { keys });
    expect(endpoint.calls - before).toBe(1);
    expect(old.claims.keyId).toBe('k1');

    // Rotation: the new key goes first, the old one stays until its tokens have expired.
    endpoint.secrets.set(ARN, JSON.stringify({ keys: `${K2},${K1}` }));
    now += 60_001;
    const fresh = (await issueTokens(grant, { keys })).tokens[0]!;
    expect(fresh.claims.keyId).toBe('k2');
    const gatewayRing = keyRingFromSecret(`${K2},${K1}`);
    const store = new MemoryStore();
    try {
      for (const token of [old, fresh]) {
        const claims = await verifyRedirectToken(gatewayRing, token.token, {
          expectedTarget: 'gateway-2',
          store,
          now: token.claims.issuedAt + 1,
        });
        expect(claims.tokenId).toBe(token.claims.tokenId);
      }
    } finally {
      await store.close();
    }
  });

  it('keeps signing with the cached ring while the secret cannot be read, and fails without one', async () => {
    let now = 2_000_000;
    endpoint.secrets.set(ARN, K1);
    const keys = new KeyRingSource({
      env: { STREAMHEAL_TOKEN_KEYS_SECRET_ARN: ARN },
      cacheMs: 1_000,
      now: () => now,
    });
    sources.push(keys);
    await keys.get();
    endpoint.secrets.delete(ARN);
    now += 1_001;
    expect((await keys.get()).current).toBe('k1');
    const cold = new KeyRingSource({ env: { STREAMHEAL_TOKEN_KEYS_SECRET_ARN: ARN } });
    sources.push(cold);
    await expect(cold.get()).rejects.toMatchObject({
      code: 'key_ring_unavailable',
      message: expect.stringContaining("can't find the specified secret"),
    });
  });
});
