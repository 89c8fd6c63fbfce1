// The control plane: registry, workspace, run manager, engine supervisor and the API server,
// wired together. `galley serve`, `galley run` and the Electron main process each create one.
import crypto from "node:crypto";
import path from "node:path";

import { ApiError, errorMessage, invalidRequest, notFound } from "./errors.js";
import { EngineClient, EngineRpcError } from "./engine/engine-client.js";
import { EngineStartError, type EngineConnection, EngineSupervisor } from "./engine/supervisor.js";
import { type Db, openDatabase } from "./db/database.js";
import { type DataPaths, dataPaths, ensureDataDirectories, type InstallLayout, resolveDataHome, resolveLayout } from "./layout.js";
import { createLogger, type Logger } from "./log.js";
import { ModelService } from "./models/model-service.js";
import { DatasetService } from "./registry/dataset-service.js";
import { DatasetStore } from "./registry/dataset-store.js";
import { ModelStore } from "./registry/model-store.js";
import { RunStore } from "./registry/run-store.js";
import { type RunnerCommand, RunManager } from "./runs/run-manager.js";
import { Dispatcher } from "./server/dispatcher.js";
import { createHandlers } from "./server/handlers.js";
import { lockHolder, waitForLock } from "./server/home-lock.js";
import { ApiServer } from "./server/http-server.js";
import { newLocalToken, removeServeFile, writeServeFile } from "./server/local-access.js";
import { WorkspaceWatcher } from "./workspace/watcher.js";
import { seedWorkspace } from "./workspace/seed.js";
import { Workspace } from "./workspace/workspace.js";
import type { ReleasedSpawn, Run } from "../common/index.js";

export const DEFAULT_MODEL_KEY = "galley-tiny-qwen3";
// Generating the default model takes about half a minute on a CPU; a holder that takes far
// longer is stuck.
const DEFAULTS_LOCK_TIMEOUT_MS = 10 * 60_000;

export interface ControlPlaneOptions {
  /** Data directory; default GALLEY_HOME or the per-OS folder. */
  home?: string;
  /** Recipe workspace; default <home>/workspace. */
  workspace?: string;
  /** Virtual devices for the engine, e.g. "4x80GiB". */
  devices?: string | null;
  keepWarm?: number | null;
  /**
   * An engine that is already running (e.g. on a GPU host behind an SSH tunnel). Runs use it,
   * and `startEngine` starts no process.
   */
  externalEngine?: EngineConnection;
  /** API bearer token; default GALLEY_TOKEN, else a random one. */
  token?: string;
  /** The local token that `advertise` writes to serve.json; default a random one. */
  localToken?: string;
  /**
   * Start the engine when the first run needs it, not only in `startEngine`. `galley run` sets
   * it, so a recipe that fails its check never starts an engine.
   */
  startEngineOnDemand?: boolean;
  layout?: InstallLayout;
  log?: Logger;
  engineReadyTimeoutMs?: number;
  cancelGraceMs?: number;
  runnerCommand?(run: Run, runDir: string): RunnerCommand;
}

export class ControlPlane {
  readonly paths: DataPaths;
  readonly layout: InstallLayout;
  readonly log: Logger;
  readonly token: string;
  readonly localToken: string;
  readonly db: Db;
  readonly models: ModelService;
  readonly datasets: DatasetService;
  readonly runStore: RunStore;
  readonly runs: RunManager;
  readonly workspace: Workspace;
  readonly dispatcher: Dispatcher;
  engine: EngineSupervisor | null = null;
  private server: ApiServer | null = null;
  private watcher: WorkspaceWatcher | null = null;
  private address: { url: string; port: number } | null = null;
  private advertised = false;

  constructor(readonly options: ControlPlaneOptions = {}) {
    this.paths = dataPaths(options.home ?? resolveDataHome());
    ensureDataDirectories(this.paths);
    this.layout = options.layout ?? resolveLayout();
    this.log = options.log ?? createLogger({ filePath: this.paths.controlPlaneLog });
    this.token = options.token ?? process.env.GALLEY_TOKEN ?? crypto.randomBytes(24).toString("base64url");
    this.localToken = options.localToken ?? newLocalToken();

    this.db = openDatabase(this.paths.db);
    const publishRegistryChange = (key: string) => this.dispatcher.publish({ type: "registry.changed", key });
    this.models = new ModelService(new ModelStore(this.db), this.paths, this.layout, this.log.child("registry"), publishRegistryChange);
    this.datasets = new DatasetService(new DatasetStore(this.db), publishRegistryChange);
    this.runStore = new RunStore(this.db, (id) => this.runs.runDir(id));
    const orphans = this.runStore.failOrphans();
    if (orphans.length > 0) this.log.warn("marked runs of a stopped control plane as failed", { runs: orphans.join(",") });

    this.workspace = new Workspace(options.workspace ?? this.paths.workspace);
    this.runs = new RunManager({
      store: this.runStore,
      paths: this.paths,
      layout: this.layout,
      log: this.log.child("runs"),
      engine: () => this.engineConnection(),
      engineReady: () => this.engineReady(),
      api: () => this.apiAddress(),
      workspace: this.workspace,
      ...(options.cancelGraceMs !== undefined ? { cancelGraceMs: options.cancelGraceMs } : {}),
      ...(options.runnerCommand ? { runnerCommand: options.runnerCommand } : {}),
    });
    this.dispatcher = new Dispatcher(createHandlers(this), this.log.child("api"));
    this.runs.on("event", (event) => this.dispatcher.publish(event));
  }

  /** Returns the API server's address once it listens (null before), for the engine's and the runner's registry calls. */
  apiAddress(): { url: string; token: string } | null {
    return this.address ? { url: this.address.url, token: this.token } : null;
  }

  /** Returns the URL a person opens: the workbench with the token in the query string. */
  browserUrl(): string {
    if (!this.address) throw new Error("the control plane is not listening");
    return `${this.address.url}/?token=${encodeURIComponent(this.token)}`;
  }

  /**
   * Seeds the workspace and registers the embedded default model when the registry is empty.
   * Control planes that start together on one data directory generate the model once: the
   * others wait on defaults.lock and then find it registered.
   */
  async ensureDefaults(): Promise<void> {
    seedWorkspace(this.workspace.root, this.layout.resourcesDir, this.log);
    if (this.models.store.count() > 0) return;
    const release = await waitForLock(this.defaultsLockFile(), DEFAULTS_LOCK_TIMEOUT_MS, (holder) =>
      this.log.info("waiting for another galley process to create the default model", { pid: holder }),
    );
    try {
      if (this.models.store.count() > 0) return;
      this.log.info("the registry is empty: generating the default model (a tiny random Qwen3)", { key: DEFAULT_MODEL_KEY });
      const { model } = await this.models.makeTiny("qwen3", DEFAULT_MODEL_KEY);
      this.log.info("registered the default model", { key: model.key, path: model.path });
    } finally {
      release();
    }
  }

  /**
   * Returns the pid of the live process that holds defaults.lock, which is generating the
   * default model now; null when no process is.
   */
  defaultModelCreator(): number | null {
    return lockHolder(this.defaultsLockFile());
  }

  private defaultsLockFile(): string {
    return path.join(this.paths.home, "defaults.lock");
  }

  async listen(port = 0, host = "127.0.0.1"): Promise<{ url: string; port: number }> {
    this.server = new ApiServer({
      dispatcher: this.dispatcher,
      token: this.token,
      local: this.localToken,
      rendererDist: this.layout.rendererDist,
      log: this.log.child("http"),
    });
    const address = await this.server.listen(port, host);
    const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
    this.address = { url: `http://${urlHost}:${address.port}`, port: address.port };
    this.log.info("API listening", { url: this.address.url });
    this.watcher = new WorkspaceWatcher(
      this.workspace.root,
      (paths) => this.dispatcher.publish({ type: "workspace.changed", paths }),
      this.log.child("workspace"),
    );
    this.watcher.start();
    return this.address;
  }

  /**
   * Writes serve.json (mode 0600) with the API's URL, this process's id and the local token,
   * so that `galley` commands on this machine use this control plane and its engine instead
   * of starting their own. `close` removes the file.
   */
  advertise(): void {
    if (!this.address) throw new Error("the control plane is not listening; call listen before advertise");
    writeServeFile(this.paths.home, {
      url: this.address.url,
      pid: process.pid,
      token: this.localToken,
      workspace: this.workspace.root,
      started_at: new Date().toISOString(),
    });
    this.advertised = true;
    this.log.info("wrote serve.json for local galley commands", { pid: process.pid, url: this.address.url });
  }

  /** Creates the engine supervisor and starts the engine; needs `listen` first (the engine calls the registry). */
  async startEngine(): Promise<EngineConnection> {
    const api = this.apiAddress();
    if (!api) throw new Error("start the API server (listen) before the engine: the engine reads the registry from it");
    if (this.options.externalEngine) return this.options.externalEngine;
    if (!this.engine) {
      this.engine = new EngineSupervisor({
        layout: this.layout,
        paths: this.paths,
        registryUrl: api.url,
        apiToken: this.token,
        log: this.log.child("engine"),
        devices: this.options.devices ?? null,
        keepWarm: this.options.keepWarm ?? null,
        ...(this.options.engineReadyTimeoutMs ? { readyTimeoutMs: this.options.engineReadyTimeoutMs } : {}),
      });
      this.engine.on("status", (status) => this.dispatcher.publish({ type: "engine.status", status }));
      this.engine.on("telemetry", (telemetry) => this.dispatcher.publish({ type: "telemetry", telemetry }));
    }
    return this.engine.start();
  }

  private engineReady(): boolean {
    return this.options.externalEngine !== undefined || this.engine?.status().state === "ready";
  }

  private async engineConnection(): Promise<EngineConnection> {
    if (this.options.externalEngine) return this.options.externalEngine;
    if (!this.engine && this.options.startEngineOnDemand && this.address) {
      try {
        return await this.startEngine();
      } catch (error) {
        if (error instanceof EngineStartError) {
          throw new ApiError("engine_unavailable", error.message, { log_path: this.paths.engineLog });
        }
        throw error;
      }
    }
    if (!this.engine) {
      throw new ApiError("engine_unavailable", "the engine is not started; runs need a running engine", {
        log_path: this.paths.engineLog,
      });
    }
    try {
      return await this.engine.whenReady();
    } catch (error) {
      if (error instanceof EngineStartError) {
        throw new ApiError("engine_unavailable", error.message, { log_path: this.paths.engineLog });
      }
      throw error;
    }
  }

  /** Ends a spawn of any engine session, by the id its telemetry shows. */
  async releaseSpawn(id: string): Promise<ReleasedSpawn> {
    const released = await this.engineRequest<ReleasedSpawn>("release", { spawn_id: id });
    this.log.info("released a spawn", { spawn: released.name, id, session: released.session, pids: released.pids.join(",") });
    return released;
  }

  /**
   * Sends one RPC to the engine: on the supervisor's session, or on a short-lived session of
   * an external engine. Engine errors become API errors with the engine's message.
   */
  private async engineRequest<T>(method: string, params: Record<string, unknown>): Promise<T> {
    try {
      const external = this.options.externalEngine;
      if (external) {
        const client = await EngineClient.connect(external.url, external.token);
        try {
          return await client.request<T>(method, params);
        } finally {
          client.close();
        }
      }
      if (!this.engine) throw new EngineStartError("the engine is not started");
      return await this.engine.request<T>(method, params);
    } catch (error) {
      if (error instanceof EngineRpcError) {
        if (error.type === "not_found") throw notFound(error.message);
        if (error.type === "invalid_request") throw invalidRequest(error.message);
        throw error;
      }
      if (error instanceof ApiError) throw error;
      throw new ApiError("engine_unavailable", `cannot reach the engine for ${method}: ${errorMessage(error)}`, {
        log_path: this.paths.engineLog,
      });
    }
  }

  async close(): Promise<void> {
    // First, so that no new command connects to a control plane that is shutting down.
    if (this.advertised) removeServeFile(this.paths.home);
    this.watcher?.close();
    await this.runs.shutdown();
    await this.engine?.stop();
    await this.server?.close();
    this.db.close();
    this.log.info("control plane stopped");
  }
}
