// The preload of Galley's window. It runs sandboxed, so it may only require `electron`.
// It exposes one bridge, `window.galley`, which carries the contract's messages. `request`
// sends an ApiRequest to the control plane in the main process and resolves with its
// ApiResponse, and `subscribe` delivers every pushed ServerEvent. Nothing else is exposed.
import { contextBridge, ipcRenderer, type IpcRendererEvent } from "electron";

import type { ApiRequest, ApiResponse, ServerEvent } from "../common/index.js";

// Same values as channels.ts; a sandboxed preload cannot require local modules.
const REQUEST_CHANNEL = "galley:request";
const EVENT_CHANNEL = "galley:event";

const bridge = {
  request(message: ApiRequest): Promise<ApiResponse> {
    return ipcRenderer.invoke(REQUEST_CHANNEL, message) as Promise<ApiResponse>;
  },
  subscribe(handler: (event: ServerEvent) => void): () => void {
    const listener = (_event: IpcRendererEvent, message: ServerEvent) => handler(message);
    ipcRenderer.on(EVENT_CHANNEL, listener);
    return () => {
      ipcRenderer.removeListener(EVENT_CHANNEL, listener);
    };
  },
};

contextBridge.exposeInMainWorld("galley", bridge);
