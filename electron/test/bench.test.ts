import fs from "node:fs";
import path from "node:path";

import { describe, expect, test } from "vitest";

import { lastJsonObject, runBenchmarks } from "../src/node/bench/bench.js";
import { benchEventStreaming } from "../src/node/bench/event-streaming.js";
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
});
