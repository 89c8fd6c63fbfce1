// A client of the engine's WebSocket RPC (engine/galley/protocol.py): requests matched to
// responses by id, and pushed events dispatched to listeners.
import { EventEmitter } from "node:events";

import WebSocket from "ws";

export class EngineRpcError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly data: Record<string, unknown> | null,
  ) {
    super(message);
    this.name = "EngineRpcError";
  }
}

export interface EngineEvent {
  event: string;
  data: Record<string, unknown>;
}

interface Pending {
  resolve(result: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export class EngineClient extends EventEmitter<{ event: [EngineEvent]; close: [number, string] }> {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  private constructor(private readonly socket: WebSocket) {
    super();
    socket.on("message", (data) => this.receive(data.toString()));
    socket.on("close", (code, reason) => {
      this.failPending(new Error(`engine connection closed (code ${code}${reason.length ? `: ${reason.toString()}` : ""})`));
      this.emit("close", code, reason.toString());
    });
    socket.on("error", () => {
      // The close handler reports the failure to pending requests.
    });
  }

  static connect(url: string, token: string, timeoutMs = 10_000): Promise<EngineClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` }, handshakeTimeout: timeoutMs });
      const onError = (error: Error) => reject(new Error(`cannot connect to the engine at ${url}: ${error.message}`));
      socket.once("error", onError);
      socket.once("unexpected-response", (_request, response) => {
        reject(new Error(`the engine at ${url} rejected the connection with HTTP ${response.statusCode}`));
        socket.terminate();
      });
      socket.once("open", () => {
        socket.off("error", onError);
        resolve(new EngineClient(socket));
      });
    });
  }

  request<T = unknown>(method: string, params: Record<string, unknown> = {}, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
    if (this.socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error(`engine connection is not open; cannot call ${method}`));
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`engine call ${method} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (result: unknown) => void, reject, timer });
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  close(): void {
    this.socket.close(1000);
  }

  private receive(text: string): void {
    let frame: { id?: number; result?: unknown; error?: { type: string; message: string; data?: Record<string, unknown> } | null; event?: string; data?: Record<string, unknown> };
    try {
      frame = JSON.parse(text) as typeof frame;
    } catch {
      return;
    }
    if (typeof frame.id === "number") {
      const pending = this.pending.get(frame.id);
      if (!pending) return;
      this.pending.delete(frame.id);
      clearTimeout(pending.timer);
      if (frame.error) pending.reject(new EngineRpcError(frame.error.type, frame.error.message, frame.error.data ?? null));
      else pending.resolve(frame.result);
      return;
    }
    if (typeof frame.event === "string") this.emit("event", { event: frame.event, data: frame.data ?? {} });
  }

  private failPending(error: Error): void {
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
      this.pending.delete(id);
    }
  }
}
