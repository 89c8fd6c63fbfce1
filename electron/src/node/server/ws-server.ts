// The WebSocket at /api/ws: clients send ApiRequest messages and receive ApiResponse
// messages and every ServerEvent, the same messages Electron IPC carries.
import type http from "node:http";
import type { Duplex } from "node:stream";

import { WebSocket, WebSocketServer } from "ws";

import { ApiRequest, type ServerEvent, type ServerMessage, toValidationIssues } from "../../common/index.js";
import type { Logger } from "../log.js";
import type { Caller, Dispatcher } from "./dispatcher.js";
import { type ApiTokens, bearerToken, callerOf } from "./http-server.js";

// A client this far behind misses telemetry samples until it catches up; run output is
// never dropped.
const TELEMETRY_BACKLOG_BYTES = 4 * 1024 * 1024;

function reject(socket: Duplex, status: number, reason: string): void {
  socket.write(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  socket.destroy();
}

/** Handles upgrades on /api/ws; returns a function that closes every connection. */
export function attachWebSocket(
  server: http.Server,
  options: ApiTokens & { dispatcher: Dispatcher; log: Logger },
): () => void {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
  const log = options.log.child("ws");

  server.on("upgrade", (request: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(request.url ?? "/", "http://localhost");
    if (url.pathname !== "/api/ws") {
      reject(socket, 404, "Not Found");
      return;
    }
    const token = bearerToken(request.headers.authorization) ?? url.searchParams.get("token");
    const caller = callerOf(token, options);
    if (!caller) {
      reject(socket, 401, "Unauthorized");
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => serveClient(ws, options.dispatcher, caller, log));
  });

  return () => {
    for (const client of wss.clients) client.terminate();
    wss.close();
  };
}

function serveClient(ws: WebSocket, dispatcher: Dispatcher, caller: Caller, log: Logger): void {
  let droppedTelemetry = 0;
  const send = (message: ServerMessage) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  };
  const forward = (event: ServerEvent) => {
    if (event.type === "telemetry" && ws.bufferedAmount > TELEMETRY_BACKLOG_BYTES) {
      if (droppedTelemetry++ % 100 === 0) log.warn("client is slow; dropping telemetry samples", { dropped: droppedTelemetry });
      return;
    }
    send({ kind: "event", event });
  };
  dispatcher.on("event", forward);
  log.debug("client connected", { clients: dispatcher.listenerCount("event") });

  ws.on("message", (data) => {
    let message: unknown;
    try {
      message = JSON.parse(data.toString());
    } catch (error) {
      send({
        kind: "response",
        id: 0,
        ok: false,
        error: { code: "invalid_request", message: `message is not valid JSON: ${(error as Error).message}` },
      });
      return;
    }
    const parsed = ApiRequest.safeParse(message);
    if (!parsed.success) {
      const id = (message as { id?: unknown } | null)?.id;
      send({
        kind: "response",
        id: typeof id === "number" || typeof id === "string" ? id : 0,
        ok: false,
        error: {
          code: "invalid_request",
          message: 'message is not a request; send {"kind": "request", "id": ..., "method": ..., "params": {...}}',
          issues: toValidationIssues(parsed.error),
        },
      });
      return;
    }
    void dispatcher.handle(parsed.data, caller).then(send);
  });
  ws.on("close", () => dispatcher.off("event", forward));
  ws.on("error", (error) => log.warn("client connection error", { error: error.message }));
}
