// The HTTP + WebSocket server of the control plane: the API under /api (bearer token), the
// WebSocket at /api/ws (token in the Authorization header or ?token=), and the built
// renderer as static files without a token.
import crypto from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

import { type ApiErrorBody, type ApiMethod, api, ERROR_HTTP_STATUS, type HttpVerb } from "../../common/index.js";
import type { Logger } from "../log.js";
import type { Caller, Dispatcher } from "./dispatcher.js";
import { serveStatic } from "./static-files.js";
import { attachWebSocket } from "./ws-server.js";

// Model imports and recipe files are small JSON bodies; anything larger is a mistake.
const MAX_BODY_BYTES = 16 * 1024 * 1024;

interface Route {
  method: ApiMethod;
  verb: HttpVerb;
  pattern: RegExp;
  successStatus: number;
}

function compileRoutes(): Route[] {
  return (Object.keys(api) as ApiMethod[]).map((method) => {
    const { verb, path, successStatus } = api[method].http;
    const source = path
      .split("/")
      .map((segment) => (segment.startsWith(":") ? `(?<${segment.slice(1)}>[^/]+)` : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
      .join("/");
    return { method, verb, pattern: new RegExp(`^${source}$`), successStatus: successStatus ?? 200 };
  });
}

/** Compares tokens in constant time. */
export function tokenMatches(presented: string | null | undefined, expected: string): boolean {
  if (!presented) return false;
  const actualBytes = Buffer.from(presented);
  const expectedBytes = Buffer.from(expected);
  return actualBytes.length === expectedBytes.length && crypto.timingSafeEqual(actualBytes, expectedBytes);
}

/** Returns which token a request presented, or null when it matches neither. */
export function callerOf(presented: string | null | undefined, tokens: ApiTokens): Caller | null {
  if (tokens.local && tokenMatches(presented, tokens.local)) return "local";
  if (tokenMatches(presented, tokens.token)) return "browser";
  return null;
}

export function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer\s+(.+)$/i.exec(header ?? "");
  return match ? match[1]!.trim() : null;
}

function sendJson(response: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
  });
  response.end(text);
}

function sendError(response: http.ServerResponse, error: ApiErrorBody, status = ERROR_HTTP_STATUS[error.code]): void {
  sendJson(response, status, { error });
}

class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readJsonBody(request: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new BodyError(413, `request body exceeds ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new BodyError(400, `request body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new BodyError(400, "request body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

export interface ApiTokens {
  /** The browser token, printed in the workbench URL. */
  token: string;
  /** The local token of serve.json; null when the server writes none. */
  local?: string | null;
}

export interface ApiServerOptions extends ApiTokens {
  dispatcher: Dispatcher;
  rendererDist: string;
  log: Logger;
}

export class ApiServer {
  readonly server: http.Server;
  private readonly routes = compileRoutes();
  private readonly closeWebSockets: () => void;

  constructor(private readonly options: ApiServerOptions) {
    this.server = http.createServer((request, response) => {
      this.route(request, response).catch((error: Error) => {
        options.log.error("HTTP request failed", { url: request.url?.split("?")[0], error: error.stack ?? error.message });
        if (!response.headersSent) sendError(response, { code: "internal", message: `unexpected error: ${error.message}` });
        else response.end();
      });
    });
    this.closeWebSockets = attachWebSocket(this.server, options);
  }

  async listen(port: number, host = "127.0.0.1"): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.closeWebSockets();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async route(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://localhost");
    if (url.pathname !== "/api" && !url.pathname.startsWith("/api/")) {
      serveStatic(request, response, this.options.rendererDist);
      return;
    }
    const caller = callerOf(bearerToken(request.headers.authorization), this.options);
    if (!caller) {
      sendError(response, {
        code: "unauthorized",
        message: "missing or invalid bearer token: send `Authorization: Bearer <token>` with the token `galley serve` printed",
      });
      return;
    }

    const matching = this.routes.filter((route) => route.pattern.test(url.pathname));
    const route = matching.find((candidate) => candidate.verb === request.method);
    if (!route) {
      if (matching.length > 0) {
        response.setHeader("Allow", matching.map((candidate) => candidate.verb).join(", "));
        sendJson(response, 405, { error: { code: "invalid_request", message: `${request.method} is not allowed on ${url.pathname}` } });
      } else {
        sendError(response, { code: "not_found", message: `no API route ${request.method} ${url.pathname}` });
      }
      return;
    }

    let params: Record<string, unknown>;
    try {
      params = await this.collectParams(request, url, route);
    } catch (error) {
      if (!(error instanceof BodyError)) throw error;
      sendJson(response, error.status, { error: { code: "invalid_request", message: error.message } });
      return;
    }
    const outcome = await this.options.dispatcher.call(route.method, params, caller);
    if (outcome.ok) sendJson(response, route.successStatus, outcome.result);
    else sendError(response, outcome.error);
  }

  /** Merges the query string, the JSON body (for POST, PUT and PATCH) and the path's :params. */
  private async collectParams(request: http.IncomingMessage, url: URL, route: Route): Promise<Record<string, unknown>> {
    const params: Record<string, unknown> = Object.fromEntries(url.searchParams.entries());
    if (route.verb === "POST" || route.verb === "PUT" || route.verb === "PATCH") {
      Object.assign(params, await readJsonBody(request));
    }
    const groups = route.pattern.exec(url.pathname)?.groups ?? {};
    for (const [name, value] of Object.entries(groups)) params[name] = decodeURIComponent(value);
    return params;
  }
}
