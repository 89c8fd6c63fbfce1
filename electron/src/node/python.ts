// Starting the engine's Python: the interpreter, PYTHONPATH and environment every Python
// child of the control plane gets.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

import { ApiError } from "./errors.js";
import type { InstallLayout } from "./layout.js";

/** Environment for a Python child: PYTHONPATH includes the engine folder, and no model hub is contacted. */
export function pythonEnv(layout: InstallLayout, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const existing = process.env.PYTHONPATH;
  return {
    ...process.env,
    PYTHONPATH: existing ? `${layout.engineDir}${path.delimiter}${existing}` : layout.engineDir,
    HF_HUB_OFFLINE: "1",
    PYTHONUNBUFFERED: "1",
    ...extra,
  };
}

/** Throws engine_unavailable with the fix when the configured interpreter does not exist. */
export function assertPythonExists(layout: InstallLayout): void {
  const isPath = layout.python.includes("/") || layout.python.includes("\\");
  if (isPath && !fs.existsSync(layout.python)) {
    throw new ApiError(
      "engine_unavailable",
      `the engine's Python interpreter ${layout.python} does not exist; ` +
        "create it with `npm run setup` (scripts/setup-python.sh) or set GALLEY_PYTHON to a Python with Galley's engine requirements",
    );
  }
}

export interface PythonResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunPythonOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** Runs `python ARGS` to completion and collects its output. */
export function runPython(layout: InstallLayout, args: string[], options: RunPythonOptions = {}): Promise<PythonResult> {
  assertPythonExists(layout);
  return new Promise((resolve, reject) => {
    const child = spawn(layout.python, args, {
      cwd: options.cwd ?? layout.engineDir,
      env: options.env ?? pythonEnv(layout),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    const timer =
      options.timeoutMs === undefined
        ? null
        : setTimeout(() => {
            child.kill("SIGKILL");
          }, options.timeoutMs);
    child.on("error", (error) => {
      if (timer) clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8"),
      });
    });
  });
}

/** Returns the last lines of a process's output, for error messages. */
export function tail(text: string, lines = 15): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}
