// The one seam between the renderer and the control plane. Both implementations carry the
// contract's messages unchanged: Electron IPC through the preload bridge, and a WebSocket
// to `galley serve` in a browser.
import type { ApiRequest, ApiResponse, ServerEvent } from "@galley/common";

// "unauthorized": the server rejected the token; reconnecting cannot help.
export type ConnectionState = "connecting" | "open" | "closed" | "unauthorized";

export interface Transport {
  /** Sends one API request; resolves with its response, including error responses. */
  request(message: ApiRequest): Promise<ApiResponse>;
  /** Calls `handler` for every pushed event until the returned function is called. */
  subscribe(handler: (event: ServerEvent) => void): () => void;
  /** Calls `handler` with each connection state change until the returned function is called. */
  onConnectionChange(handler: (state: ConnectionState) => void): () => void;
}

/** Shape of `window.galley`, which the Electron preload exposes with contextBridge. */
export interface GalleyBridge {
  request(message: ApiRequest): Promise<ApiResponse>;
  subscribe(handler: (event: ServerEvent) => void): () => void;
}

declare global {
  interface Window {
    galley?: GalleyBridge;
  }
}
