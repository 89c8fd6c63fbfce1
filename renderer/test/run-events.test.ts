import type { RunEvent } from "@galley/common";
import { describe, expect, it } from "vitest";

import { insertEvent, mergeEvents, metricSeries, outputChunks, stageProgress } from "../src/lib/run-events";

function event(seq: number, type: RunEvent["type"], payload: Record<string, unknown>): RunEvent {
  return { run_id: "r1", seq, time: seq, type, payload };
}

describe("run events", () => {
  it("inserts in seq order and drops duplicates", () => {
    let events: RunEvent[] = [];
    events = insertEvent(events, event(2, "stdout", { text: "b" }));
    events = insertEvent(events, event(1, "stdout", { text: "a" }));
    events = insertEvent(events, event(2, "stdout", { text: "b" }));
    expect(events.map((entry) => entry.seq)).toEqual([1, 2]);
  });

  it("merges stored events with live ones", () => {
    const live = [event(3, "stdout", { text: "c" })];
    const stored = [event(1, "stdout", { text: "a" }), event(3, "stdout", { text: "c" })];
    expect(mergeEvents(live, stored).map((entry) => entry.seq)).toEqual([1, 3]);
  });

  it("collects output chunks by stream", () => {
    const chunks = outputChunks([event(0, "stdout", { text: "out" }), event(1, "stderr", { text: "err" }), event(2, "metric", { name: "x", value: 1 })]);
    expect(chunks).toEqual([
      { seq: 0, stream: "stdout", text: "out" },
      { seq: 1, stream: "stderr", text: "err" },
    ]);
  });

  it("tracks the latest progress per registered stage", () => {
    const stages = stageProgress([
      event(0, "stages", { stages: ["train", "eval"] }),
      event(1, "progress", { stage: "train", total: 10, done: 1 }),
      event(2, "progress", { stage: "train", total: 10, done: 4 }),
    ]);
    expect(stages).toEqual([
      { stage: "train", total: 10, done: 4 },
      { stage: "eval", total: 0, done: 0 },
    ]);
  });

  it("groups metrics by name", () => {
    const series = metricSeries([
      event(0, "metric", { name: "loss", value: 2, step: 0 }),
      event(1, "metric", { name: "loss", value: 1, step: 1 }),
      event(2, "metric", { name: "lr", value: 0.1 }),
    ]);
    expect(series.get("loss")).toEqual([
      { step: 0, value: 2 },
      { step: 1, value: 1 },
    ]);
    expect(series.get("lr")).toEqual([{ step: 0, value: 0.1 }]);
  });
});
