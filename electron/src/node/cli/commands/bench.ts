// `galley bench`: benchmarks that write one JSON report (never timed tests).
import path from "node:path";

import type { Command } from "commander";

import { runBenchmarks } from "../../bench/bench.js";
import { resolveLayout } from "../../layout.js";
import { parsePositiveInt } from "../context.js";

export function registerBenchCommand(program: Command): void {
  program
    .command("bench")
    .description("run the generation, training, spawn, event streaming and UI benchmarks and write bench-results/bench-<time>.json")
    .option("--only <names>", "comma-separated subset: generation, training, spawn, event_streaming, ui_telemetry")
    .option("--out <dir>", "folder for the JSON report (default: bench-results/ in the checkout)")
    .option("--events <n>", "events in the event streaming benchmark", "20000")
    .option("--ui-seconds <n>", "seconds the UI benchmark feeds telemetry to the GPU panel", "30")
    .action(async (options: { only?: string; out?: string; events: string; uiSeconds: string }) => {
      const layout = resolveLayout();
      const outDir = options.out ?? path.join(path.dirname(layout.engineDir), "bench-results");
      const file = await runBenchmarks(layout, {
        ...(options.only ? { only: options.only.split(",").map((name) => name.trim()) } : {}),
        outDir,
        events: parsePositiveInt(options.events, "--events"),
        uiSeconds: parsePositiveInt(options.uiSeconds, "--ui-seconds"),
        log: (line) => process.stderr.write(`galley bench: ${line}\n`),
      });
      process.stdout.write(`${file}\n`);
    });
}
