// Starts the engine process (python -m galley.engine), waits for its ready line, checks its
// health, restarts it with backoff when it exits unexpectedly, appends its output to
// logs/engine.log and keeps the telemetry it pushes.
import { type ChildProcess, spawn } from "node:child_process";
import crypto from "node:crypto";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";

import { type EngineState, type EngineStatus, Telemetry } from "../../common/index.js";
import type { DataPaths, InstallLayout } from "../layout.js";
import type { Logger } from "../log.js";
import { processExists } from "../processes.js";
import { assertPythonExists, pythonEnv } from "../python.js";
import { EngineClient } from "./engine-client.js";
import { TelemetryHistory } from "./telemetry-history.js";

export interface SupervisorOptions {
  layout: InstallLayout;
  paths: DataPaths;
  /** Base URL of the control plane's HTTP server, for the engine's registry calls. */
  registryUrl: string;
  apiToken: string;
  log: Logger;
  /** Virtual devices, e.g. "4x80GiB"; null uses the machine's devices. */
  devices?: string | null;
  /** Seconds a closed session's spawns stay warm; null keeps the engine's default (30 s). */
  keepWarm?: number | null;
  readyTimeoutMs?: number;
}

export interface EngineConnection {
  url: string;
  token: string;
}

export class EngineStartError extends Error {}

const READY_PREFIX = "GALLEY_ENGINE_READY ";
const DEFAULT_READY_TIMEOUT_MS = 120_000;
const HEALTH_INTERVAL_MS = 10_000;
const HEALTH_TIMEOUT_MS = 5_000;
const HEALTH_FAILURES_BEFORE_RESTART = 3;
const MAX_RESTART_DELAY_MS = 30_000;
// An engine that stays up this long resets the restart backoff.
const STABLE_UPTIME_MS = 60_000;
const MAX_CONSECUTIVE_RESTARTS = 10;
const STOP_GRACE_MS = 10_000;
const KEPT_LOG_LINES = 40;

const TOKEN_FILE = /^engine-(\d+)\.token$/;

/**
 * Removes the engine token files of control planes that exited without `stop` (killed with
 * SIGKILL, or crashed). The pid in a file's name is its control plane's; files of live
 * processes stay.
 */
export function removeStaleTokenFiles(home: string, log: Logger): void {
  let names: string[];
  try {
    names = fs.readdirSync(home);
  } catch (error) {
    log.warn("cannot list the data directory for stale engine token files", { home, error: (error as Error).message });
    return;
  }
  for (const name of names) {
    const pid = Number(TOKEN_FILE.exec(name)?.[1]);
    if (!pid || pid === process.pid || processExists(pid)) continue;
    fs.rmSync(path.join(home, name), { force: true });
    log.info("removed the engine token file of an exited control plane", { file: name, pid });
  }
}

export class EngineSupervisor extends EventEmitter<{ status: [EngineStatus]; telemetry: [Telemetry] }> {
  readonly history = new TelemetryHistory();
  private state: EngineState = "stopped";
  private child: ChildProcess | null = null;
  private client: EngineClient | null = null;
  private connection: EngineConnection | null = null;
  private readonly tokenFile: string;
  private logStream: fs.WriteStream | null = null;
  private recentLines: string[] = [];
  private startedAt: Date | null = null;
  private restarts = 0;
  private consecutiveRestarts = 0;
  private lastError: string | null = null;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private healthTimer: NodeJS.Timeout | null = null;
  private healthFailures = 0;
  private readyWaiters: { resolve(connection: EngineConnection): void; reject(error: Error): void }[] = [];
  private loggedBadTelemetry = false;

  constructor(private readonly options: SupervisorOptions) {
    super();
    this.tokenFile = path.join(options.paths.home, `engine-${process.pid}.token`);
    removeStaleTokenFiles(options.paths.home, options.log);
  }

  get log(): Logger {
    return this.options.log;
  }

  status(): EngineStatus {
    return {
      state: this.state,
      url: this.connection?.url ?? null,
      pid: this.child?.pid ?? null,
      restarts: this.restarts,
      started_at: this.startedAt?.toISOString() ?? null,
      last_error: this.lastError,
      log_path: this.options.paths.engineLog,
      devices: this.options.devices ?? null,
    };
  }

  /** Returns the engine's URL and token while it is ready, else null. */
  current(): EngineConnection | null {
    return this.state === "ready" ? this.connection : null;
  }

  /** Resolves when the engine is ready; rejects if it fails or is stopped first, or after the timeout. */
  whenReady(timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<EngineConnection> {
    if (this.state === "ready" && this.connection) return Promise.resolve(this.connection);
    if (this.state === "failed" || this.state === "stopped") {
      return Promise.reject(new EngineStartError(this.unavailableMessage()));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((waiter) => waiter !== entry);
        reject(new EngineStartError(`the engine was not ready within ${timeoutMs / 1000} s; see ${this.options.paths.engineLog}`));
      }, timeoutMs);
      const entry = {
        resolve: (connection: EngineConnection) => {
          clearTimeout(timer);
          resolve(connection);
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.readyWaiters.push(entry);
    });
  }

  /** Sends one RPC on the supervisor's own engine session; rejects while the engine is not ready. */
  request<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    if (this.state !== "ready" || !this.client) return Promise.reject(new EngineStartError(this.unavailableMessage()));
    return this.client.request<T>(method, params);
  }

  unavailableMessage(): string {
    const reason = this.lastError ? `: ${this.lastError}` : "";
    return `the engine is ${this.state}${reason}; see ${this.options.paths.engineLog}`;
  }

  /** Starts the engine and waits until it is ready and healthy. */
  async start(): Promise<EngineConnection> {
    if (this.state !== "stopped" && this.state !== "failed") return this.whenReady();
    this.stopping = false;
    this.restarts = 0;
    this.consecutiveRestarts = 0;
    try {
      return await this.launch();
    } catch (error) {
      this.fail((error as Error).message);
      throw error;
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.stopHealthChecks();
    this.client?.close();
    this.client = null;
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      this.log.info("stopping engine", { pid: child.pid });
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const killTimer = setTimeout(() => {
        this.log.warn("engine did not exit after SIGTERM; sending SIGKILL", { pid: child.pid });
        child.kill("SIGKILL");
      }, STOP_GRACE_MS);
      await exited;
      clearTimeout(killTimer);
    }
    this.child = null;
    this.connection = null;
    fs.rmSync(this.tokenFile, { force: true });
    this.logStream?.end();
    this.logStream = null;
    this.setState("stopped");
    this.rejectWaiters(new EngineStartError("the engine was stopped"));
  }

  // -------------------------------------------------------------------------------------
  // Launching

  private openLog(): fs.WriteStream {
    if (!this.logStream) {
      fs.mkdirSync(path.dirname(this.options.paths.engineLog), { recursive: true });
      this.logStream = fs.createWriteStream(this.options.paths.engineLog, { flags: "a" });
    }
    return this.logStream;
  }

  private recordLine(line: string): void {
    this.openLog().write(`${line}\n`);
    this.recentLines.push(line);
    if (this.recentLines.length > KEPT_LOG_LINES) this.recentLines.shift();
  }

  private engineArgs(): string[] {
    const args = ["-m", "galley.engine", "--host", "127.0.0.1", "--port", "0", "--token-file", this.tokenFile];
    args.push("--registry-url", this.options.registryUrl, "--models-dir", this.options.paths.models);
    if (this.options.devices) args.push("--devices", this.options.devices);
    if (this.options.keepWarm !== undefined && this.options.keepWarm !== null) {
      args.push("--keep-warm", String(this.options.keepWarm));
    }
    return args;
  }

  private launch(): Promise<EngineConnection> {
    assertPythonExists(this.options.layout);
    this.setState(this.restarts > 0 ? "restarting" : "starting");
    const token = crypto.randomBytes(32).toString("hex");
    fs.mkdirSync(path.dirname(this.tokenFile), { recursive: true });
    fs.writeFileSync(this.tokenFile, token, { mode: 0o600 });
    this.recentLines = [];
    this.openLog().write(`--- ${new Date().toISOString()} starting engine: ${this.options.layout.python} ${this.engineArgs().join(" ")}\n`);

    const child = spawn(this.options.layout.python, this.engineArgs(), {
      cwd: this.options.layout.engineDir,
      env: pythonEnv(this.options.layout, { GALLEY_API_TOKEN: this.options.apiToken }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    this.log.info("starting engine", { pid: child.pid, devices: this.options.devices ?? undefined });
    readline.createInterface({ input: child.stderr! }).on("line", (line) => this.recordLine(line));

    return new Promise<EngineConnection>((resolve, reject) => {
      let settled = false;
      const settle = (error: Error | null, connection?: EngineConnection) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(connection!);
      };
      const timeoutMs = this.options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        settle(new EngineStartError(this.startFailure(`did not print its ready line within ${timeoutMs / 1000} s`)));
      }, timeoutMs);

      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        if (!line.startsWith(READY_PREFIX)) {
          this.recordLine(line);
          return;
        }
        const url = line.slice(READY_PREFIX.length).trim();
        this.connect({ url, token }).then(
          (connection) => settle(null, connection),
          (error: Error) => {
            child.kill("SIGKILL");
            settle(new EngineStartError(this.startFailure(`failed its health check: ${error.message}`)));
          },
        );
      });
      child.on("error", (error) => settle(new EngineStartError(`cannot start ${this.options.layout.python}: ${error.message}`)));
      child.on("exit", (code, signal) => {
        settle(new EngineStartError(this.startFailure(`exited with ${signal ?? `code ${code}`} before it was ready`)));
        this.onExit(child, code, signal);
      });
    });
  }

  private startFailure(failure: string): string {
    const recent = this.recentLines.slice(-15).join("\n");
    return `the engine ${failure}; see ${this.options.paths.engineLog}${recent ? `\nlast engine output:\n${recent}` : ""}`;
  }

  private async connect(connection: EngineConnection): Promise<EngineConnection> {
    const client = await EngineClient.connect(connection.url, connection.token);
    try {
      await client.request("health", {}, HEALTH_TIMEOUT_MS);
      await client.request("subscribe", { topics: ["telemetry"] });
    } catch (error) {
      client.close();
      throw error;
    }
    client.on("event", (event) => {
      if (event.event === "telemetry") this.acceptTelemetry(event.data);
    });
    this.client = client;
    this.connection = connection;
    this.startedAt = new Date();
    this.lastError = null;
    this.startHealthChecks();
    this.setState("ready");
    this.log.info("engine ready", { pid: this.child?.pid, url: connection.url });
    for (const waiter of this.readyWaiters.splice(0)) waiter.resolve(connection);
    return connection;
  }

  private acceptTelemetry(data: unknown): void {
    const parsed = Telemetry.safeParse(data);
    if (!parsed.success) {
      if (!this.loggedBadTelemetry) {
        this.log.warn("ignoring telemetry that does not match the contract", { issue: parsed.error.issues[0]?.message });
        this.loggedBadTelemetry = true;
      }
      return;
    }
    this.history.push(parsed.data);
    this.emit("telemetry", parsed.data);
  }

  // -------------------------------------------------------------------------------------
  // Health and restarts

  private startHealthChecks(): void {
    this.stopHealthChecks();
    this.healthFailures = 0;
    this.healthTimer = setInterval(() => void this.checkHealth(), HEALTH_INTERVAL_MS);
    this.healthTimer.unref();
  }

  private stopHealthChecks(): void {
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.healthTimer = null;
  }

  private async checkHealth(): Promise<void> {
    if (!this.client || this.state !== "ready") return;
    try {
      await this.client.request("health", {}, HEALTH_TIMEOUT_MS);
      this.healthFailures = 0;
      if (this.startedAt && Date.now() - this.startedAt.getTime() > STABLE_UPTIME_MS) this.consecutiveRestarts = 0;
    } catch (error) {
      this.healthFailures++;
      this.log.warn("engine health check failed", { pid: this.child?.pid, failures: this.healthFailures, error: (error as Error).message });
      if (this.healthFailures >= HEALTH_FAILURES_BEFORE_RESTART) {
        this.log.error("engine is unresponsive; killing it to restart", { pid: this.child?.pid });
        this.child?.kill("SIGKILL");
      }
    }
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child) return;
    this.stopHealthChecks();
    this.client?.close();
    this.client = null;
    this.connection = null;
    this.child = null;
    this.history.clear();
    // A stop is expected, and launch() reports an engine that exits before it is ready.
    if (this.stopping || this.state !== "ready") return;

    this.lastError = `exited unexpectedly with ${signal ?? `code ${code}`}`;
    this.log.error("engine exited unexpectedly", { pid: child.pid, code, signal, log: this.options.paths.engineLog });
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    if (this.consecutiveRestarts >= MAX_CONSECUTIVE_RESTARTS) {
      this.fail(`${this.lastError}; gave up after ${MAX_CONSECUTIVE_RESTARTS} restarts in a row`);
      return;
    }
    const delay = Math.min(1000 * 2 ** this.consecutiveRestarts, MAX_RESTART_DELAY_MS);
    this.consecutiveRestarts++;
    this.restarts++;
    this.setState("restarting");
    this.log.info("restarting engine", { attempt: this.consecutiveRestarts, delay_ms: delay });
    this.restartTimer = setTimeout(() => {
      this.launch().catch((error: Error) => {
        this.lastError = error.message;
        if (!this.stopping) this.scheduleRestart();
      });
    }, delay);
  }

  private fail(message: string): void {
    this.lastError = message;
    this.setState("failed");
    this.rejectWaiters(new EngineStartError(this.unavailableMessage()));
  }

  private rejectWaiters(error: Error): void {
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(error);
  }

  private setState(state: EngineState): void {
    if (state === this.state) return;
    this.state = state;
    this.emit("status", this.status());
  }
}
