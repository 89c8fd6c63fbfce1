// `galley run` without a server: an in-process control plane and, once the recipe passes its
// check, an engine of its own, both stopped when the run ends.
import type { CancelSignal } from "../../common/index.js";
import { DEFAULT_MODEL_KEY } from "../control-plane.js";
import { type GlobalOptions, openControlPlane } from "./context.js";
import { finishRun, ignoreClosedTerminal, runPrinter, snapshotNames } from "./run-output.js";

export interface RunRequest {
  /** The recipe path as the person typed it, shown in messages. */
  recipe: string;
  recipePath: string;
  /** The config file as the person typed it. */
  configFile: string | undefined;
  config: Record<string, unknown>;
  dryRun: boolean;
}

export interface EngineSettings {
  devices: string | null;
  keepWarm: number | null;
}

export async function runInProcess(request: RunRequest, engine: EngineSettings, global: GlobalOptions): Promise<number> {
  // The run manager checks the recipe (load, config) before it requests the engine, so a
  // recipe that cannot load fails in about a second and no engine starts.
  const plane = openControlPlane(global, "warn", { ...engine, startEngineOnDemand: true });
  let runId: string | null = null;
  let cancelSignal: CancelSignal | null = null;
  const onSignal = (signal: CancelSignal) => {
    if (signal === "SIGHUP") ignoreClosedTerminal();
    if (!runId || cancelSignal) return;
    cancelSignal = signal;
    try {
      plane.runs.cancel(runId, signal);
    } catch {
      // The run ended in the meantime.
    }
  };
  const handlers = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((signal) => [signal, () => onSignal(signal)] as const);
  try {
    if (plane.models.store.count() === 0) {
      process.stderr.write(`galley: the registry is empty; generating the default model ${DEFAULT_MODEL_KEY} (about half a minute)\n`);
    }
    await plane.ensureDefaults();
    await plane.listen(0);

    for (const [signal, handler] of handlers) process.once(signal, handler);
    const queued = plane.runs.startRun({ recipe_path: request.recipePath, config: request.config, dry_run: request.dryRun });
    runId = queued.id;
    plane.runs.on("event", runPrinter(queued.id, snapshotNames(plane.runs.runDir(queued.id), request.recipe, request.configFile)));
    return finishRun(await plane.runs.waitForRun(queued.id), cancelSignal);
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler);
    await plane.close();
  }
}
