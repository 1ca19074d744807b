/**
 * Signed tokens (HS256 JWS via `jose`) with a key ring: tokens name their key id, so keys
 * rotate without invalidating tokens signed by a previous key that is still in the ring.
 */
import { createHash, createSecretKey, type KeyObject } from 'node:crypto';
import { SignJWT, jwtVerify, errors } from 'jose';
import { StreamhealError } from './errors.js';

export interface KeyRing {
  /** Key id used for new tokens. */
  current: string;
  /** Key objects are made once: building one per signature showed up in connection setup. */
  keys: ReadonlyMap<string, KeyObject>;
}

/**
 * Builds a ring from `kid:secret,kid:secret` (the first is current) or a single bare secret
 * (key id derived from the secret's hash, so every process of a cluster agrees on it).
 */
export function keyRingFromSecret(spec: string): KeyRing {
  const entries = spec.includes(':')
    ? spec.split(',').map((pair) => {
        const at = pair.indexOf(':');
        return [pair.slice(0, at).trim(), pair.slice(at + 1).trim()] as const;
      })
    : [[createHash('sha256').update(spec).digest('hex').slice(0, 8), spec] as const];
  const keys = new Map<string, KeyObject>();
  for (const [kid, secret] of entries) {
    if (!kid || secret.length < 16)
      throw new Error(`key "${kid}" needs an id and at least 16 characters`);
    keys.set(kid, createSecretKey(Buffer.from(secret, 'utf8')));
  }
  return { current: entries[0]![0], keys };
}

export class TokenError extends StreamhealError {}

export async function signToken(
  ring: KeyRing,
  purpose: string,
  claims: Record<string, string | number>,
  lifetimeMs: number,
  now = Date.now(),
): Promise<string> {
  return new SignJWT({ ...claims, pur: purpose })
    .setProtectedHeader({ alg: 'HS256', kid: ring.current })
    .setIssuedAt(Math.floor(now / 1000))
    .setExpirationTime(Math.floor((now + lifetimeMs) / 1000))
    .sign(ring.keys.get(ring.current)!);
}

/** Verifies signature, key id, purpose and expiry; throws TokenError 'invalid_token' or 'token_expired'. */
export async function verifyToken(
  ring: KeyRing,
  purpose: string,
  token: string,
  now = Date.now(),
): Promise<Record<string, unknown>> {
  try {
    const { payload } = await jwtVerify(
      token,
      (header) => {
        const key = header.kid === undefined ? undefined : ring.keys.get(header.kid);
        if (!key) throw new TokenError('invalid_token', `unknown key id ${String(header.kid)}`);
        return key;
      },
      { algorithms: ['HS256'], currentDate: new Date(now) },
    );
    if (payload.pur !== purpose)
      throw new TokenError('invalid_token', `token is not a ${purpose} token`);
    return payload;
  } catch (error) {
    if (error instanceof TokenError) throw error;
    if (error instanceof errors.JWTExpired)
      throw new TokenError('token_expired', 'token expired', { cause: error });
    throw new TokenError('invalid_token', 'token is forged or garbled', { cause: error });
  }
}
