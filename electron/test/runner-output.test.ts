import { describe, expect, test } from "vitest";

import type { Telemetry } from "../src/common/index.js";
import { TelemetryHistory } from "../src/node/engine/telemetry-history.js";
import { OutputCollector, parseRunError, parseRunnerEvent } from "../src/node/runs/runner-output.js";

const SNAPSHOT = "/data/runs/r1/recipe.py";

describe("run error line", () => {
  test("snapshot location maps to the recipe", () => {
    const stderr = "Traceback (most recent call last):\n  ...\nValueError: x\nerror: /data/runs/r1/recipe.py:12: ValueError: x: y\n";
    expect(parseRunError(stderr, SNAPSHOT, "recipes/train.py")).toEqual({ message: "ValueError: x: y", file: "recipes/train.py", line: 12 });
  });

  test("other files keep their path", () => {
    const stderr = "error: /data/runs/r1/config.json:2: invalid config (1 problem)\n  field 'tp': must be >= 1\n";
    expect(parseRunError(stderr, SNAPSHOT, "train.py")).toEqual({
      message: "invalid config (1 problem)\n  field 'tp': must be >= 1",
      file: "/data/runs/r1/config.json",
      line: 2,
    });
  });

  test("last error line wins", () => {
    const stderr = "error: a.py:1: first\nmore output\nerror: b.py:2: second\n";
    expect(parseRunError(stderr, SNAPSHOT, "x.py")).toEqual({ message: "second", file: "b.py", line: 2 });
  });

  test("error without a location", () => {
    expect(parseRunError("error: cannot reach the engine\n", SNAPSHOT, "x.py")).toEqual({
      message: "cannot reach the engine",
      file: null,
      line: null,
    });
    expect(parseRunError("all good\n", SNAPSHOT, "x.py")).toBeNull();
  });
});

describe("runner events", () => {
  test("known types keep their payload", () => {
    expect(parseRunnerEvent('{"type": "progress", "stage": "train", "total": 10, "done": 3}')).toEqual({
      type: "progress",
      payload: { stage: "train", total: 10, done: 3 },
    });
  });

  test("output records become stdout and stderr events", () => {
    expect(parseRunnerEvent('{"type": "output", "stream": "stderr", "text": "Traceback\\n"}')).toEqual({
      type: "stderr",
      payload: { text: "Traceback\n" },
    });
    expect(parseRunnerEvent('{"type": "output", "stream": "stdout", "text": "step 1\\n"}')).toEqual({
      type: "stdout",
      payload: { text: "step 1\n" },
    });
  });

  test("malformed output records become other", () => {
    expect(parseRunnerEvent('{"type": "output", "stream": "fd5", "text": "x"}').type).toBe("other");
    expect(parseRunnerEvent('{"type": "output", "stream": "stdout", "text": 3}').type).toBe("other");
  });

  test("unknown and malformed lines become other", () => {
    expect(parseRunnerEvent('{"type": "custom", "x": 1}')).toEqual({ type: "other", payload: { type: "custom", x: 1 } });
    expect(parseRunnerEvent("not json")).toEqual({ type: "other", payload: { line: "not json" } });
    expect(parseRunnerEvent("[1, 2]")).toEqual({ type: "other", payload: { line: "[1, 2]" } });
  });
});

describe("output collector", () => {
  test("decoded text counts toward the stderr tail", () => {
    const chunks: [string, string][] = [];
    const collector = new OutputCollector((stream, text) => chunks.push([stream, text]));
    collector.writeText("stdout", "about to fail\n");
    collector.writeText("stderr", "error: /data/runs/r1/recipe.py:3: ValueError: x\n");
    expect(chunks).toEqual([
      ["stdout", "about to fail\n"],
      ["stderr", "error: /data/runs/r1/recipe.py:3: ValueError: x\n"],
    ]);
    expect(parseRunError(collector.stderrTail(), SNAPSHOT, "r.py")).toEqual({ message: "ValueError: x", file: "r.py", line: 3 });
  });

  test("multibyte characters split across chunks", () => {
    const chunks: string[] = [];
    const collector = new OutputCollector((_stream, text) => chunks.push(text));
    const bytes = Buffer.from("é€", "utf8");
    collector.write("stdout", bytes.subarray(0, 1));
    collector.write("stdout", bytes.subarray(1, 3));
    collector.write("stdout", bytes.subarray(3));
    collector.flush();
    expect(chunks.join("")).toBe("é€");
    expect(chunks.every((chunk) => !chunk.includes("\uFFFD"))).toBe(true);
  });
});

describe("telemetry history", () => {
  const sample = (time: number): Telemetry => ({ time, devices: [], spawns: [] });

  test("keeps the last window of samples", () => {
    const history = new TelemetryHistory(600);
    for (const time of [1000, 1300, 1599, 1601, 1700]) history.push(sample(time));
    expect(history.since(0).map((item) => item.time)).toEqual([1300, 1599, 1601, 1700]);
    history.push(sample(2300));
    expect(history.since(0).map((item) => item.time)).toEqual([1700, 2300]);
    expect(history.since(1700).map((item) => item.time)).toEqual([2300]);
    expect(history.latest()?.time).toBe(2300);
  });
});
