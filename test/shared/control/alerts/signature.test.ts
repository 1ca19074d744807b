import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  signWebhook,
  verifyWebhookSignature,
} from '../../../../shared/control/alerts/signature.js';

const SECRET = 'whsec-0123456789abcdef';
const BODY = '{"type":"streamheal.decision","id":"e1"}';
const NOW = 1_718_000_000_000;

describe('webhook signatures', () => {
  it('is HMAC-SHA256 of "<timestamp>.<body>", hex, as the docs tell receivers to compute it', () => {
    const headers = signWebhook(SECRET, BODY, NOW);
    const expected = createHmac('sha256', SECRET).update(`1718000000.${BODY}`).digest('hex');
    expect(headers).toEqual({
      'x-streamheal-timestamp': '1718000000',
      'x-streamheal-signature': `v1=${expected}`,
    });
  });

  it('verifies the raw body within 5 minutes, with any of several secrets while rotating', () => {
    const headers = signWebhook(SECRET, BODY, NOW);
    const ok = { body: BODY, headers, nowMs: NOW + 299_000 };
    expect(verifyWebhookSignature({ ...ok, secret: SECRET })).toEqual({
      ok: true,
      timestamp: 1718000000,
    });
    expect(verifyWebhookSignature({ ...ok, secret: ['new-secret-0123456789', SECRET] }).ok).toBe(
      true,
    );
    expect(verifyWebhookSignature({ ...ok, secret: SECRET, nowMs: NOW + 301_000 })).toEqual({
      ok: false,
      reason: 'stale',
    });
    expect(verifyWebhookSignature({ ...ok, secret: SECRET, body: `${BODY} ` })).toEqual({
      ok: false,
      reason: 'mismatch',
    });
    // Header names in any case, as frameworks hand them over.
    const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
    expect(verifyWebhookSignature({ ...ok, headers: upper, secret: SECRET }).ok).toBe(true);
  });

  it('refuses missing and malformed headers, and a timestamp changed after signing', () => {
    const headers = signWebhook(SECRET, BODY, NOW);
    const base = { secret: SECRET, body: BODY, nowMs: NOW };
    expect(verifyWebhookSignature({ ...base, headers: {} })).toEqual({
      ok: false,
      reason: 'missing',
    });
    expect(
      verifyWebhookSignature({
        ...base,
        headers: { ...headers, 'x-streamheal-signature': 'v0=abc' },
      }),
    ).toEqual({ ok: false, reason: 'malformed' });
    expect(
      verifyWebhookSignature({
        ...base,
        headers: { ...headers, 'x-streamheal-timestamp': '1718000001' },
      }),
    ).toEqual({ ok: false, reason: 'mismatch' });
  });
});
