/**
 * Redirect tokens (seed 4.3): the control plane signs one for a session it moves; the client
 * presents it to the target gateway, which verifies it and lets the session in exactly once.
 *
 * A token is a compact JWS (HS256) signed with the cluster's key ring (shared/tokens.ts), its
 * header naming the key id, so keys rotate without dropping tokens signed by an older key
 * still in the ring. Claims:
 *   pur    "redirect"
 *   sid    session id            src  source node       tgt  target node
 *   jti    unique token id (128 random bits, base64url)
 *   iatMs  issue time, ms        expMs  expiry, ms (at most 15 s after iatMs)
 *   iat, exp  the same in seconds (exp rounded up), for JWT tooling
 *
 * Verification refuses, with a distinct code each:
 *   invalid_token       not in canonical compact form, bad signature, unknown key id, not a
 *                       redirect token, malformed claims, lifetime over 15 s, issued in the future
 *   token_expired       now ≥ expMs
 *   token_wrong_target  tgt is not the gateway verifying it
 *   token_replayed      its id was used already: the first use writes `tokens/<jti>` with
 *                       `ifVersion: 0` (and a TTL past the expiry), so of two uses, even at the
 *                       same instant on two gateways sharing the store, exactly one succeeds.
 * A store that cannot be reached fails the verification (StoreUnavailableError): single use
 * cannot be promised without it.
 */
import { randomBytes } from 'node:crypto';
import { SignJWT, decodeProtectedHeader } from 'jose';
import { errorCode } from './errors.js';
import type { StateStore } from './store/StateStore.js';
import { TokenError, verifyToken, type KeyRing } from './tokens.js';

export const REDIRECT_PURPOSE = 'redirect';
/** The seed's bound: a redirect token lives at most 15 s. */
export const MAX_REDIRECT_LIFETIME_MS = 15_000;
/** Where used token ids are kept (until shortly after the token expires). */
export const USED_TOKEN_PREFIX = 'tokens/';
/**
 * Clock difference tolerated between the signer and the verifiers: a token may say it was
 * issued this far in the future, and its used id is kept this long past its expiry.
 */
export const CLOCK_SKEW_MS = 1_000;

const TOKEN_ID = /^[A-Za-z0-9_-]{16,64}$/;
const MAX_ID_LENGTH = 200;

/** What a redirect token grants: this session may move from the source node to the target. */
export interface RedirectGrant {
  sessionId: string;
  sourceNode: string;
  targetNode: string;
}

export interface RedirectClaims extends RedirectGrant {
  tokenId: string;
  /** Milliseconds since the epoch. */
  issuedAt: number;
  expiresAt: number;
  /** Key id that signed it. */
  keyId: string;
}

export interface SignRedirectOptions {
  /** @default 15_000 (the maximum) */
  lifetimeMs?: number;
  /** @default Date.now() */
  now?: number;
}

/** Signs a redirect token; refuses (RangeError) a lifetime over 15 s or empty ids. */
export async function signRedirectToken(
  ring: KeyRing,
  grant: RedirectGrant,
  options: SignRedirectOptions = {},
): Promise<{ token: string; claims: RedirectClaims }> {
  const lifetimeMs = options.lifetimeMs ?? MAX_REDIRECT_LIFETIME_MS;
  if (!Number.isFinite(lifetimeMs) || lifetimeMs <= 0 || lifetimeMs > MAX_REDIRECT_LIFETIME_MS) {
    throw new RangeError(
      `redirect token lifetime must be > 0 and ≤ ${MAX_REDIRECT_LIFETIME_MS} ms, not ${lifetimeMs}`,
    );
  }
  for (const field of ['sessionId', 'sourceNode', 'targetNode'] as const) {
    const value = grant[field];
    if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH) {
      throw new RangeError(`redirect token ${field} must be 1–${MAX_ID_LENGTH} characters`);
    }
  }
  const now = options.now ?? Date.now();
  const claims: RedirectClaims = {
    ...grant,
    tokenId: randomBytes(16).toString('base64url'),
    issuedAt: now,
    expiresAt: now + lifetimeMs,
    keyId: ring.current,
  };
  const token = await new SignJWT({
    pur: REDIRECT_PURPOSE,
    sid: claims.sessionId,
    src: claims.sourceNode,
    tgt: claims.targetNode,
    iatMs: claims.issuedAt,
    expMs: claims.expiresAt,
  })
    .setProtectedHeader({ alg: 'HS256', kid: ring.current })
    .setJti(claims.tokenId)
    .setIssuedAt(Math.floor(claims.issuedAt / 1000))
    // Rounded up, so the JWT check never cuts a token short; expMs is the exact bound.
    .setExpirationTime(Math.ceil(claims.expiresAt / 1000))
    .sign(ring.keys.get(ring.current)!);
  return { token, claims };
}

export interface VerifyRedirectOptions {
  /** The gateway verifying: the token must name it as its target. */
  expectedTarget: string;
  /** Where token ids are marked used (shared by every gateway of the cluster). */
  store: StateStore;
  /** @default Date.now() */
  now?: number;
}

/**
 * Verifies a redirect token and uses it up. Resolves with its claims, or throws TokenError
 * with code invalid_token, token_expired, token_wrong_target or token_replayed.
 */
export async function verifyRedirectToken(
  ring: KeyRing,
  token: string,
  options: VerifyRedirectOptions,
): Promise<RedirectClaims> {
  const now = options.now ?? Date.now();
  if (typeof token !== 'string' || !isCanonicalCompact(token)) {
    throw new TokenError('invalid_token', 'token is forged or garbled');
  }
  const payload = await verifyToken(ring, REDIRECT_PURPOSE, token, now);
  const claims = readClaims(payload, decodeProtectedHeader(token).kid);
  if (claims.issuedAt > now + CLOCK_SKEW_MS) {
    throw new TokenError('invalid_token', 'redirect token is issued in the future');
  }
  if (now >= claims.expiresAt) throw new TokenError('token_expired', 'token expired');
  if (claims.targetNode !== options.expectedTarget) {
    throw new TokenError(
      'token_wrong_target',
      `token is for ${claims.targetNode}, not ${options.expectedTarget}`,
    );
  }
  try {
    await options.store.put(
      USED_TOKEN_PREFIX + claims.tokenId,
      { sessionId: claims.sessionId, targetNode: claims.targetNode, usedAt: now },
      { ifVersion: 0, ttlMs: claims.expiresAt - now + CLOCK_SKEW_MS },
    );
  } catch (error) {
    if (errorCode(error) === 'condition_failed') {
      throw new TokenError('token_replayed', `token ${claims.tokenId} was already used`);
    }
    throw error;
  }
  return claims;
}

/** The claims a valid signature vouches for, checked for shape and the 15 s bound. */
function readClaims(payload: Record<string, unknown>, kid: unknown): RedirectClaims {
  const invalid = (why: string) => new TokenError('invalid_token', `redirect token ${why}`);
  const id = (name: string): string => {
    const value = payload[name];
    if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH) {
      throw invalid(`has no valid ${name}`);
    }
    return value;
  };
  const time = (name: string): number => {
    const value = payload[name];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw invalid(`has no valid ${name}`);
    }
    return value;
  };
  const claims: RedirectClaims = {
    sessionId: id('sid'),
    sourceNode: id('src'),
    targetNode: id('tgt'),
    tokenId: id('jti'),
    issuedAt: time('iatMs'),
    expiresAt: time('expMs'),
    keyId: String(kid),
  };
  if (!TOKEN_ID.test(claims.tokenId)) throw invalid('has a malformed jti');
  const lifetime = claims.expiresAt - claims.issuedAt;
  if (lifetime <= 0 || lifetime > MAX_REDIRECT_LIFETIME_MS) {
    throw invalid(`lives ${lifetime} ms, more than ${MAX_REDIRECT_LIFETIME_MS} ms or none`);
  }
  return claims;
}

/**
 * Three non-empty base64url segments, each exactly as its bytes encode. base64url leaves a
 * few bits of the last character unused, so without this a signature with those bits changed
 * would still verify: a different token string accepted for the same token.
 */
function isCanonicalCompact(token: string): boolean {
  const parts = token.split('.');
  return (
    parts.length === 3 &&
    parts.every(
      (part) =>
        part.length > 0 &&
        /^[A-Za-z0-9_-]+$/.test(part) &&
        Buffer.from(part, 'base64url').toString('base64url') === part,
    )
  );
}

/** Whether an error is a refused redirect token (any of the codes above). */
export function isRedirectTokenRefusal(error: unknown): boolean {
  const code = errorCode(error);
  return (
    code === 'invalid_token' ||
    code === 'token_expired' ||
    code === 'token_wrong_target' ||
    code === 'token_replayed'
  );
}
