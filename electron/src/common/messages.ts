// Envelopes that carry API calls and events between a client (the renderer, over WebSocket or
// Electron IPC) and the control plane. Both transports carry exactly these messages.
import { z } from "zod";

import { Run, RunEvent } from "./runs.js";
import { EngineStatus, Telemetry } from "./telemetry.js";

export const ErrorCode = z.enum([
  "invalid_request", // the params failed validation; `issues` lists each problem
  "unauthorized", // missing or wrong bearer token
  "not_found", // unknown method, model key, run id or file
  "conflict", // the key, file or run state does not allow the call
  "unprocessable", // a model folder or recipe that cannot be used; `reasons` or file/line give the cause
  "engine_unavailable", // the engine is not running; `log_path` points at its log
  "internal", // a bug in Galley; `log_path` and the error id locate it in the log
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

/** HTTP status of each error code, for the HTTP transport. */
export const ERROR_HTTP_STATUS: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  not_found: 404,
  conflict: 409,
  unprocessable: 422,
  engine_unavailable: 503,
  internal: 500,
};

export const ValidationIssue = z.object({
  // Path of the offending value inside the params, e.g. ["config", "tp"].
  path: z.array(z.union([z.string(), z.number()])),
  message: z.string(),
});
export type ValidationIssue = z.infer<typeof ValidationIssue>;

export const ApiErrorBody = z.object({
  code: ErrorCode,
  message: z.string(),
  issues: z.array(ValidationIssue).optional(),
  // Every reason a model folder was rejected.
  reasons: z.array(z.string()).optional(),
  known_keys: z.array(z.string()).optional(),
  file: z.string().nullable().optional(),
  line: z.number().int().nullable().optional(),
  log_path: z.string().optional(),
  error_id: z.string().optional(),
});
export type ApiErrorBody = z.infer<typeof ApiErrorBody>;

export const RequestId = z.union([z.number().int(), z.string()]);

export const ApiRequest = z.object({
  kind: z.literal("request"),
  id: RequestId,
  method: z.string(),
  params: z.unknown().optional(),
});
export type ApiRequest = z.infer<typeof ApiRequest>;

export const ApiResponse = z.discriminatedUnion("ok", [
  z.object({ kind: z.literal("response"), id: RequestId, ok: z.literal(true), result: z.unknown() }),
  z.object({ kind: z.literal("response"), id: RequestId, ok: z.literal(false), error: ApiErrorBody }),
]);
export type ApiResponse = z.infer<typeof ApiResponse>;

export const ServerEvent = z.discriminatedUnion("type", [
  // A chunk of a run's stdout or stderr, also stored as a run event with the same seq.
  z.object({
    type: z.literal("run.output"),
    run_id: z.string(),
    seq: z.number().int(),
    time: z.number(),
    stream: z.enum(["stdout", "stderr"]),
    text: z.string(),
  }),
  // Any other stored run event: stages, progress, metric, artifact, error, spawn, status.
  z.object({ type: z.literal("run.event"), event: RunEvent }),
  z.object({ type: z.literal("run.status"), run: Run }),
  z.object({ type: z.literal("telemetry"), telemetry: Telemetry }),
  z.object({ type: z.literal("engine.status"), status: EngineStatus }),
  // A model or dataset was added, changed or removed; clients reload the registry lists.
  z.object({ type: z.literal("registry.changed"), key: z.string() }),
  // Files or folders of the workspace changed on disk (workspace-relative paths, at most a
  // few hundred per event); clients reload the file list and the open files among them.
  z.object({ type: z.literal("workspace.changed"), paths: z.array(z.string()) }),
]);
export type ServerEvent = z.infer<typeof ServerEvent>;

export const EventMessage = z.object({ kind: z.literal("event"), event: ServerEvent });
export type EventMessage = z.infer<typeof EventMessage>;

export const ServerMessage = z.union([ApiResponse, EventMessage]);
export type ServerMessage = z.infer<typeof ServerMessage>;

/** Converts a zod error into the issues of an invalid_request error, one per problem. */
export function toValidationIssues(error: z.ZodError): ValidationIssue[] {
  return error.issues.map((issue) => ({
    path: issue.path.map((part) => (typeof part === "symbol" ? String(part) : part)),
    message: issue.message,
  }));
}
