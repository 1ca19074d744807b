/**
 * The token key ring as Secrets Manager stores it, and its rotation. The value is the format
 * `keyRingFromSecret` (shared/tokens.ts) reads: `kid:secret,kid:secret,...`, the first key signs,
 * every key verifies. A bare secret (what the stack generates first) is a ring of one key whose
 * id is derived from the secret, exactly as shared/tokens.ts derives it.
 *
 * Rotation keeps three keys, by position:
 *
 *   [current, staged, previous]
 *
 * A rotation promotes the staged key to current, stages a fresh key, and keeps the old current
 * as previous (what is older is dropped). So a key is in every reader's ring one whole rotation
 * period before anything signs with it, and stays verifiable one period after it stopped
 * signing: readers that refresh their copy at least once per period never see a token signed by
 * a key they do not hold. The first rotation of a bare secret only stages a key.
 */
import { createHash, randomBytes } from 'node:crypto';

export interface RingKey {
  kid: string;
  secret: string;
}

/** Shortest secret shared/tokens.ts accepts. */
export const MIN_SECRET_LENGTH = 16;

/** Parses a stored ring; throws with the problem when it is not one shared/tokens.ts would accept. */
export function parseRing(value: string): RingKey[] {
  const trimmed = value.trim();
  if (trimmed === '') throw new Error('key ring is empty');
  if (!trimmed.includes(':')) {
    checkSecret(trimmed, '(bare secret)');
    return [{ kid: derivedKid(trimmed), secret: trimmed }];
  }
  const keys = trimmed.split(',').map((pair) => {
    const at = pair.indexOf(':');
    if (at < 0) throw new Error('every key of a ring needs the form kid:secret');
    const kid = pair.slice(0, at).trim();
    const secret = pair.slice(at + 1).trim();
    if (kid === '') throw new Error('a key of the ring has no id');
    checkSecret(secret, kid);
    return { kid, secret };
  });
  const kids = new Set(keys.map((key) => key.kid));
  if (kids.size !== keys.length) throw new Error('key ids in a ring must be unique');
  return keys;
}

export function formatRing(keys: readonly RingKey[]): string {
  return keys.map((key) => `${key.kid}:${key.secret}`).join(',');
}

/** The key id shared/tokens.ts gives a bare secret. */
export function derivedKid(secret: string): string {
  return createHash('sha256').update(secret).digest('hex').slice(0, 8);
}

/** A fresh key: a time-ordered id (`k` + UTC seconds) and 32 random bytes, base64url. */
export function newKey(now = new Date(), random: (size: number) => Buffer = randomBytes): RingKey {
  const stamp = now.toISOString().replace(/[-:T]/g, '').replace(/\..*$/, '');
  return { kid: `k${stamp}`, secret: random(32).toString('base64url') };
}

/** The ring after one rotation (see the module comment), with `fresh` as the new staged key. */
export function rotateRing(current: readonly RingKey[], fresh: RingKey): RingKey[] {
  if (current.some((key) => key.kid === fresh.kid)) {
    throw new Error(`key id ${fresh.kid} is already in the ring`);
  }
  checkSecret(fresh.secret, fresh.kid);
  const [signing, staged] = current;
  if (!signing) throw new Error('key ring is empty');
  if (!staged) return [signing, fresh];
  return [staged, fresh, signing];
}

function checkSecret(secret: string, kid: string): void {
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new Error(`key ${kid} is shorter than ${MIN_SECRET_LENGTH} characters`);
  }
  if (/[,:\s]/.test(secret)) throw new Error(`key ${kid} contains a separator (",", ":" or space)`);
}
