// Transport over Electron IPC: the preload's `window.galley` bridge forwards each request to
// the control plane running in the main process and pushes its events back.
import { ApiResponse, ServerEvent, type ApiRequest } from "@galley/common";

import type { ConnectionState, GalleyBridge, Transport } from "./transport";

export class IpcTransport implements Transport {
  constructor(private readonly bridge: GalleyBridge) {}

  async request(message: ApiRequest): Promise<ApiResponse> {
    // The bridge crosses a process boundary, so its responses are validated like network input.
    return ApiResponse.parse(await this.bridge.request(message));
  }

  subscribe(handler: (event: ServerEvent) => void): () => void {
    return this.bridge.subscribe((event) => {
      const parsed = ServerEvent.safeParse(event);
      if (parsed.success) handler(parsed.data);
      else console.error("Ignored an invalid event from the main process", parsed.error.issues);
    });
  }

  onConnectionChange(handler: (state: ConnectionState) => void): () => void {
    // The main process lives as long as the window, so IPC is always open.
    handler("open");
    return () => {};
  }
}
