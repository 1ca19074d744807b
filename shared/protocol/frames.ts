/**
 * WebSocket frames (JSON text). docs/protocol.md describes them for client authors; this file
 * is the source of truth and the two must agree.
 */
import { z } from 'zod';
import { CHANNEL_NAME } from './channels.js';

export const PROTOCOL_VERSION = 1;

/** Client request id, echoed in the answer. */
const requestId = z.union([z.number().int(), z.string().max(64)]).optional();
const channel = z.string().regex(CHANNEL_NAME, 'invalid channel name');
const position = z.number().int().nonnegative();

export const SubscribeFrame = z.object({
  type: z.literal('subscribe'),
  id: requestId,
  channel,
  /** Resume after this position; omitted: from now on. */
  after: position.optional(),
});

export const UnsubscribeFrame = z.object({
  type: z.literal('unsubscribe'),
  id: requestId,
  channel,
});

export const ResumeFrame = z.object({
  type: z.literal('resume'),
  id: requestId,
  token: z.string().max(4096),
  /** Last position the client holds, per channel. */
  channels: z.record(channel, position),
});

export const ClientFrame = z.discriminatedUnion('type', [
  SubscribeFrame,
  UnsubscribeFrame,
  ResumeFrame,
]);
export type ClientFrame = z.infer<typeof ClientFrame>;
export type RequestId = string | number | undefined;

export interface Limits {
  maxFrameBytes: number;
  maxChannels: number;
  /** Subscribe/unsubscribe requests per second, sustained (bursts up to twice this). */
  requestsPerSecond: number;
}

export type ServerFrame =
  | {
      type: 'welcome';
      version: number;
      session: string;
      node: string;
      resumeToken: string;
      limits: Limits;
    }
  | { type: 'subscribed'; id?: RequestId; channel: string; position: number }
  | { type: 'unsubscribed'; id?: RequestId; channel: string }
  | {
      type: 'resumed';
      id?: RequestId;
      session: string;
      resumeToken: string;
      channels: Record<string, number>;
    }
  | { type: 'message'; channel: string; position: number; data: unknown; time: number }
  /**
   * A planned move (make-before-break): open `url`, send `resume` there with `token` and the
   * positions held, and close this connection once `resumed` arrives. Until then this
   * connection keeps delivering; a move not completed within `ttlMs` is abandoned and the
   * session stays here. `node` is the target gateway, or `*` when `url` is the cluster's
   * public endpoint (a load balancer picks the gateway; its `welcome` names it).
   */
  | { type: 'redirect'; url: string; node: string; token: string; ttlMs: number }
  | ({ type: 'error'; id?: RequestId } & ErrorBody);

export const ErrorCodes = {
  /** Not JSON, not an object, unknown `type`, or fields of the wrong shape. */
  badFrame: 'bad_frame',
  invalidChannel: 'invalid_channel',
  tooManyChannels: 'too_many_channels',
  rateLimited: 'rate_limited',
  /** History no longer reaches the requested position; delivery continues from `oldest`. */
  historyLost: 'history_lost',
  /** The requested position is beyond the channel's latest: the subscription is refused. */
  positionFromFuture: 'position_from_future',
  /** Resume token forged, garbled or signed by an unknown key: a new session was started. */
  invalidToken: 'invalid_token',
  tokenExpired: 'token_expired',
  /** A redirect token was used already (single use). */
  tokenReplayed: 'token_replayed',
  /** A redirect token names another gateway as its target. */
  tokenWrongTarget: 'token_wrong_target',
  /** The state store is unreachable: retry the request later. */
  storeUnavailable: 'store_unavailable',
  notSubscribed: 'not_subscribed',
} as const;
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  channel?: string;
  oldest?: number;
  latest?: number;
}

export type ParseResult =
  { ok: true; frame: ClientFrame } | { ok: false; id?: RequestId; error: ErrorBody };

/** Parses one client text frame; never throws. */
export function parseClientFrame(text: string): ParseResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, error: { code: ErrorCodes.badFrame, message: 'frame is not valid JSON' } };
  }
  const result = ClientFrame.safeParse(json);
  if (result.success) return { ok: true, frame: result.data };
  const id = ClientFrame.options[0].shape.id.safeParse((json as { id?: unknown } | null)?.id);
  const issue = result.error.issues[0];
  const invalidChannel = issue?.path[0] === 'channel' || issue?.path[0] === 'channels';
  return {
    ok: false,
    ...(id.success && id.data !== undefined ? { id: id.data } : {}),
    error: {
      code: invalidChannel ? ErrorCodes.invalidChannel : ErrorCodes.badFrame,
      message: issue ? `${issue.path.join('.') || 'frame'}: ${issue.message}` : 'invalid frame',
    },
  };
}
