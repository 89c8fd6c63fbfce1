// Runs recipes: snapshots the recipe and its config into runs/<id>/, starts
// `python -m galley.run` with the environment of docs/contracts.md, stores its output and
// events, streams them to subscribers, and records how it ended.
import { type ChildProcess, spawn } from "node:child_process";
import crypto from "node:crypto";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import type { CancelSignal, Run, RunEvent, RunEventType, RunStatus, ServerEvent } from "../../common/index.js";
import { TERMINAL_RUN_STATUSES } from "../../common/index.js";
import type { EngineConnection } from "../engine/supervisor.js";
import { conflict, errorMessage, notFound } from "../errors.js";
import type { DataPaths, InstallLayout } from "../layout.js";
import type { Logger } from "../log.js";
import { assertPythonExists, pythonEnv } from "../python.js";
import type { RunStore } from "../registry/run-store.js";
import type { Workspace } from "../workspace/workspace.js";
import { startRecipeCheck } from "./recipe-check.js";
import { OutputCollector, parseRunnerEvent, parseRunError } from "./runner-output.js";

export interface RunnerCommand {
  command: string;
  args: string[];
}

export interface RunManagerOptions {
  store: RunStore;
  paths: DataPaths;
  layout: InstallLayout;
  log: Logger;
  /** Resolves with the engine's address once it is ready; rejects if it cannot start. */
  engine(): Promise<EngineConnection>;
  /** Returns whether the engine is ready now; a run started while it is not checks its recipe first. */
  engineReady?(): boolean;
  /** The control plane's HTTP API, for the runner's registry calls; null before it listens. */
  api(): { url: string; token: string } | null;
  workspace: Workspace | null;
  /** Seconds between SIGTERM and SIGKILL when a run is cancelled. */
  cancelGraceMs?: number;
  /** Replaces `python -m galley.run ...`; the event-streaming benchmark uses it. */
  runnerCommand?(run: Run, runDir: string): RunnerCommand;
}

interface ActiveRun {
  id: string;
  child: ChildProcess | null;
  seq: number;
  cancelRequested: boolean;
  /** The signal named by the cancel request; the cancelled run's exit_code is 128 + its number. */
  cancelSignal: CancelSignal;
  /** Resolves when a cancel arrives before the runner process exists. */
  cancelledWhileQueued: Promise<null>;
  resolveCancelledWhileQueued(): void;
  killTimer: NodeJS.Timeout | null;
  done: Promise<Run>;
}

export type StartRun = { recipe_path: string; config: Record<string, unknown>; dry_run: boolean };

const DEFAULT_CANCEL_GRACE_MS = 5_000;

export function newRunId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  return `${stamp}-${crypto.randomBytes(3).toString("hex")}`;
}

export class RunManager extends EventEmitter<{ event: [ServerEvent] }> {
  private readonly active = new Map<string, ActiveRun>();

  constructor(private readonly options: RunManagerOptions) {
    super();
  }

  private get store(): RunStore {
    return this.options.store;
  }

  runDir(id: string): string {
    return path.join(this.options.paths.runs, id);
  }

  /** Resolves a recipe path: absolute as given, relative inside the workspace. */
  private resolveRecipe(recipePath: string): string {
    if (path.isAbsolute(recipePath)) return recipePath;
    if (!this.options.workspace) return path.resolve(recipePath);
    return this.options.workspace.resolve(recipePath);
  }

  /** Creates the run and starts it in the background; returns the queued run. */
  startRun(params: StartRun): Run {
    const recipeFile = this.resolveRecipe(params.recipe_path);
    let source: string;
    try {
      source = fs.readFileSync(recipeFile, "utf8");
    } catch {
      throw notFound(`recipe ${params.recipe_path} does not exist (looked for ${recipeFile})`);
    }

    const id = newRunId();
    const runDir = this.runDir(id);
    fs.mkdirSync(runDir, { recursive: true });
    fs.writeFileSync(path.join(runDir, "recipe.py"), source);
    fs.writeFileSync(path.join(runDir, "config.json"), JSON.stringify(params.config, null, 2));

    const run = this.store.create({
      id,
      recipe_path: params.recipe_path,
      recipe_source: source,
      recipe_hash: crypto.createHash("sha256").update(source).digest("hex"),
      config: params.config,
      dry_run: params.dry_run,
    });
    this.options.log.info("run queued", { run: id, recipe: params.recipe_path, dry_run: params.dry_run });
    this.emit("event", { type: "run.status", run });

    let resolveCancelled = () => {};
    const cancelledWhileQueued = new Promise<null>((resolve) => {
      resolveCancelled = () => resolve(null);
    });
    const active: ActiveRun = {
      id,
      child: null,
      seq: 0,
      cancelRequested: false,
      cancelSignal: "SIGTERM",
      cancelledWhileQueued,
      resolveCancelledWhileQueued: resolveCancelled,
      killTimer: null,
      done: Promise.resolve(run),
    };
    this.active.set(id, active);
    active.done = this.execute(active, run, path.dirname(recipeFile));
    return run;
  }

  /** Resolves with the run once it has ended. */
  async waitForRun(id: string): Promise<Run> {
    const active = this.active.get(id);
    return active ? active.done : this.store.get(id);
  }

  /**
   * Stops a run: SIGTERM to its runner, then SIGKILL after the grace period. `signal` names why
   * the caller cancels (SIGINT for Ctrl-C in `galley run`); the runner always receives SIGTERM.
   */
  cancel(id: string, signal: CancelSignal = "SIGTERM"): Run {
    const run = this.store.get(id);
    const active = this.active.get(id);
    if (TERMINAL_RUN_STATUSES.includes(run.status)) {
      throw conflict(`run ${id} has already ended with status ${run.status}; only a queued or running run can be cancelled`);
    }
    if (!active) {
      // The run is recorded as active, but no runner of this control plane runs it: it belongs
      // to a `galley run` with its own control plane, or to a control plane that died.
      throw conflict(
        `run ${id} is ${run.status} in another galley process, not in this one; press Ctrl-C in the terminal of its \`galley run\`, ` +
          "or stop that process (a run left by a stopped server is marked failed when the next one starts)",
      );
    }
    if (!active.cancelRequested) active.cancelSignal = signal;
    active.cancelRequested = true;
    this.options.log.info("cancelling run", { run: id, pid: active.child?.pid, signal });
    if (!active.child) {
      active.resolveCancelledWhileQueued();
    } else {
      active.child.kill("SIGTERM");
      const grace = this.options.cancelGraceMs ?? DEFAULT_CANCEL_GRACE_MS;
      active.killTimer = setTimeout(() => {
        this.options.log.warn("run did not stop after SIGTERM; sending SIGKILL", { run: id, pid: active.child?.pid });
        active.child?.kill("SIGKILL");
      }, grace);
    }
    return run;
  }

  /** Cancels every active run and waits for them to end. */
  async shutdown(): Promise<void> {
    const pending = [...this.active.values()];
    for (const active of pending) {
      try {
        this.cancel(active.id);
      } catch {
        // It ended in the meantime.
      }
    }
    await Promise.allSettled(pending.map((active) => active.done));
  }

  // -------------------------------------------------------------------------------------

  private appendEvent(active: ActiveRun, type: RunEventType, payload: Record<string, unknown>): RunEvent {
    const event: RunEvent = { run_id: active.id, seq: active.seq++, time: Date.now(), type, payload };
    this.store.appendEvent(event);
    if (type === "stdout" || type === "stderr") {
      this.emit("event", {
        type: "run.output",
        run_id: active.id,
        seq: event.seq,
        time: event.time,
        stream: type,
        text: String(payload.text),
      });
    } else {
      this.emit("event", { type: "run.event", event });
    }
    return event;
  }

  private setStatus(active: ActiveRun, run: Run): Run {
    this.appendEvent(active, "status", { status: run.status, exit_code: run.exit_code, error: run.error });
    this.emit("event", { type: "run.status", run });
    return run;
  }

  private async execute(active: ActiveRun, queued: Run, recipeDir: string): Promise<Run> {
    try {
      const checked = await this.checkWhileEngineNotReady(active, queued, recipeDir);
      if (checked) return checked;
      const engine = await Promise.race([this.options.engine(), active.cancelledWhileQueued]);
      if (!engine || active.cancelRequested) return this.end(active, "cancelled", null, null);
      return await this.spawnRunner(active, queued, recipeDir, engine);
    } catch (error) {
      this.options.log.error("run failed to start", { run: active.id, error: errorMessage(error) });
      return this.end(active, "failed", null, { message: errorMessage(error), file: null, line: null });
    } finally {
      if (active.killTimer) clearTimeout(active.killTimer);
      this.active.delete(active.id);
    }
  }

  /**
   * Runs the recipe check when the engine is not ready yet, so that a recipe that cannot load
   * fails at once instead of after the engine starts. Returns the ended run when the check
   * failed or the run was cancelled meanwhile; null when the run goes on.
   * NOTE: a recipe that passes is imported twice (check, then run), so its module-level code
   * runs twice. A recipe started while the engine is ready is imported once.
   */
  private async checkWhileEngineNotReady(active: ActiveRun, run: Run, recipeDir: string): Promise<Run | null> {
    // A replaced runner command (the streaming benchmark) has no --check.
    if (this.options.runnerCommand || !this.options.engineReady || this.options.engineReady()) return null;
    const api = this.options.api();
    if (!api) throw new Error("the control plane's API is not listening; the recipe check needs it for registry calls");
    const runDir = this.runDir(run.id);
    const { command, args } = this.runnerCommand(run, runDir);
    const env = pythonEnv(this.options.layout, { GALLEY_API_URL: api.url, GALLEY_API_TOKEN: api.token, GALLEY_RUN_ID: run.id });
    env.PYTHONPATH = `${env.PYTHONPATH}${path.delimiter}${recipeDir}`;

    const check = startRecipeCheck(command, args, recipeDir, env);
    this.options.log.info("checking the recipe while the engine starts", { run: run.id, pid: check.child.pid });
    const result = await Promise.race([check.done, active.cancelledWhileQueued]);
    if (result === null) {
      check.child.kill("SIGTERM");
      await check.done;
      return this.end(active, "cancelled", null, null);
    }
    if (result.code === 0) return null;

    const output = new OutputCollector((stream, text) => this.appendEvent(active, stream, { text }));
    for (const { stream, chunk } of result.output) output.write(stream, chunk);
    output.flush();
    const described = result.spawnError
      ? `cannot start the recipe check: ${result.spawnError.message}`
      : `the recipe check exited with ${result.signal ?? `code ${result.code}`}`;
    const error = parseRunError(output.stderrTail(), path.join(runDir, "recipe.py"), run.recipe_path) ?? { message: described, file: null, line: null };
    this.options.log.info("run failed its recipe check", { run: run.id, exit_code: result.code, signal: result.signal });
    return this.end(active, "failed", result.code, error);
  }

  private runnerCommand(run: Run, runDir: string): RunnerCommand {
    if (this.options.runnerCommand) return this.options.runnerCommand(run, runDir);
    assertPythonExists(this.options.layout);
    const args = ["-m", "galley.run", path.join(runDir, "recipe.py"), "--config", path.join(runDir, "config.json")];
    if (run.dry_run) args.push("--dry-run");
    return { command: this.options.layout.python, args };
  }

  private spawnRunner(active: ActiveRun, run: Run, recipeDir: string, engine: EngineConnection): Promise<Run> {
    const runDir = this.runDir(run.id);
    const { command, args } = this.runnerCommand(run, runDir);
    const api = this.options.api();
    if (!api) throw new Error("the control plane's API is not listening; the runner needs it for registry calls");
    const env = pythonEnv(this.options.layout, {
      GALLEY_ENGINE_URL: engine.url,
      GALLEY_ENGINE_TOKEN: engine.token,
      GALLEY_API_URL: api.url,
      GALLEY_API_TOKEN: api.token,
      GALLEY_RUN_ID: run.id,
      GALLEY_RUN_DIR: runDir,
      GALLEY_EVENTS_FD: "3",
    });
    // The recipe's own folder is importable too, as when it runs as `python recipe.py`.
    env.PYTHONPATH = `${env.PYTHONPATH}${path.delimiter}${recipeDir}`;

    const child = spawn(command, args, { cwd: recipeDir, env, stdio: ["ignore", "pipe", "pipe", "pipe"] });
    active.child = child;
    this.setStatus(active, this.store.markRunning(run.id));
    this.options.log.info("run started", { run: run.id, pid: child.pid });

    const output = new OutputCollector((stream, text) => this.appendEvent(active, stream, { text }));
    child.stdout!.on("data", (chunk: Buffer) => output.write("stdout", chunk));
    child.stderr!.on("data", (chunk: Buffer) => output.write("stderr", chunk));
    const events = child.stdio[3] as NodeJS.ReadableStream;
    let pendingLine = "";
    events.setEncoding("utf8");
    events.on("data", (text: string) => {
      const lines = (pendingLine + text).split("\n");
      pendingLine = lines.pop() ?? "";
      for (const line of lines) this.acceptRunnerLine(active, line, output);
    });

    return new Promise<Run>((resolve) => {
      let spawnError: Error | null = null;
      child.on("error", (error) => {
        spawnError = error;
      });
      child.on("close", (code, signal) => {
        output.flush();
        if (pendingLine) this.acceptRunnerLine(active, pendingLine, output);
        const error = spawnError
          ? { message: `cannot start the runner: ${spawnError.message}`, file: null, line: null }
          : parseRunError(output.stderrTail(), path.join(runDir, "recipe.py"), run.recipe_path);
        let status: RunStatus = "failed";
        if (active.cancelRequested) status = "cancelled";
        else if (code === 0) status = "succeeded";
        let finalError: Run["error"] = null;
        if (status === "failed") {
          finalError = error ?? { message: `the runner exited with ${signal ?? `code ${code}`}`, file: null, line: null };
        }
        this.options.log.info("run ended", { run: run.id, status, exit_code: code, signal });
        resolve(this.end(active, status, code, finalError));
      });
    });
  }

  private acceptRunnerLine(active: ActiveRun, line: string, output: OutputCollector): void {
    if (line.trim() === "") return;
    const parsed = parseRunnerEvent(line);
    // The runner sends the recipe's stdout and stderr on this pipe too, in the order written.
    // The collector stores them like the pipes' output and keeps the stderr tail for the error line.
    if (parsed.type === "stdout" || parsed.type === "stderr") {
      output.writeText(parsed.type, String(parsed.payload.text));
      return;
    }
    this.appendEvent(active, parsed.type, parsed.payload);
  }

  /**
   * Records how the run ended. A cancelled run stores 128 + the number of the cancel request's
   * signal (130 for Ctrl-C), whatever the runner returned, so that the record and the exit code
   * of the `galley run` that cancelled it agree. Its error names that signal, as in
   * "cancelled by SIGINT". The log keeps the runner's own exit status.
   */
  private end(active: ActiveRun, status: RunStatus, code: number | null, error: Run["error"]): Run {
    const cancelled = status === "cancelled";
    const exitCode = cancelled ? 128 + os.constants.signals[active.cancelSignal] : code;
    const finalError = cancelled && error === null ? { message: `cancelled by ${active.cancelSignal}`, file: null, line: null } : error;
    const run = this.store.finish(active.id, { status, exit_code: exitCode, error: finalError });
    return this.setStatus(active, run);
  }
}
