// A WebSocket client of the server's /api/ws: API requests with their responses, and every
// event the server pushes (run output, run status, telemetry), in the order it sent them.
import WebSocket from "ws";

import { type ApiMethod, type ApiParams, type ApiResult, type ServerEvent, type ServerMessage } from "../../common/index.js";
import { ServerUnreachableError } from "./context.js";
import { type ServerAccess, ServerError, serverUnreachable } from "./server-access.js";

interface Pending {
  resolve(result: unknown): void;
  reject(error: Error): void;
}

export class ServerSocket {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly eventListeners: ((event: ServerEvent) => void)[] = [];
  private readonly closeListeners: (() => void)[] = [];
  private closedByUs = false;

  private constructor(
    private readonly ws: WebSocket,
    readonly server: ServerAccess,
  ) {
    ws.on("message", (data) => this.receive(data.toString()));
    ws.on("close", () => {
      const lost = new ServerUnreachableError(`lost the connection to ${server.source} at ${server.url}`);
      for (const waiter of this.pending.values()) waiter.reject(lost);
      this.pending.clear();
      if (!this.closedByUs) for (const listener of this.closeListeners) listener();
    });
  }

  static async connect(server: ServerAccess): Promise<ServerSocket> {
    const ws = new WebSocket(`${server.url.replace(/^http/, "ws")}/api/ws`, {
      headers: { Authorization: `Bearer ${server.token}` },
    });
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", (error) => reject(serverUnreachable(server, "opening the WebSocket", error)));
    });
    // Errors after the handshake end in "close", which rejects pending requests.
    ws.on("error", () => {});
    return new ServerSocket(ws, server);
  }

  request<M extends ApiMethod>(method: M, params: ApiParams<M>): Promise<ApiResult<M>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: (result) => resolve(result as ApiResult<M>), reject });
      this.ws.send(JSON.stringify({ kind: "request", id, method, params }));
    });
  }

  onEvent(listener: (event: ServerEvent) => void): void {
    this.eventListeners.push(listener);
  }

  /** Calls `listener` when the server closes the connection, not when `close` does. */
  onClose(listener: () => void): void {
    this.closeListeners.push(listener);
  }

  close(): void {
    this.closedByUs = true;
    this.ws.close();
  }

  private receive(text: string): void {
    // Not validated with zod: the server sends only contract messages, and checking each
    // telemetry sample would cost more than the rest of the CLI's work.
    const message = JSON.parse(text) as ServerMessage;
    if (message.kind === "event") {
      for (const listener of this.eventListeners) listener(message.event);
      return;
    }
    if (typeof message.id !== "number") return;
    const waiter = this.pending.get(message.id);
    if (!waiter) return;
    this.pending.delete(message.id);
    if (message.ok) waiter.resolve(message.result);
    else waiter.reject(new ServerError(message.error));
  }
}
