// Typed calls to the control plane: `call("runs.start", {...})` sends one contract request
// through the page's transport and returns the validated result, or throws ApiError with the
// server's error body.
import { api, type ApiErrorBody, type ApiMethod, type ApiParams, type ApiResult } from "@galley/common";

import type { Transport } from "../transport/transport";

export class ApiError extends Error {
  constructor(
    readonly method: ApiMethod,
    readonly body: ApiErrorBody,
  ) {
    super(body.message);
    this.name = "ApiError";
  }
}

let transport: Transport | null = null;
let nextId = 1;

export function setTransport(next: Transport): void {
  transport = next;
}

export function getTransport(): Transport {
  if (!transport) throw new Error("The API transport is not set up yet; call setTransport() first.");
  return transport;
}

export async function call<M extends ApiMethod>(method: M, params: ApiParams<M>): Promise<ApiResult<M>> {
  const response = await getTransport().request({ kind: "request", id: nextId++, method, params });
  if (!response.ok) throw new ApiError(method, response.error);
  return api[method].result.parse(response.result) as ApiResult<M>;
}

/** Renders any error as the sentences a person reads: the message, then each detail. */
export function describeError(error: unknown): string {
  if (!(error instanceof ApiError)) return error instanceof Error ? error.message : String(error);
  const { body } = error;
  const lines = [body.message];
  for (const issue of body.issues ?? []) lines.push(`${issue.path.join(".") || "(params)"}: ${issue.message}`);
  for (const reason of body.reasons ?? []) lines.push(reason);
  if (body.known_keys?.length) lines.push(`Known keys: ${body.known_keys.join(", ")}`);
  if (body.file) lines.push(`at ${body.file}${body.line ? `:${body.line}` : ""}`);
  if (body.log_path) lines.push(`Details are in ${body.log_path}${body.error_id ? ` (error ${body.error_id})` : ""}.`);
  return lines.join("\n");
}
