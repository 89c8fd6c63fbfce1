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
  ) {
    super(message);
  }
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
    return error.exitCode;
  }
  if (error instanceof ApiError || error instanceof EngineStartError) {
    process.stderr.write(`error: ${error.message}\n`);
    return 1;
  }
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`error: unexpected failure: ${text}\n`);
  return 1;
}

export function parsePositiveInt(value: string, flag: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0) {
    throw new CliError(`${flag} must be a positive integer, got "${value}"`, 2);
  }
  return parsed;
}
