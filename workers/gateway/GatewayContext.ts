import type { Limits } from '../../shared/protocol/frames.js';
import type { Logger } from '../../shared/telemetry/logger.js';
import type { ChannelHub } from './ChannelHub.js';
import type { GatewayMetrics } from './metrics.js';
import type { SseStream } from './SseStream.js';
import type { HeartbeatSweep } from './HeartbeatSweep.js';
import type { WsSession } from './WsSession.js';

/** What a client session needs from its gateway. */
export interface GatewayContext {
  readonly nodeId: string;
  readonly limits: Limits;
  readonly maxBufferedBytes: number;
  readonly hub: ChannelHub;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  /** The gateway's pings to its WebSocket clients; undefined: no application heartbeat. */
  readonly heartbeatSweep?: HeartbeatSweep;
  resumeToken(session: string): Promise<string>;
  /**
   * The session a `resume` token names: a resume token from any gateway of the cluster, or a
   * redirect token naming this gateway as its target (used up on success). Throws TokenError.
   */
  verifySessionToken(token: string): Promise<string>;
  /** `abnormal`: the connection went without a closing handshake (1006). */
  clientClosed(client: WsSession | SseStream, abnormal?: boolean): void;
}
