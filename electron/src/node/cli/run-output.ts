// Terminal output of `galley run`, wherever the run executes: output chunks as they are,
// runner events as readable stderr lines, and the exit code of the ended run.
import os from "node:os";
import path from "node:path";

import type { CancelSignal, Run, RunEvent, ServerEvent } from "../../common/index.js";

// The runner's last line when the run manager's SIGTERM cancels it. It names the @recipe_main
// line and SIGTERM whatever the person pressed, so the terminal shows how the run was
// cancelled instead (see describeCancel).
const RUNNER_CANCEL_LINE = /^error: [^\n]*:\d+: cancelled by SIGTERM\r?(\n|$)/gm;

/** Removes the runner's "cancelled by SIGTERM" error line from output text. */
export function dropRunnerCancelLine(text: string): string {
  return text.replace(RUNNER_CANCEL_LINE, "");
}

const CANCEL_REASONS: Record<CancelSignal, string> = {
  SIGINT: "Ctrl-C",
  SIGTERM: "SIGTERM",
  SIGHUP: "SIGHUP, the terminal closed",
};

/**
 * Describes how a cancelled run was stopped: by this terminal's signal, or elsewhere (the
 * workbench, `galley runs cancel`), where only the record's exit code gives the signal.
 */
export function describeCancel(run: Run, signal: CancelSignal | null): string {
  if (signal) return `run ${run.id} cancelled (${CANCEL_REASONS[signal]})`;
  return `run ${run.id} was cancelled outside this terminal (exit code ${run.exit_code ?? "-"})`;
}

/**
 * Describes a cancelled run from its record, as "cancelled by SIGINT (exit code 130)". The
 * signal is read from the exit code, 128 + the cancel request's signal, so that records written
 * before the run manager stored a cancel error are described too.
 */
export function describeCancelledRecord(run: Run): string {
  const number = run.exit_code === null ? null : run.exit_code - 128;
  const signal = Object.entries(os.constants.signals).find(([, value]) => value === number)?.[0];
  if (!signal) return `cancelled (exit code ${run.exit_code ?? "-"})`;
  return `cancelled by ${signal} (exit code ${run.exit_code})`;
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
 * Returns the file names to show in place of a run's snapshot: the runner reports locations
 * in runs/<id>/recipe.py and config.json, and the terminal shows the files the person gave.
 */
export function snapshotNames(runDir: string, recipe: string, configFile: string | undefined): [string, string][] {
  const names: [string, string][] = [[path.join(runDir, "recipe.py"), recipe]];
  if (configFile) names.push([path.join(runDir, "config.json"), configFile]);
  return names;
}

/**
 * Keeps writes to a closed terminal from crashing the process, so that it still receives the
 * run's last status after SIGHUP. Output written after that is lost.
 */
export function ignoreClosedTerminal(): void {
  for (const stream of [process.stdout, process.stderr]) stream.on("error", () => {});
}

/** Returns a function that replaces each snapshot path in a text with the path the person gave. */
export function localizer(names: [string, string][]): (text: string) => string {
  return (text) => names.reduce((result, [snapshot, original]) => result.split(snapshot).join(original), text);
}

/** Returns a listener that prints the output and events of run `runId` and ignores other events. */
export function runPrinter(runId: string, names: [string, string][]): (event: ServerEvent) => void {
  const localize = localizer(names);
  return (event: ServerEvent) => {
    if (event.type === "run.output" && event.run_id === runId) {
      const text = localize(event.stream === "stderr" ? dropRunnerCancelLine(event.text) : event.text);
      if (text) (event.stream === "stdout" ? process.stdout : process.stderr).write(text);
    } else if (event.type === "run.event" && event.event.run_id === runId) {
      const line = describeRunEvent(event.event);
      if (line) process.stderr.write(`${localize(line)}\n`);
    }
  };
}

/**
 * Returns the exit code of `galley run` for an ended run. A cancelled run exits with the code
 * its record stores, 128 + the cancel request's signal (130 for Ctrl-C, 143 for SIGTERM).
 */
export function exitCodeOf(run: Run): number {
  if (run.status === "succeeded") return 0;
  if (run.status === "cancelled") return run.exit_code !== null && run.exit_code > 128 ? run.exit_code : 130;
  return run.exit_code !== null && run.exit_code > 0 ? run.exit_code : 1;
}

/**
 * Prints the error of a run whose runner never printed its own error line, or how a cancelled
 * run was stopped; returns the exit code. `cancelSignal` is the signal this terminal forwarded.
 */
export function finishRun(run: Run, cancelSignal: CancelSignal | null = null): number {
  if (run.status === "failed" && run.exit_code === null && run.error) {
    // The runner never started (or died by a signal), so it printed no error line itself.
    process.stderr.write(`error: ${run.error.message}\n`);
  }
  if (run.status === "cancelled") process.stderr.write(`galley: ${describeCancel(run, cancelSignal)}\n`);
  return exitCodeOf(run);
}
