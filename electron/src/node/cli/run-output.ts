// Terminal output of `galley run`, wherever the run executes: output chunks as they are,
// runner events as readable stderr lines, and the exit code of the ended run.
import path from "node:path";

import type { Run, RunEvent, ServerEvent } from "../../common/index.js";

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
 * Returns the file names to show in place of a run's snapshot: the runner reports locations
 * in runs/<id>/recipe.py and config.json, and the terminal shows the files the person gave.
 */
export function snapshotNames(runDir: string, recipe: string, configFile: string | undefined): [string, string][] {
  const names: [string, string][] = [[path.join(runDir, "recipe.py"), recipe]];
  if (configFile) names.push([path.join(runDir, "config.json"), configFile]);
  return names;
}

/** Returns a listener that prints the output and events of run `runId` and ignores other events. */
export function runPrinter(runId: string, names: [string, string][]): (event: ServerEvent) => void {
  const localize = (text: string) => names.reduce((result, [snapshot, original]) => result.split(snapshot).join(original), text);
  return (event: ServerEvent) => {
    if (event.type === "run.output" && event.run_id === runId) {
      (event.stream === "stdout" ? process.stdout : process.stderr).write(localize(event.text));
    } else if (event.type === "run.event" && event.event.run_id === runId) {
      const line = describeRunEvent(event.event);
      if (line) process.stderr.write(`${localize(line)}\n`);
    }
  };
}

export function exitCodeOf(run: Run): number {
  if (run.status === "succeeded") return 0;
  if (run.status === "cancelled") return 130;
  return run.exit_code !== null && run.exit_code > 0 ? run.exit_code : 1;
}

/** Prints the error of a run whose runner never printed its own error line; returns the exit code. */
export function finishRun(run: Run): number {
  if (run.status === "failed" && run.exit_code === null && run.error) {
    // The runner never started (or died by a signal), so it printed no error line itself.
    process.stderr.write(`error: ${run.error.message}\n`);
  }
  return exitCodeOf(run);
}
