// Expected failures carry an error code and details for the client. Anything else thrown
// inside a handler is a bug, which reaches the client as "internal" with an error id.
import type { ApiErrorBody, ErrorCode } from "../common/index.js";

export type ApiErrorDetails = Omit<ApiErrorBody, "code" | "message">;

export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ApiErrorDetails = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  toBody(): ApiErrorBody {
    return { code: this.code, message: this.message, ...this.details };
  }
}

export function notFound(message: string, details: ApiErrorDetails = {}): ApiError {
  return new ApiError("not_found", message, details);
}

export function conflict(message: string, details: ApiErrorDetails = {}): ApiError {
  return new ApiError("conflict", message, details);
}

export function invalidRequest(message: string, details: ApiErrorDetails = {}): ApiError {
  return new ApiError("invalid_request", message, details);
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
