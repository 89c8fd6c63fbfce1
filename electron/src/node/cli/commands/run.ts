// `galley run RECIPE`: runs one recipe through an in-process control plane and exits with
// the runner's exit code (0 ok, 1 the recipe raised, 2 it could not load).
import fs from "node:fs";
import path from "node:path";

import type { Command } from "commander";

import type { Run, RunEvent, ServerEvent } from "../../../common/index.js";
import { DEFAULT_MODEL_KEY } from "../../control-plane.js";
import { CliError, type GlobalOptions, openControlPlane } from "../context.js";

interface RunOptions {
  config?: string;
  dryRun?: boolean;
  devices?: string;
  keepWarm?: string;
}

function readConfig(file: string | undefined): Record<string, unknown> {
  if (!file) return {};
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    throw new CliError(`config file ${file} does not exist`, 2);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new CliError(`config file ${file} is not valid JSON: ${(error as Error).message}`, 2);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CliError(`config file ${file} must contain a JSON object of config fields`, 2);
  }
  return value as Record<string, unknown>;
}

/** Describes a runner event as one readable stderr line; returns null for output chunks, which print as they are. */
export function describeRunEvent(event: RunEvent): string | null {
  const p = event.payload;
  switch (event.type) {
    case "stages":
      return `[stages] ${(p.stages as string[]).join(", ")}`;
    case "progress":
      return `[progress] ${String(p.stage)}: ${String(p.done)}/${String(p.total)}`;
    case "metric":
      return `[metric] ${String(p.name)}=${String(p.value)}${p.step === null || p.step === undefined ? "" : ` step=${String(p.step)}`}`;
    case "artifact":
      return `[artifact] ${String(p.name)} (${String(p.kind)}): ${String(p.uri)}`;
    case "spawn":
      return `[spawn] ${String(p.name)}: ${String(p.kind)} of ${String(p.model_key)}`;
    case "error":
      return `[error] ${String(p.message)}`;
    case "other":
      return `[event] ${JSON.stringify(p)}`;
    default:
      return null;
  }
}

/**
 * Prints a run's output and events. The runner reports locations in the run's snapshot
 * (runs/<id>/recipe.py and config.json); the terminal shows the files the person gave instead.
 */
function streamTo(runId: () => string | null, snapshotNames: (id: string) => [string, string][]) {
  const localize = (id: string, text: string) =>
    snapshotNames(id).reduce((result, [snapshot, original]) => result.split(snapshot).join(original), text);
  return (event: ServerEvent) => {
    const id = runId();
    if (id === null) return;
    if (event.type === "run.output" && event.run_id === id) {
      (event.stream === "stdout" ? process.stdout : process.stderr).write(localize(id, event.text));
    } else if (event.type === "run.event" && event.event.run_id === id) {
      const line = describeRunEvent(event.event);
      if (line) process.stderr.write(`${localize(id, line)}\n`);
    }
  };
}

export function exitCodeOf(run: Run): number {
  if (run.status === "succeeded") return 0;
  if (run.status === "cancelled") return 130;
  return run.exit_code !== null && run.exit_code > 0 ? run.exit_code : 1;
}

async function runRecipe(recipe: string, options: RunOptions, global: GlobalOptions): Promise<number> {
  const recipePath = path.resolve(recipe);
  if (!fs.existsSync(recipePath)) throw new CliError(`recipe ${recipe} does not exist`, 2);
  const config = readConfig(options.config);
  const keepWarm = options.keepWarm === undefined ? null : Number(options.keepWarm);
  if (keepWarm !== null && !(keepWarm >= 0)) throw new CliError(`--keep-warm must be a number of seconds, got "${options.keepWarm}"`, 2);

  const plane = openControlPlane(global, "warn", { devices: options.devices ?? null, keepWarm });
  let runId: string | null = null;
  const onSignal = () => {
    if (runId) plane.runs.cancel(runId);
  };
  try {
    if (plane.models.store.count() === 0) {
      process.stderr.write(`galley: the registry is empty; generating the default model ${DEFAULT_MODEL_KEY} (about half a minute)\n`);
    }
    await plane.ensureDefaults();
    await plane.listen(0);
    await plane.startEngine();

    const snapshotNames = (id: string): [string, string][] => {
      const runDir = plane.runs.runDir(id);
      const names: [string, string][] = [[path.join(runDir, "recipe.py"), recipe]];
      if (options.config) names.push([path.join(runDir, "config.json"), options.config]);
      return names;
    };
    plane.runs.on("event", streamTo(() => runId, snapshotNames));
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    const queued = plane.runs.startRun({ recipe_path: recipePath, config, dry_run: options.dryRun ?? false });
    runId = queued.id;
    const run = await plane.runs.waitForRun(queued.id);
    if (run.status === "failed" && run.exit_code === null && run.error) {
      // The runner never started (or died by a signal), so it printed no error line itself.
      process.stderr.write(`error: ${run.error.message}\n`);
    }
    return exitCodeOf(run);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await plane.close();
  }
}

export function registerRunCommand(program: Command, global: () => GlobalOptions): void {
  program
    .command("run <recipe>")
    .description("run a recipe file against a local engine and exit with its exit code (0 ok, 1 raised, 2 could not load)")
    .option("--config <file>", "JSON file with the recipe's input config")
    .option("--dry-run", "plan every spawn and stop before the first compute call")
    .option("--devices <spec>", 'virtual devices for the engine, e.g. "4x80GiB"')
    .option("--keep-warm <seconds>", "how long the engine keeps a finished session's spawns")
    .action(async (recipe: string, options: RunOptions) => {
      process.exitCode = await runRecipe(recipe, options, global());
    });
}
