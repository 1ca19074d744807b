import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { errorCode } from '../../shared/errors.js';
import { RemoteStore } from '../../shared/link/RemoteStore.js';
import {
  CLOCK_SKEW_MS,
  CLUSTER_TARGET,
  MAX_REDIRECT_LIFETIME_MS,
  USED_TOKEN_PREFIX,
  isClusterTargeted,
  isRedirectTokenRefusal,
  parsePublicUrl,
  signRedirectToken,
  verifyRedirectToken,
  type RedirectGrant,
} from '../../shared/redirectTokens.js';
import { MemoryStore } from '../../shared/store/MemoryStore.js';
import { keyRingFromSecret, signToken } from '../../shared/tokens.js';
import { Closer, connect, startLink } from './link/linkHarness.js';

const ring = keyRingFromSecret('k1:first-secret-0123456789');
const grant: RedirectGrant = {
  sessionId: 'sess_abc123',
  sourceNode: 'gateway-1',
  targetNode: 'gateway-2',
};

/** The refusal's code, or 'accepted'. */
async function outcome(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'accepted';
  } catch (error) {
    return errorCode(error) ?? `untyped: ${String(error)}`;
  }
}

describe('redirect tokens', () => {
  const stores: MemoryStore[] = [];
  const newStore = () => {
    const store = new MemoryStore();
    stores.push(store);
    return store;
  };
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });

  it('carry the session, both nodes, the issue time and a unique id, and verify once at the target', async () => {
    // Arrange
    const store = newStore();
    const now = Date.now();

    // Act
    const { token, claims } = await signRedirectToken(ring, grant, { now });
    const verified = await verifyRedirectToken(ring, token, {
      expectedTarget: 'gateway-2',
      store,
      now: now + 10,
    });

    // Assess
    expect(verified).toEqual({
      ...grant,
      tokenId: claims.tokenId,
      issuedAt: now,
      expiresAt: now + MAX_REDIRECT_LIFETIME_MS,
      keyId: 'k1',
    });
    expect(claims.tokenId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    const other = await signRedirectToken(ring, grant, { now });
    expect(other.claims.tokenId).not.toBe(claims.tokenId);
    const used = await store.get(USED_TOKEN_PREFIX + claims.tokenId);
    expect(used?.value).toEqual({
      sessionId: 'sess_abc123',
      targetNode: 'gateway-2',
      usedAt: now + 10,
    });
  });

  it('refuses to sign a lifetime over 15 s, or none', async () => {
    await expect(signRedirectToken(ring, grant, { lifetimeMs: 15_001 })).rejects.toThrow(
      RangeError,
    );
    await expect(signRedirectToken(ring, grant, { lifetimeMs: 0 })).rejects.toThrow(RangeError);
    await expect(signRedirectToken(ring, { ...grant, targetNode: '' })).rejects.toThrow(
      /targetNode/,
    );
    const { claims } = await signRedirectToken(ring, grant, { lifetimeMs: 15_000, now: 1_000 });
    expect(claims.expiresAt - claims.issuedAt).toBe(15_000);
  });

  it('refuses a forged token: another key with the same key id, or a token of another purpose', async () => {
    const store = newStore();
    const forger = keyRingFromSecret('k1:not-the-cluster-secret-000');
    const { token: forged } = await signRedirectToken(forger, grant);
    expect(
      await outcome(verifyRedirectToken(ring, forged, { expectedTarget: 'gateway-2', store })),
    ).toBe('invalid_token');
    // A validly signed resume token with the same claim names is not a redirect token.
    const resume = await signToken(
      ring,
      'resume',
      { sid: 's', src: 'gateway-1', tgt: 'gateway-2', jti: 'aaaaaaaaaaaaaaaaaaaaaa' },
      10_000,
    );
    expect(
      await outcome(verifyRedirectToken(ring, resume, { expectedTarget: 'gateway-2', store })),
    ).toBe('invalid_token');
    // Signed with the right key but claiming a 60 s life: not something we issue.
    const long = await signToken(
      ring,
      'redirect',
      {
        sid: 's',
        src: 'gateway-1',
        tgt: 'gateway-2',
        jti: 'aaaaaaaaaaaaaaaaaaaaaa',
        iatMs: Date.now(),
        expMs: Date.now() + 60_000,
      },
      60_000,
    );
    await expect(
      verifyRedirectToken(ring, long, { expectedTarget: 'gateway-2', store }),
    ).rejects.toMatchObject({ code: 'invalid_token', message: expect.stringMatching(/60000 ms/) });
    expect(
      await outcome(
        verifyRedirectToken(ring, 'not.a.token', { expectedTarget: 'gateway-2', store }),
      ),
    ).toBe('invalid_token');
    expect(await store.list(USED_TOKEN_PREFIX)).toEqual([]);
  });

  it('refuses an expired token to the millisecond, and one issued in the future', async () => {
    const store = newStore();
    const now = 1_700_000_000_250;
    const { token } = await signRedirectToken(ring, grant, { lifetimeMs: 2_000, now });
    const at = (t: number) =>
      outcome(verifyRedirectToken(ring, token, { expectedTarget: 'gateway-2', store, now: t }));
    // exp (seconds, rounded up) still lies ahead at now + 2000: only the ms bound refuses it.
    expect(await at(now + 2_000)).toBe('token_expired');
    expect(await at(now + 20_000)).toBe('token_expired');
    expect(await at(now - CLOCK_SKEW_MS - 1)).toBe('invalid_token');
    expect(await at(now + 1_999)).toBe('accepted');
  });

  it('refuses a token presented to another gateway, without using it up', async () => {
    const store = newStore();
    const { token } = await signRedirectToken(ring, grant);
    await expect(
      verifyRedirectToken(ring, token, { expectedTarget: 'gateway-3', store }),
    ).rejects.toMatchObject({
      code: 'token_wrong_target',
      message: /for gateway-2, not gateway-3/,
    });
    expect(
      await outcome(verifyRedirectToken(ring, token, { expectedTarget: 'gateway-2', store })),
    ).toBe('accepted');
  });

  it('refuses a replay, and keeps the used id only a little past the expiry', async () => {
    let clock = 1_700_000_000_000;
    const store = new MemoryStore({ now: () => clock });
    stores.push(store);
    const { token, claims } = await signRedirectToken(ring, grant, {
      lifetimeMs: 5_000,
      now: clock,
    });
    const use = () =>
      verifyRedirectToken(ring, token, { expectedTarget: 'gateway-2', store, now: clock });
    expect(await outcome(use())).toBe('accepted');
    clock += 1_000;
    await expect(use()).rejects.toMatchObject({ code: 'token_replayed' });
    expect(isRedirectTokenRefusal(await use().catch((e: unknown) => e))).toBe(true);
    // The id stays while the token could still pass the expiry check, then goes.
    clock = claims.expiresAt + CLOCK_SKEW_MS - 1;
    expect(await store.get(USED_TOKEN_PREFIX + claims.tokenId)).toBeDefined();
    clock = claims.expiresAt + CLOCK_SKEW_MS + 1;
    expect(await store.get(USED_TOKEN_PREFIX + claims.tokenId)).toBeUndefined();
  });

  it('lets exactly one of many simultaneous uses through', async () => {
    const store = newStore();
    const { token } = await signRedirectToken(ring, grant);
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        outcome(verifyRedirectToken(ring, token, { expectedTarget: 'gateway-2', store })),
      ),
    );
    expect(results.filter((r) => r === 'accepted')).toHaveLength(1);
    expect(results.filter((r) => r === 'token_replayed')).toHaveLength(19);
  });

  it('lets exactly one of two gateways through when both present it at once over the control link', async () => {
    // Two gateway processes share the control process's store; here two link clients.
    const closer = new Closer();
    try {
      const backing = newStore();
      const link = closer.add(await startLink({ store: backing }));
      const a = new RemoteStore(closer.add(connect(link.url)));
      const b = new RemoteStore(closer.add(connect(link.url)));
      for (let round = 0; round < 20; round++) {
        const { token } = await signRedirectToken(ring, grant);
        const results = await Promise.all(
          [a, b].map((store) =>
            outcome(verifyRedirectToken(ring, token, { expectedTarget: 'gateway-2', store })),
          ),
        );
        expect(results.sort()).toEqual(['accepted', 'token_replayed']);
      }
    } finally {
      await closer.closeAll();
    }
  });

  it('verifies tokens of an older key still in the ring after rotation, and not once it is gone', async () => {
    const store = newStore();
    const { token: old } = await signRedirectToken(ring, grant);
    const rotated = keyRingFromSecret('k2:second-secret-0123456789,k1:first-secret-0123456789');
    const { token: fresh, claims } = await signRedirectToken(rotated, grant);
    expect(claims.keyId).toBe('k2');
    expect(
      await outcome(verifyRedirectToken(rotated, old, { expectedTarget: 'gateway-2', store })),
    ).toBe('accepted');
    expect(
      await outcome(verifyRedirectToken(rotated, fresh, { expectedTarget: 'gateway-2', store })),
    ).toBe('accepted');
    const retired = keyRingFromSecret('k2:second-secret-0123456789');
    const { token: older } = await signRedirectToken(ring, grant);
    await expect(
      verifyRedirectToken(retired, older, { expectedTarget: 'gateway-2', store }),
    ).rejects.toMatchObject({ code: 'invalid_token', message: /unknown key id k1/ });
  });

  it('refuses a token with any one character changed, added or removed', async () => {
    const now = Date.now();
    const { token } = await signRedirectToken(ring, grant, { now });
    const verify = (candidate: string) =>
      outcome(
        verifyRedirectToken(ring, candidate, {
          expectedTarget: 'gateway-2',
          store: newStore(),
          now,
        }),
      );
    expect(await verify(token)).toBe('accepted');
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: token.length - 1 }),
        fc.integer({ min: 0, max: 255 }),
        async (index, code) => {
          fc.pre(code !== token.charCodeAt(index));
          const changed =
            token.slice(0, index) + String.fromCharCode(code) + token.slice(index + 1);
          expect(await verify(changed)).toBe('invalid_token');
        },
      ),
      { numRuns: 400 },
    );
    // The signature's last character carries unused bits: every other character there is refused.
    const last = token.length - 1;
    for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_') {
      if (c === token[last]) continue;
      expect(await verify(token.slice(0, last) + c)).toBe('invalid_token');
    }
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: token.length }),
        fc.integer({ min: 0, max: 255 }),
        async (index, code) => {
          const inserted = token.slice(0, index) + String.fromCharCode(code) + token.slice(index);
          expect(await verify(inserted)).toBe('invalid_token');
          if (index < token.length) {
            expect(await verify(token.slice(0, index) + token.slice(index + 1))).toBe(
              'invalid_token',
            );
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('cluster-targeted redirect tokens (behind a load balancer)', () => {
  const stores: MemoryStore[] = [];
  const newStore = (options: ConstructorParameters<typeof MemoryStore>[0] = {}) => {
    const store = new MemoryStore(options);
    stores.push(store);
    return store;
  };
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
  });
  const toCluster: RedirectGrant = { ...grant, targetNode: CLUSTER_TARGET };

  it('is accepted once by any gateway but the source, and records which one used it', async () => {
    const store = newStore();
    const now = Date.now();
    const { token, claims } = await signRedirectToken(ring, toCluster, { now });
    expect(isClusterTargeted(claims)).toBe(true);
    const verified = await verifyRedirectToken(ring, token, {
      expectedTarget: 'gateway-7',
      store,
      now: now + 5,
    });
    expect(verified).toEqual({
      ...toCluster,
      tokenId: claims.tokenId,
      issuedAt: now,
      expiresAt: now + MAX_REDIRECT_LIFETIME_MS,
      keyId: 'k1',
    });
    expect((await store.get(USED_TOKEN_PREFIX + claims.tokenId))?.value).toEqual({
      sessionId: 'sess_abc123',
      targetNode: 'gateway-7',
      usedAt: now + 5,
    });
    // Another gateway of the cluster (same store) presented the same token: a replay.
    await expect(
      verifyRedirectToken(ring, token, { expectedTarget: 'gateway-2', store }),
    ).rejects.toMatchObject({ code: 'token_replayed' });
    await expect(
      verifyRedirectToken(ring, token, { expectedTarget: 'gateway-7', store }),
    ).rejects.toMatchObject({ code: 'token_replayed' });
  });

  it('is refused by its source (token_wrong_target) without being used up', async () => {
    const store = newStore();
    const { token } = await signRedirectToken(ring, toCluster);
    await expect(
      verifyRedirectToken(ring, token, { expectedTarget: 'gateway-1', store }),
    ).rejects.toMatchObject({
      code: 'token_wrong_target',
      message: expect.stringMatching(/off gateway-1 .*presented to gateway-1 itself/),
    });
    expect(await store.list(USED_TOKEN_PREFIX)).toEqual([]);
    // Refused again at the source, then good once elsewhere.
    expect(
      await outcome(verifyRedirectToken(ring, token, { expectedTarget: 'gateway-1', store })),
    ).toBe('token_wrong_target');
    expect(
      await outcome(verifyRedirectToken(ring, token, { expectedTarget: 'gateway-3', store })),
    ).toBe('accepted');
  });

  it('lets exactly one of many gateways through when all present it at once', async () => {
    const store = newStore();
    const { token } = await signRedirectToken(ring, toCluster);
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        outcome(verifyRedirectToken(ring, token, { expectedTarget: `gateway-${i + 2}`, store })),
      ),
    );
    expect(results.filter((r) => r === 'accepted')).toHaveLength(1);
    expect(results.filter((r) => r === 'token_replayed')).toHaveLength(11);
  });

  it('expires to the millisecond, and its used id goes shortly after', async () => {
    let clock = 1_700_000_000_000;
    const store = newStore({ now: () => clock });
    const { token, claims } = await signRedirectToken(ring, toCluster, {
      lifetimeMs: 3_000,
      now: clock,
    });
    const at = (t: number, node = 'gateway-2') =>
      outcome(verifyRedirectToken(ring, token, { expectedTarget: node, store, now: t }));
    expect(await at(clock + 3_000)).toBe('token_expired');
    expect(await at(clock + 3_000, 'gateway-1')).toBe('token_expired');
    expect(await at(clock + 2_999)).toBe('accepted');
    clock = claims.expiresAt + CLOCK_SKEW_MS + 1;
    expect(await store.get(USED_TOKEN_PREFIX + claims.tokenId)).toBeUndefined();
  });

  it('refuses forgeries: another key, a garbled token, a token naming "*" as its source', async () => {
    const store = newStore();
    const forger = keyRingFromSecret('k1:not-the-cluster-secret-000');
    const { token: forged } = await signRedirectToken(forger, toCluster);
    expect(
      await outcome(verifyRedirectToken(ring, forged, { expectedTarget: 'gateway-2', store })),
    ).toBe('invalid_token');
    const { token } = await signRedirectToken(ring, toCluster);
    const [header, payload, signature] = token.split('.');
    // The claims of a node-targeted token with this signature: the target is signed too.
    const retargeted = Buffer.from(
      JSON.stringify({
        ...(JSON.parse(Buffer.from(payload!, 'base64url').toString()) as object),
        tgt: 'gateway-2',
      }),
    ).toString('base64url');
    expect(
      await outcome(
        verifyRedirectToken(ring, `${header}.${retargeted}.${signature}`, {
          expectedTarget: 'gateway-2',
          store,
        }),
      ),
    ).toBe('invalid_token');
    // Validly signed, but "*" as the source: no gateway could be told apart from it.
    const starSource = await signToken(
      ring,
      'redirect',
      {
        sid: 's',
        src: CLUSTER_TARGET,
        tgt: CLUSTER_TARGET,
        jti: 'aaaaaaaaaaaaaaaaaaaaaa',
        iatMs: Date.now(),
        expMs: Date.now() + 5_000,
      },
      5_000,
    );
    await expect(
      verifyRedirectToken(ring, starSource, { expectedTarget: 'gateway-2', store }),
    ).rejects.toMatchObject({ code: 'invalid_token', message: /as its source/ });
    await expect(
      signRedirectToken(ring, { ...toCluster, sourceNode: CLUSTER_TARGET }),
    ).rejects.toThrow(RangeError);
    expect(await store.list(USED_TOKEN_PREFIX)).toEqual([]);
  });

  it('is never verified as "*": that is no gateway', async () => {
    const store = newStore();
    const { token } = await signRedirectToken(ring, toCluster);
    await expect(
      verifyRedirectToken(ring, token, { expectedTarget: CLUSTER_TARGET, store }),
    ).rejects.toThrow(RangeError);
  });

  it('leaves node-targeted tokens as they were: a cluster gateway cannot take one meant for another', async () => {
    const store = newStore();
    const { token } = await signRedirectToken(ring, grant);
    expect(
      await outcome(verifyRedirectToken(ring, token, { expectedTarget: 'gateway-3', store })),
    ).toBe('token_wrong_target');
    expect(
      await outcome(verifyRedirectToken(ring, token, { expectedTarget: 'gateway-2', store })),
    ).toBe('accepted');
  });
});

describe('parsePublicUrl', () => {
  it('takes ws, wss, http and https base URLs, without a trailing slash', () => {
    expect(parsePublicUrl('wss://push.example.com')).toBe('wss://push.example.com');
    expect(parsePublicUrl('wss://push.example.com/')).toBe('wss://push.example.com');
    expect(parsePublicUrl('ws://nlb-123.elb.eu-west-1.amazonaws.com:8080')).toBe(
      'ws://nlb-123.elb.eu-west-1.amazonaws.com:8080',
    );
    expect(parsePublicUrl('https://push.example.com:443/streamheal/')).toBe(
      'https://push.example.com/streamheal',
    );
    expect(parsePublicUrl(' http://127.0.0.1:9000 ')).toBe('http://127.0.0.1:9000');
  });

  it('refuses anything else, saying what is wrong', () => {
    const refusal = (text: string) => {
      try {
        parsePublicUrl(text);
        return 'accepted';
      } catch (error) {
        expect(error).toBeInstanceOf(RangeError);
        return (error as Error).message;
      }
    };
    expect(refusal('push.example.com')).toMatch(/is not a URL/);
    expect(refusal('ftp://push.example.com')).toMatch(/scheme ftp, not ws, wss, http or https/);
    expect(refusal('wss://user:pw@push.example.com')).toMatch(/credentials/);
    expect(refusal('wss://push.example.com/?a=1')).toMatch(/query or fragment/);
    expect(refusal('wss://push.example.com/#x')).toMatch(/query or fragment/);
    expect(refusal('wss://push.example.com/v1/ws')).toMatch(/\/v1\/ws endpoint/);
    expect(refusal('')).toMatch(/is not a URL/);
  });
});
