import { describe, expect, it } from 'vitest';
import { keyRingFromSecret, signToken, verifyToken } from '../../shared/tokens.js';

describe('tokens', () => {
  const ring = keyRingFromSecret('k1:first-secret-0123456789');

  it('round-trips claims and checks the purpose', async () => {
    const token = await signToken(ring, 'resume', { sub: 'session-1' }, 60_000);
    expect(await verifyToken(ring, 'resume', token)).toMatchObject({
      sub: 'session-1',
      pur: 'resume',
    });
    await expect(verifyToken(ring, 'redirect', token)).rejects.toMatchObject({
      code: 'invalid_token',
    });
  });

  it('refuses expired, forged and unknown-key tokens with distinct codes', async () => {
    const expired = await signToken(ring, 'resume', { sub: 's' }, 1_000, Date.now() - 5_000);
    await expect(verifyToken(ring, 'resume', expired)).rejects.toMatchObject({
      code: 'token_expired',
    });
    const other = await signToken(
      keyRingFromSecret('k1:another-secret-987654'),
      'resume',
      { sub: 's' },
      60_000,
    );
    await expect(verifyToken(ring, 'resume', other)).rejects.toMatchObject({
      code: 'invalid_token',
    });
    const unknownKid = await signToken(
      keyRingFromSecret('k9:first-secret-0123456789'),
      'resume',
      { sub: 's' },
      60_000,
    );
    await expect(verifyToken(ring, 'resume', unknownKid)).rejects.toThrow(/unknown key id k9/);
    await expect(verifyToken(ring, 'resume', 'a.b.c')).rejects.toMatchObject({
      code: 'invalid_token',
    });
  });

  it('verifies tokens of a previous key after rotation', async () => {
    const token = await signToken(ring, 'resume', { sub: 's' }, 60_000);
    const rotated = keyRingFromSecret('k2:second-secret-0123456789,k1:first-secret-0123456789');
    expect(rotated.current).toBe('k2');
    expect(await verifyToken(rotated, 'resume', token)).toMatchObject({ sub: 's' });
  });

  it('derives the same key id from the same bare secret in every process', () => {
    expect(keyRingFromSecret('a-bare-cluster-secret').current).toBe(
      keyRingFromSecret('a-bare-cluster-secret').current,
    );
    expect(() => keyRingFromSecret('k1:short')).toThrow(/at least 16/);
  });
});
