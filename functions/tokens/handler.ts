/**
 * tokens: issues redirect tokens for session moves (thin over shared/redirectTokens.ts).
 *
 *   in:  { "sessionId", "sourceNode", "targetNode", "lifetimeMs"? }        one grant
 *        { "grants": [ { … }, … ] }                                       several (≤ 1000)
 *   out: { "tokens": [ { "token", "claims": { sessionId, sourceNode, targetNode, tokenId,
 *                                            issuedAt, expiresAt, keyId } } ] }
 * `targetNode: "*"` (CLUSTER_TARGET) issues a cluster-targeted token: any gateway of the cluster
 * but the source takes it (clients behind a load balancer). The key ring comes from keyRing.ts
 * (env, Secrets Manager, or the cluster secret), cached. A grant that is not valid (empty id,
 * `*` as the source, lifetime over 15 s) fails the call with `invalid_grant` and the index of
 * the grant; nothing is issued.
 */
import { z } from 'zod';
import { StreamhealError } from '../../shared/errors.js';
import {
  CLUSTER_TARGET,
  MAX_REDIRECT_LIFETIME_MS,
  signRedirectToken,
  type RedirectClaims,
} from '../../shared/redirectTokens.js';
import { KeyRingSource } from './keyRing.js';

const Id = z.string().min(1).max(200);
const GrantSchema = z.strictObject({
  sessionId: Id,
  sourceNode: Id.refine((node) => node !== CLUSTER_TARGET, {
    message: `"${CLUSTER_TARGET}" is not a node (it is the target meaning any gateway)`,
  }),
  targetNode: Id,
  lifetimeMs: z.number().int().positive().max(MAX_REDIRECT_LIFETIME_MS).optional(),
});
const RequestSchema = z.union([
  GrantSchema,
  z.strictObject({ grants: z.array(GrantSchema).min(1).max(1000) }),
]);

export type TokenRequest = z.input<typeof RequestSchema>;
export interface TokenResponse {
  tokens: { token: string; claims: RedirectClaims }[];
}

export class InvalidGrantError extends StreamhealError {
  constructor(message: string) {
    super('invalid_grant', message);
  }
}

export interface TokenDeps {
  keys: KeyRingSource;
  now?: () => number;
}

export async function issueTokens(request: unknown, deps: TokenDeps): Promise<TokenResponse> {
  const parsed = RequestSchema.safeParse(request);
  if (!parsed.success) {
    throw new InvalidGrantError(
      parsed.error.issues.map((i) => `${i.path.join('.') || '$'}: ${i.message}`).join('; '),
    );
  }
  const grants = 'grants' in parsed.data ? parsed.data.grants : [parsed.data];
  const ring = await deps.keys.get();
  const now = (deps.now ?? Date.now)();
  const tokens = await Promise.all(
    grants.map(({ lifetimeMs, ...grant }) =>
      signRedirectToken(ring, grant, { now, ...(lifetimeMs === undefined ? {} : { lifetimeMs }) }),
    ),
  );
  return { tokens };
}

let lambda: TokenDeps | undefined;

/** Lambda entry (invoked directly by the control plane's move side). */
export function handler(request: unknown): Promise<TokenResponse> {
  lambda ??= { keys: new KeyRingSource() };
  return issueTokens(request, lambda);
}
