/**
 * WebSocket close codes as data: each carries the advice a client follows, so the SDK and
 * third-party clients need no table of their own.
 */
export type ReconnectAdvice = 'immediately' | 'backoff' | 'never';

export interface CloseCode {
  code: number;
  reason: string;
  reconnect: ReconnectAdvice;
}

export const CloseCodes = {
  /** The gateway is shutting down or draining: reconnect at once to another gateway and resume. */
  shutdown: { code: 4000, reason: 'shutdown', reconnect: 'immediately' },
  /** The client did not read fast enough and its send queue overflowed: reconnect and resume. */
  slowConsumer: { code: 4001, reason: 'slow consumer', reconnect: 'immediately' },
  /** Too many refused requests (subscribe storm): reconnect with backoff. */
  rateLimited: { code: 4002, reason: 'rate limited', reconnect: 'backoff' },
  /** Server-side fault: reconnect with backoff. */
  internal: { code: 4003, reason: 'internal error', reconnect: 'backoff' },
  /** The client keeps sending frames the server cannot understand: fix the client. */
  badRequest: { code: 4500, reason: 'bad request', reconnect: 'never' },
} as const satisfies Record<string, CloseCode>;

/** Advice for any close code, including the standard ones a gateway or proxy may send. */
export function reconnectAdvice(code: number): ReconnectAdvice {
  const known = Object.values(CloseCodes).find((c) => c.code === code);
  if (known) return known.reconnect;
  if (code === 1000) return 'backoff';
  if (code === 1001 || code === 1006 || code === 1012) return 'immediately';
  if (code === 1009) return 'backoff';
  if (code >= 4500 && code <= 4999) return 'never';
  return 'backoff';
}
