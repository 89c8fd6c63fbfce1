// `galley bench`: runs the engine's benchmark modules and the control plane's own, and writes
// one JSON file bench-results/bench-<time>.json.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import type { InstallLayout } from "../layout.js";
import { runPython, tail } from "../python.js";
import { benchEventStreaming } from "./event-streaming.js";
import { benchUiTelemetry } from "./ui-telemetry.js";

export const PYTHON_BENCHMARKS = [
  { name: "generation", module: "galley.bench.generation" },
  { name: "training", module: "galley.bench.training" },
  { name: "spawn", module: "galley.bench.spawn" },
];

// The generation benchmark's default run is sized for about five minutes on two cores.
const PYTHON_BENCH_TIMEOUT_MS = 30 * 60 * 1000;

export type BenchOutcome =
  | { status: "ok"; wall_s: number; result: unknown }
  | { status: "failed"; wall_s: number; message: string }
  | { status: "skipped"; note: string };

/** Parses the benchmark's result: the last line of stdout that is a JSON object. */
export function lastJsonObject(stdout: string): unknown {
  const lines = stdout.trim().split("\n").reverse();
  for (const line of lines) {
    const text = line.trim();
    if (!text.startsWith("{")) continue;
    try {
      return JSON.parse(text);
    } catch {
      // Not the result line; keep looking.
    }
  }
  try {
    return JSON.parse(stdout);
  } catch {
    return null;
  }
}

async function runPythonBench(layout: InstallLayout, module: string): Promise<BenchOutcome> {
  const file = path.join(layout.engineDir, ...module.split(".")) + ".py";
  if (!fs.existsSync(file)) return { status: "skipped", note: `${path.relative(path.dirname(layout.engineDir), file)} does not exist yet` };
  const started = performance.now();
  const result = await runPython(layout, ["-m", module], { timeoutMs: PYTHON_BENCH_TIMEOUT_MS });
  const wall = Number(((performance.now() - started) / 1000).toFixed(1));
  if (result.code !== 0) {
    return { status: "failed", wall_s: wall, message: `exit ${result.code ?? result.signal}: ${tail(result.stderr, 10)}` };
  }
  const parsed = lastJsonObject(result.stdout);
  if (parsed === null) return { status: "failed", wall_s: wall, message: `printed no JSON object: ${tail(result.stdout, 5)}` };
  return { status: "ok", wall_s: wall, result: parsed };
}

export interface BenchOptions {
  only?: string[];
  outDir: string;
  events?: number;
  /** Seconds the UI benchmark feeds telemetry to the page. */
  uiSeconds?: number;
  log(line: string): void;
}

export async function runBenchmarks(layout: InstallLayout, options: BenchOptions): Promise<string> {
  const selected = (name: string) => !options.only || options.only.includes(name);
  const results: Record<string, BenchOutcome> = {};

  for (const bench of PYTHON_BENCHMARKS) {
    if (!selected(bench.name)) continue;
    options.log(`running ${bench.module}`);
    results[bench.name] = await runPythonBench(layout, bench.module);
    options.log(`${bench.name}: ${results[bench.name]!.status}`);
  }
  if (selected("event_streaming")) {
    options.log("running the event streaming benchmark");
    const started = performance.now();
    try {
      const result = await benchEventStreaming(options.events);
      results.event_streaming = { status: "ok", wall_s: Number(((performance.now() - started) / 1000).toFixed(1)), result };
      options.log(`event_streaming: ${result.events_per_s} events/s`);
    } catch (error) {
      results.event_streaming = { status: "failed", wall_s: 0, message: (error as Error).message };
    }
  }
  if (selected("ui_telemetry")) {
    options.log("running the UI telemetry benchmark in Chromium");
    const started = performance.now();
    const wall = () => Number(((performance.now() - started) / 1000).toFixed(1));
    try {
      const result = await benchUiTelemetry(layout, options.uiSeconds ? { seconds: options.uiSeconds } : {});
      results.ui_telemetry = { status: "ok", wall_s: wall(), result };
      options.log(`ui_telemetry: p95 update-to-paint ${result.update_to_paint_ms.p95} ms, ${result.dropped_frames} dropped frames`);
    } catch (error) {
      results.ui_telemetry = { status: "failed", wall_s: wall(), message: (error as Error).message };
    }
  }

  const time = new Date();
  const report = {
    time: time.toISOString(),
    machine: { platform: `${os.platform()} ${os.release()}`, cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? "unknown", node: process.version },
    results,
  };
  fs.mkdirSync(options.outDir, { recursive: true });
  const file = path.join(options.outDir, `bench-${time.toISOString().replace(/[:.]/g, "-")}.json`);
  fs.writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}
