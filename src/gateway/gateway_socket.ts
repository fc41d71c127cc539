/**
 * The socket a shard talks through, as the shard sees it. The real one is `WsClient`; tests give the
 * shard an in-memory socket instead, so its protocol logic runs on a virtual clock without a network.
 */
import { WsClient, type WsClientOptions, type WsHandlers } from "./ws_client.ts";

export interface GatewaySocket {
  /** `WS_CONNECTING`, `WS_OPEN`, `WS_CLOSING` or `WS_CLOSED` (see `ws_client.ts`). */
  readonly readyState: number;
  /** Both sides sent their close frame. */
  readonly closedCleanly: boolean;
  /** Sends a text message; `onWritten` runs once its bytes are written to the connection. */
  send(text: string, onWritten?: () => void): void;
  /** Stops reading (flow control) until `resume`. */
  pause(): void;
  resume(): void;
  /** Starts the close handshake; resolves when the connection is gone. `onClose` is not called. */
  close(code: number): Promise<void>;
}

/** Opens a socket to `url`; what happens arrives through `handlers`. May throw for an unusable URL. */
export type ConnectSocket = (url: string, handlers: WsHandlers, options: WsClientOptions) => GatewaySocket;

export const connectWebSocket: ConnectSocket = (url, handlers, options) =>
  WsClient.connect(url, handlers, options);
