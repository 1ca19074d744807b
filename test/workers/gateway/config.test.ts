/**
 * The gateway's environment contract (config.ts): the public URL behind a load balancer and the
 * node id it must not collide with.
 */
import { describe, expect, it } from 'vitest';
import { CLUSTER_TARGET } from '../../../shared/redirectTokens.js';
import { GatewayEnv } from '../../../workers/gateway/config.js';

/** The parse error's text, or 'accepted'. */
function refusal(env: Record<string, string>): string {
  const result = GatewayEnv.safeParse(env);
  return result.success ? 'accepted' : result.error.message;
}

describe('GatewayEnv', () => {
  it('has no public URL by default (moves name the target gateway)', () => {
    expect(GatewayEnv.parse({}).STREAMHEAL_PUBLIC_URL).toBeUndefined();
    expect(GatewayEnv.parse({ STREAMHEAL_PUBLIC_URL: '' }).STREAMHEAL_PUBLIC_URL).toBeUndefined();
  });

  it('takes the load balancer URL clients use, normalised', () => {
    const parse = (url: string) =>
      GatewayEnv.parse({ STREAMHEAL_PUBLIC_URL: url }).STREAMHEAL_PUBLIC_URL;
    expect(parse('wss://push.example.com/')).toBe('wss://push.example.com');
    expect(parse('ws://streamheal-nlb-0123.elb.eu-west-1.amazonaws.com:8080')).toBe(
      'ws://streamheal-nlb-0123.elb.eu-west-1.amazonaws.com:8080',
    );
    expect(parse('https://push.example.com:443')).toBe('https://push.example.com');
  });

  it('refuses a malformed public URL with a message naming the variable and the problem', () => {
    const cases: [string, RegExp][] = [
      ['push.example.com', /is not a URL/],
      ['tcp://push.example.com:80', /scheme tcp, not ws, wss, http or https/],
      ['wss://push.example.com/v1/ws', /\/v1\/ws endpoint/],
      ['wss://push.example.com?x=1', /query or fragment/],
    ];
    for (const [url, why] of cases) {
      const message = refusal({ STREAMHEAL_PUBLIC_URL: url });
      expect(message, url).toMatch(why);
      expect(message, url).toContain('STREAMHEAL_PUBLIC_URL');
      expect(message, url).toContain('wss://push.example.com or ws://<load balancer>:<port>');
    }
  });

  it(`reserves "${CLUSTER_TARGET}" (the cluster target of redirect tokens) as a node id`, () => {
    expect(refusal({ STREAMHEAL_NODE_ID: CLUSTER_TARGET })).toMatch(/reserved/);
    expect(refusal({ STREAMHEAL_NODE_ID: 'gateway-7' })).toBe('accepted');
  });
});
