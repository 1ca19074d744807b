/**
 * Node entry point: Node 20 has no global WebSocket, so this supplies the `ws` package's.
 */
import WebSocket from 'ws';
import {
  StreamhealClient,
  type StreamhealClientOptions,
  type WebSocketConstructor,
} from './StreamhealClient.js';

export * from './index.js';

/** A client that uses the `ws` package unless `options.WebSocket` names another implementation. */
export function createNodeClient(options: StreamhealClientOptions): StreamhealClient {
  return new StreamhealClient({ ...options, WebSocket: options.WebSocket ?? nodeWebSocket });
}

/** The `ws` package's WebSocket as the SDK's constructor type. */
export const nodeWebSocket: WebSocketConstructor = WebSocket;
