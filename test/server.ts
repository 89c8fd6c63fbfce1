// Starts a real `galley serve` on a free port for the end-to-end tests: a given GALLEY_HOME,
// a known token, extra serve arguments (e.g. --devices 4x80GiB), and its output kept in
// test/artifacts/<logName>.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

export const ROOT = path.resolve(__dirname, "..");
export const ARTIFACTS = path.join(ROOT, "test", "artifacts");
const GALLEY_BIN = path.join(ROOT, "electron", "bin", "galley.js");
// First start generates the default model and starts the engine, which imports torch.
const READY_TIMEOUT_MS = 180_000;
const STOP_TIMEOUT_MS = 20_000;

export interface RunningServer {
  url: string;
  token: string;
  home: string;
  stop(): Promise<void>;
}

function serverEnv(home: string, token: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GALLEY_HOME: home,
    GALLEY_TOKEN: token,
    HF_HUB_OFFLINE: "1",
    TOKENIZERS_PARALLELISM: "false",
    OMP_NUM_THREADS: "1",
  };
}

function waitForUrl(server: ChildProcess, log: fs.WriteStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => {
      reject(new Error(`galley serve printed no URL within ${READY_TIMEOUT_MS / 1000} s; see ${log.path}`));
    }, READY_TIMEOUT_MS);
    const scan = (chunk: Buffer) => {
      log.write(chunk);
      output += chunk.toString("utf8");
      const match = /http:\/\/127\.0\.0\.1:\d+\/\?token=[^\s"']+/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[0]);
      }
    };
    server.stdout?.on("data", scan);
    server.stderr?.on("data", scan);
    server.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`galley serve exited early (code ${code}, signal ${signal}); see ${log.path}`));
    });
  });
}

function stopProcess(server: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (server.exitCode !== null || server.signalCode !== null) return resolve();
    const timer = setTimeout(() => server.kill("SIGKILL"), STOP_TIMEOUT_MS);
    server.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    // SIGTERM lets the control plane stop runs and the engine, which ends its workers.
    server.kill("SIGTERM");
  });
}

/** Runs the galley CLI against `home` to completion, e.g. to register a model before serving. */
export function galleyCli(home: string, args: string[]): string {
  return execFileSync(process.execPath, [GALLEY_BIN, ...args], {
    cwd: ROOT,
    env: { ...serverEnv(home, "unused"), GALLEY_LOG_LEVEL: "warn" },
    encoding: "utf8",
  });
}

export async function startServer(options: { home: string; args?: string[]; logName: string }): Promise<RunningServer> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const token = crypto.randomBytes(16).toString("hex");
  const log = fs.createWriteStream(path.join(ARTIFACTS, options.logName));
  const server = spawn(process.execPath, [GALLEY_BIN, "serve", "--port", "0", ...(options.args ?? [])], {
    cwd: ROOT,
    env: serverEnv(options.home, token),
    stdio: ["ignore", "pipe", "pipe"],
  });

  let url: string;
  try {
    url = await waitForUrl(server, log);
  } catch (error) {
    await stopProcess(server);
    log.end();
    throw error;
  }
  return {
    url,
    token,
    home: options.home,
    stop: async () => {
      await stopProcess(server);
      log.end();
    },
  };
}
