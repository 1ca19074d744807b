/**
 * The streamheal client SDK (browsers and Node with a WebSocket implementation). In Node 20,
 * import `createNodeClient` from the `node` entry point instead.
 */
export {
  DEFAULT_CLIENT_HEARTBEAT,
  StreamhealClient,
  StreamhealClientError,
  websocketEndpoint,
  type ClientErrorCode,
  type ClientErrorEvent,
  type ClientMessage,
  type ClientStats,
  type StreamhealClientEvents,
  type StreamhealClientOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from './StreamhealClient.js';
export type { Listener } from './events.js';
export type { BackoffOptions, Random } from '../backoff.js';
export type { ReconnectAdvice } from '../protocol/closeCodes.js';
