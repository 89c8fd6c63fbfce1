// Shared pieces of the CLI commands: opening the control plane and reporting errors.
import { ControlPlane, type ControlPlaneOptions } from "../control-plane.js";
import { EngineStartError } from "../engine/supervisor.js";
import { ApiError } from "../errors.js";
import { dataPaths, resolveDataHome } from "../layout.js";
import { createLogger, type LogLevel } from "../log.js";

export interface GlobalOptions {
  home?: string;
  verbose?: boolean;
}

/** Thrown by commands for a failure already explained in its message; exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
    /** Lines printed after the message, such as every problem of a rejected file. */
    readonly reasons: string[] = [],
  ) {
    super(message);
  }
}

/** Exit code of a command that could not reach the Galley server or lost its connection to it. */
export const EXIT_SERVER_UNREACHABLE = 3;

/** Thrown when the server at GALLEY_URL or in serve.json cannot be reached; exits 3. */
export class ServerUnreachableError extends CliError {
  constructor(message: string) {
    super(message, EXIT_SERVER_UNREACHABLE);
  }
}

// Enough reasons to fix a file in one pass without scrolling past the terminal.
const MAX_PRINTED_REASONS = 20;
const MORE_REASONS = /^… and (\d+) more/;

/**
 * Prints the reasons of an error under its message, at most MAX_PRINTED_REASONS of them. A
 * single reason that the message already contains is not repeated.
 */
function printReasons(message: string, reasons: string[]): void {
  if (reasons.length === 0 || (reasons.length === 1 && message.includes(reasons[0]!))) return;
  // The registry lists a bounded number of reasons and ends with "… and N more problems".
  const summary = MORE_REASONS.exec(reasons.at(-1)!);
  const listed = summary ? reasons.slice(0, -1) : reasons;
  const unlisted = summary ? Number(summary[1]) : 0;
  for (const reason of listed.slice(0, MAX_PRINTED_REASONS)) process.stderr.write(`  ${reason}\n`);
  const hidden = Math.max(listed.length - MAX_PRINTED_REASONS, 0) + unlisted;
  if (hidden > 0) process.stderr.write(`  … and ${hidden} more\n`);
}

export function openControlPlane(
  global: GlobalOptions,
  consoleLevel: LogLevel,
  options: Omit<ControlPlaneOptions, "home" | "log"> = {},
): ControlPlane {
  const home = global.home ?? resolveDataHome();
  const log = createLogger({
    consoleLevel: global.verbose ? "debug" : consoleLevel,
    filePath: dataPaths(home).controlPlaneLog,
  });
  return new ControlPlane({ ...options, home, log });
}

/** Prints an error as `error: message` and returns the exit code for it. */
export function reportError(error: unknown): number {
  if (error instanceof CliError) {
    process.stderr.write(`error: ${error.message}\n`);
    printReasons(error.message, error.reasons);
    return error.exitCode;
  }
  if (error instanceof ApiError) {
    process.stderr.write(`error: ${error.message}\n`);
    printReasons(error.message, error.details.reasons ?? []);
    return 1;
  }
  if (error instanceof EngineStartError) {
    process.stderr.write(`error: ${error.message}\n`);
    return 1;
  }
  const known = describeSystemError(error);
  if (known) {
    process.stderr.write(`error: ${known}\n`);
    return 1;
  }
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`error: unexpected failure: ${text}\n`);
  return 1;
}

/** Turns the operating system errors a person can fix into one sentence; undefined for others. */
function describeSystemError(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const { code, path: file, port, address } = error as NodeJS.ErrnoException & { port?: number; address?: string };
  switch (code) {
    case "EADDRINUSE":
      return `port ${port ?? ""} on ${address ?? "127.0.0.1"} is already in use; pick another with --port, or --port 0 for a free one`;
    case "EACCES":
    case "EPERM":
      return `permission denied for ${file ?? port ?? "a resource"}: ${error.message}`;
    case "ENOTDIR":
      return `${file ?? "a path"} cannot be used: a part of it is a file, not a folder; point --home, GALLEY_HOME or --workspace at a folder`;
    case "EEXIST":
      return `${file ?? "a path"} is a file where Galley needs a folder; point --home, GALLEY_HOME or --workspace at a folder`;
    case "ECONNREFUSED":
      return `nothing is listening at ${address ?? ""}:${port ?? ""}; check GALLEY_URL, or start \`galley serve\``;
    default:
      if (error instanceof TypeError && error.message === "fetch failed") {
        return `the request to the Galley server failed (${String(error.cause ?? "no reason given")}); check GALLEY_URL and that \`galley serve\` is running`;
      }
      return undefined;
  }
}

export function parsePositiveInt(value: string, flag: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0) {
    throw new CliError(`${flag} must be a positive integer, got "${value}"`, 2);
  }
  return parsed;
}
