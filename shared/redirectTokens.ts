/**
 * Redirect tokens (seed 4.3): the control plane signs one for a session it moves; the client
 * presents it to the target gateway, which verifies it and lets the session in exactly once.
 *
 * A token is a compact JWS (HS256) signed with the cluster's key ring (shared/tokens.ts), its
 * header naming the key id, so keys rotate without dropping tokens signed by an older key
 * still in the ring. Claims:
 *   pur    "redirect"
 *   sid    session id            src  source node       tgt  target node, or `*`
 *   jti    unique token id (128 random bits, base64url)
 *   iatMs  issue time, ms        expMs  expiry, ms (at most 15 s after iatMs)
 *   iat, exp  the same in seconds (exp rounded up), for JWT tooling
 *
 * Targets. A token names one gateway (`tgt: <node id>`: the target's own URL is reachable by
 * clients, as on one machine or self-hosted), or the cluster (`tgt: "*"`, CLUSTER_TARGET: any
 * gateway of this cluster except the source). A cluster-targeted token goes with a redirect to
 * the cluster's public endpoint (a load balancer, STREAMHEAL_PUBLIC_URL) when clients cannot
 * reach one gateway's own address: the load balancer picks the gateway. "This cluster" is the
 * key ring: only gateways holding a key of the ring verify the token at all.
 *
 * Verification refuses, with a distinct code each:
 *   invalid_token       not in canonical compact form, bad signature, unknown key id, not a
 *                       redirect token, malformed claims, lifetime over 15 s, issued in the future
 *   token_expired       now ≥ expMs
 *   token_wrong_target  tgt is not the gateway verifying it; for a cluster-targeted token,
 *                       the gateway verifying it is its source (the load balancer sent the
 *                       client back where it came from: the move fails, the session stays)
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

/**
 * The reserved target of a cluster-targeted token: any gateway of the cluster except the source.
 * Never a node id (gateways refuse it as theirs).
 */
export const CLUSTER_TARGET = '*';

const TOKEN_ID = /^[A-Za-z0-9_-]{16,64}$/;
const MAX_ID_LENGTH = 200;

/** What a redirect token grants: this session may move from the source node to the target. */
export interface RedirectGrant {
  sessionId: string;
  sourceNode: string;
  /** A node id, or CLUSTER_TARGET: any gateway of the cluster but the source. */
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
  if (grant.sourceNode === CLUSTER_TARGET) {
    throw new RangeError(`redirect token sourceNode must be a node, not "${CLUSTER_TARGET}"`);
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
  /**
   * The gateway verifying (its node id): the token must name it as its target, or be
   * cluster-targeted and come from another gateway.
   */
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
  if (options.expectedTarget === CLUSTER_TARGET) {
    throw new RangeError(`"${CLUSTER_TARGET}" is no gateway: verify as the gateway's node id`);
  }
  if (typeof token !== 'string' || !isCanonicalCompact(token)) {
    throw new TokenError('invalid_token', 'token is forged or garbled');
  }
  const payload = await verifyToken(ring, REDIRECT_PURPOSE, token, now);
  const claims = readClaims(payload, decodeProtectedHeader(token).kid);
  if (claims.issuedAt > now + CLOCK_SKEW_MS) {
    throw new TokenError('invalid_token', 'redirect token is issued in the future');
  }
  if (now >= claims.expiresAt) throw new TokenError('token_expired', 'token expired');
  checkTarget(claims, options.expectedTarget);
  try {
    // Checked before this write, so a token refused for its target is not used up.
    await options.store.put(
      USED_TOKEN_PREFIX + claims.tokenId,
      // targetNode: the gateway that used it (for a cluster-targeted token, the one picked).
      { sessionId: claims.sessionId, targetNode: options.expectedTarget, usedAt: now },
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

/** Whether a token is cluster-targeted (CLUSTER_TARGET). */
export function isClusterTargeted(claims: Pick<RedirectGrant, 'targetNode'>): boolean {
  return claims.targetNode === CLUSTER_TARGET;
}

/**
 * The target rule: a node-targeted token is good only at its target; a cluster-targeted one at
 * any gateway but its source (a move must leave the source, and a session resumed where it
 * already is would not have moved: the client keeps its old connection instead).
 */
function checkTarget(claims: RedirectClaims, verifier: string): void {
  if (isClusterTargeted(claims)) {
    if (claims.sourceNode === verifier) {
      throw new TokenError(
        'token_wrong_target',
        `token moves the session off ${claims.sourceNode} to another gateway of the cluster; presented to ${verifier} itself`,
      );
    }
  } else if (claims.targetNode !== verifier) {
    throw new TokenError(
      'token_wrong_target',
      `token is for ${claims.targetNode}, not ${verifier}`,
    );
  }
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
  if (claims.sourceNode === CLUSTER_TARGET)
    throw invalid(`names "${CLUSTER_TARGET}" as its source`);
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

/**
 * Checks and normalises a cluster's public endpoint (STREAMHEAL_PUBLIC_URL): the base URL
 * clients reach any gateway of the cluster at, through its load balancer, and where
 * cluster-targeted redirects send them (clients append `/v1/ws`). `ws:`, `wss:`, `http:` or
 * `https:`, a host, optionally a port and a path prefix; no credentials, query or fragment,
 * and not the `/v1/ws` endpoint itself. Returns it without a trailing slash; throws RangeError
 * saying what is wrong.
 */
export function parsePublicUrl(text: string): string {
  const bad = (why: string) =>
    new RangeError(
      `public URL ${JSON.stringify(text)} ${why}; expected e.g. wss://push.example.com or ws://<load balancer>:<port>`,
    );
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw bad('is not a URL');
  }
  if (!['ws:', 'wss:', 'http:', 'https:'].includes(url.protocol)) {
    throw bad(`has scheme ${url.protocol.slice(0, -1)}, not ws, wss, http or https`);
  }
  if (url.hostname === '') throw bad('has no host');
  if (url.username !== '' || url.password !== '') throw bad('carries credentials');
  if (url.search !== '' || url.hash !== '') throw bad('has a query or fragment');
  const path = url.pathname.replace(/\/+$/, '');
  if (/\/v1\/ws$/.test(path)) throw bad('names the /v1/ws endpoint, not the base URL');
  return `${url.protocol}//${url.host}${path}`;
}
