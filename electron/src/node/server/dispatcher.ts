// The one entry point for API calls, whatever the transport: validates params against the
// contract, calls the handler and turns failures into error bodies. The HTTP server, the
// WebSocket server and Electron IPC all go through `handle`, and all forward `event`s.
import crypto from "node:crypto";
import { EventEmitter } from "node:events";

import {
  type ApiErrorBody,
  type ApiMethod,
  type ApiParsedParams,
  type ApiRequest,
  type ApiResponse,
  type ApiResult,
  api,
  isApiMethod,
  type ServerEvent,
  toValidationIssues,
} from "../../common/index.js";
import { ApiError } from "../errors.js";
import type { Logger } from "../log.js";

/**
 * Sender of a request. `browser`: the token printed in the workbench URL, and Electron IPC.
 * `local`: the token that `galley serve` writes only to its 0600 serve.json, so its holder
 * is the user who owns the data directory.
 */
export type Caller = "browser" | "local";

export type Handlers = {
  [M in ApiMethod]: (params: ApiParsedParams<M>, caller: Caller) => Promise<ApiResult<M>> | ApiResult<M>;
};

export type CallOutcome = { ok: true; result: unknown } | { ok: false; error: ApiErrorBody };

export class Dispatcher extends EventEmitter<{ event: [ServerEvent] }> {
  constructor(
    private readonly handlers: Handlers,
    private readonly log: Logger,
  ) {
    super();
    // Every connected client listens; the default cap of 10 would warn with a few tabs open.
    this.setMaxListeners(0);
  }

  publish(event: ServerEvent): void {
    this.emit("event", event);
  }

  async call(method: string, params: unknown, caller: Caller = "browser"): Promise<CallOutcome> {
    if (!isApiMethod(method)) {
      return { ok: false, error: { code: "not_found", message: `unknown API method "${method}"` } };
    }
    const parsed = api[method].params.safeParse(params ?? {});
    if (!parsed.success) {
      const issues = toValidationIssues(parsed.error);
      const summary = issues.map((issue) => `${issue.path.join(".") || "(params)"}: ${issue.message}`).join("; ");
      return { ok: false, error: { code: "invalid_request", message: `invalid params for ${method}: ${summary}`, issues } };
    }
    try {
      const handler = this.handlers[method] as (params: unknown, caller: Caller) => unknown;
      return { ok: true, result: await handler(parsed.data, caller) };
    } catch (error) {
      return { ok: false, error: this.toErrorBody(method, error) };
    }
  }

  async handle(request: ApiRequest, caller: Caller = "browser"): Promise<ApiResponse> {
    const outcome = await this.call(request.method, request.params, caller);
    return outcome.ok
      ? { kind: "response", id: request.id, ok: true, result: outcome.result }
      : { kind: "response", id: request.id, ok: false, error: outcome.error };
  }

  private toErrorBody(method: string, error: unknown): ApiErrorBody {
    if (error instanceof ApiError) return error.toBody();
    const errorId = crypto.randomBytes(4).toString("hex");
    const stack = error instanceof Error ? (error.stack ?? error.message) : String(error);
    this.log.error("unexpected error in API call", { method, error_id: errorId, error: stack });
    const where = this.log.filePath ? `; see ${this.log.filePath}` : "";
    return {
      code: "internal",
      message: `unexpected error (id ${errorId}) in ${method}: ${error instanceof Error ? error.message : String(error)}${where}`,
      error_id: errorId,
      ...(this.log.filePath ? { log_path: this.log.filePath } : {}),
    };
  }
}
