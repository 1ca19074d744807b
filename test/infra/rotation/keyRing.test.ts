import { describe, expect, it } from 'vitest';
import {
  derivedKid,
  formatRing,
  newKey,
  parseRing,
  rotateRing,
} from '../../../infra/rotation/keyRing.js';
import { keyRingFromSecret, signToken, verifyToken } from '../../../shared/tokens.js';

const bare = 'Gq7mZ2xVb9nK4pL1sT8wR3yH6jD0fC5a';
let clock = Date.parse('2026-01-01T00:00:00Z');
const fresh = () => {
  clock += 30 * 24 * 3600_000;
  return newKey(new Date(clock));
};

describe('key ring rotation', () => {
  it('reads a bare secret as shared/tokens.ts does: one key, id derived from the secret', () => {
    const [key] = parseRing(bare);
    expect(key).toEqual({ kid: derivedKid(bare), secret: bare });
    expect(keyRingFromSecret(bare).current).toBe(key!.kid);
  });

  it('stages a key first, then promotes it and keeps the previous signer: [current, staged, previous]', () => {
    const first = fresh();
    const once = rotateRing(parseRing(bare), first);
    expect(once.map((k) => k.kid)).toEqual([derivedKid(bare), first.kid]);
    const second = fresh();
    const twice = rotateRing(once, second);
    expect(twice.map((k) => k.kid)).toEqual([first.kid, second.kid, derivedKid(bare)]);
    const third = fresh();
    const thrice = rotateRing(twice, third);
    expect(thrice.map((k) => k.kid)).toEqual([second.kid, third.kid, first.kid]);
  });

  it('never lets a reader one rotation behind meet a token it cannot verify, nor accept a retired key', async () => {
    let stored = bare;
    const history: string[] = [stored];
    for (let i = 0; i < 4; i++) {
      stored = formatRing(rotateRing(parseRing(stored), fresh()));
      history.push(stored);
    }
    for (let i = 1; i < history.length; i++) {
      const signer = keyRingFromSecret(history[i]!);
      const behind = keyRingFromSecret(history[i - 1]!);
      const ahead = i + 1 < history.length ? keyRingFromSecret(history[i + 1]!) : undefined;
      const token = await signToken(signer, 'redirect', { sid: 's1' }, 15_000);
      // A reader that has not refreshed since the previous rotation already holds the signer.
      await expect(verifyToken(behind, 'redirect', token)).resolves.toMatchObject({ sid: 's1' });
      // A reader one rotation ahead still holds it as "previous".
      if (ahead) await expect(verifyToken(ahead, 'redirect', token)).resolves.toBeTruthy();
    }
    // Two rotations on, a key is gone for good.
    const old = await signToken(keyRingFromSecret(history[1]!), 'redirect', { sid: 's1' }, 15_000);
    await expect(
      verifyToken(keyRingFromSecret(history[4]!), 'redirect', old),
    ).rejects.toMatchObject({
      code: 'invalid_token',
    });
  });

  it('makes keys shared/tokens.ts accepts, with time-ordered unique ids', () => {
    const a = newKey(new Date('2026-03-01T10:00:00Z'));
    expect(a.kid).toBe('k20260301100000');
    expect(a.secret.length).toBeGreaterThanOrEqual(32);
    expect(() => keyRingFromSecret(formatRing([a]))).not.toThrow();
    expect(() => rotateRing([a], { ...a })).toThrow(/already in the ring/);
  });

  it('refuses what shared/tokens.ts would refuse, naming the problem', () => {
    expect(() => parseRing('')).toThrow(/empty/);
    expect(() => parseRing('short')).toThrow(/shorter than 16/);
    expect(() => parseRing('a:0123456789abcdef,a:fedcba9876543210')).toThrow(/unique/);
    expect(() => parseRing(':0123456789abcdef')).toThrow(/no id/);
    expect(() =>
      rotateRing(parseRing(bare), { kid: 'k1', secret: 'has,comma-0123456789' }),
    ).toThrow(/separator/);
  });
});
