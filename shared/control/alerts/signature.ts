/**
 * Signatures of generic JSON webhooks: HMAC-SHA256 over `<timestamp>.<body>`, the way Stripe and
 * Slack sign theirs, so a receiver can check both who sent it and that it is fresh.
 *
 *   X-Streamheal-Timestamp: 1718000000                 (Unix seconds, when this attempt was sent)
 *   X-Streamheal-Signature: v1=5257a869e7ecebeda32aff… (hex HMAC-SHA256 of "1718000000.<raw body>")
 *
 * To verify: take the raw body bytes as received (before any JSON parsing), compute the HMAC
 * with the shared secret over `timestamp + "." + body`, compare it in constant time with each
 * `v1=` value of the header, and refuse timestamps more than 5 minutes from your clock (a
 * captured request cannot be replayed later). `verifyWebhookSignature` does exactly that.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-streamheal-signature';
export const TIMESTAMP_HEADER = 'x-streamheal-timestamp';
export const EVENT_ID_HEADER = 'x-streamheal-event-id';
export const SIGNATURE_VERSION = 'v1';
/** How far a timestamp may be from the receiver's clock. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

export function signatureOf(secret: string, timestamp: number, body: string | Buffer): string {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex');
}

/** The two headers for a body sent at `nowMs`. */
export function signWebhook(
  secret: string,
  body: string,
  nowMs: number = Date.now(),
): Record<string, string> {
  const timestamp = Math.floor(nowMs / 1000);
  return {
    [TIMESTAMP_HEADER]: String(timestamp),
    [SIGNATURE_HEADER]: `${SIGNATURE_VERSION}=${signatureOf(secret, timestamp, body)}`,
  };
}

export type SignatureCheck =
  | { ok: true; timestamp: number }
  | { ok: false; reason: 'missing' | 'malformed' | 'stale' | 'mismatch' };

export interface VerifyWebhookOptions {
  /** One secret, or several while rotating (any may match). */
  secret: string | readonly string[];
  /** The raw body as received. */
  body: string | Buffer;
  /** Header values (names in any case); arrays as Node gives repeated headers. */
  headers: Record<string, string | string[] | undefined>;
  /** @default 300 */
  toleranceSeconds?: number;
  /** @default Date.now() */
  nowMs?: number;
}

export function verifyWebhookSignature(options: VerifyWebhookOptions): SignatureCheck {
  const header = (name: string): string | undefined => {
    for (const [key, value] of Object.entries(options.headers)) {
      if (key.toLowerCase() === name) return Array.isArray(value) ? value.join(',') : value;
    }
    return undefined;
  };
  const timestampText = header(TIMESTAMP_HEADER);
  const signatureText = header(SIGNATURE_HEADER);
  if (timestampText === undefined || signatureText === undefined) {
    return { ok: false, reason: 'missing' };
  }
  if (!/^\d{1,12}$/.test(timestampText)) return { ok: false, reason: 'malformed' };
  const timestamp = Number(timestampText);
  const candidates = signatureText
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.startsWith(`${SIGNATURE_VERSION}=`))
    .map((part) => part.slice(SIGNATURE_VERSION.length + 1))
    .filter((hex) => /^[0-9a-f]{64}$/.test(hex));
  if (candidates.length === 0) return { ok: false, reason: 'malformed' };
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const now = Math.floor((options.nowMs ?? Date.now()) / 1000);
  if (Math.abs(now - timestamp) > tolerance) return { ok: false, reason: 'stale' };
  const secrets = typeof options.secret === 'string' ? [options.secret] : options.secret;
  for (const secret of secrets) {
    const expected = Buffer.from(signatureOf(secret, timestamp, options.body), 'hex');
    for (const candidate of candidates) {
      if (timingSafeEqual(expected, Buffer.from(candidate, 'hex'))) return { ok: true, timestamp };
    }
  }
  return { ok: false, reason: 'mismatch' };
}
