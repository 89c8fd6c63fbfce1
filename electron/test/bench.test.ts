import fs from "node:fs";
import path from "node:path";

import { describe, expect, test } from "vitest";

import { lastJsonObject, runBenchmarks } from "../src/node/bench/bench.js";
import { benchEventStreaming } from "../src/node/bench/event-streaming.js";
import { benchUiTelemetry, syntheticSample } from "../src/node/bench/ui-telemetry.js";
import { Telemetry } from "../src/common/index.js";
import { layout, tempDir } from "./helpers.js";

describe("bench", () => {
  test("result is the last JSON line", () => {
    expect(lastJsonObject('loading\n{"a": 1}\nwarming up\n{"name": "x", "v": 2}\n')).toEqual({ name: "x", v: 2 });
    expect(lastJsonObject('{\n  "pretty": true\n}\n')).toEqual({ pretty: true });
    expect(lastJsonObject("no json here")).toBeNull();
  });

  test("event streaming delivers every event", { timeout: 60_000 }, async () => {
    const result = await benchEventStreaming(500);
    expect(result.name).toBe("event_streaming");
    expect(result.events).toBe(500);
    expect(result.events_per_s).toBeGreaterThan(0);
  });

  test("missing modules are skipped with a note", { timeout: 60_000 }, async () => {
    const engineDir = tempDir("engine");
    const outDir = tempDir("bench-out");
    const file = await runBenchmarks({ ...layout, engineDir }, { only: ["generation", "training"], outDir, log: () => {} });
    expect(path.dirname(file)).toBe(outDir);
    const report = JSON.parse(fs.readFileSync(file, "utf8")) as { results: Record<string, { status: string; note: string }> };
    expect(report.results.generation).toEqual({ status: "skipped", note: expect.stringMatching(/galley\/bench\/generation\.py does not exist yet$/) });
    expect(report.results.training?.status).toBe("skipped");
    expect(report.results.event_streaming).toBeUndefined();
  });

  test("synthetic telemetry matches the contract", () => {
    const sample = syntheticSample(1000, 8, 32);
    expect(Telemetry.parse(sample)).toBeTruthy();
    expect(sample.devices).toHaveLength(8);
    expect(sample.spawns).toHaveLength(32);
    for (const device of sample.devices) expect(device.used_bytes).toBeLessThanOrEqual(device.total_bytes);
    // Every spawn's memory moves between samples, so each one repaints the panel.
    expect(syntheticSample(1000.5, 8, 32).spawns[0]!.ranks[0]!.plan).not.toEqual(sample.spawns[0]!.ranks[0]!.plan);
  });

  const chromium = process.env.GALLEY_CHROMIUM ?? "/usr/bin/chromium";
  const uiReady = fs.existsSync(chromium) && fs.existsSync(path.join(layout.rendererDist, "index.html"));
  test.skipIf(!uiReady)("ui benchmark paints every sample", { timeout: 60_000 }, async () => {
    const result = await benchUiTelemetry(layout, { seconds: 3, chromium });
    expect(result.samples_sent).toBeGreaterThanOrEqual(5);
    expect(result.samples_painted).toBeGreaterThan(0);
    expect(result.frames).toBeGreaterThan(0);
    expect(Number.isFinite(result.update_to_paint_ms.p95)).toBe(true);
    expect(result.update_to_paint_ms.p95).toBeGreaterThanOrEqual(result.update_to_paint_ms.p50);
  });
});
