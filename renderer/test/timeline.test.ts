import type { Telemetry } from "@galley/common";
import { describe, expect, it } from "vitest";

import { stackedPaths, usageSeries } from "../src/lib/timeline";

const GIB = 1024 ** 3;

function sample(time: number, trainBytes: number, usedBytes: number): Telemetry {
  return {
    time,
    devices: [{ id: "virtual:0", kind: "virtual", index: 0, name: "80GiB", total_bytes: 80 * GIB, used_bytes: usedBytes, free_bytes: 80 * GIB - usedBytes, processes: [] }],
    spawns: [
      {
        id: "s",
        name: "policy",
        session: "a",
        kind: "train",
        model_key: "m",
        tp: 1,
        devices: ["virtual:0"],
        ranks: [{ rank: 0, device: "virtual:0", plan: { weights: trainBytes } }],
        state: "ready",
        op_counts: {},
        created_at: 0,
      },
    ],
  };
}

describe("usageSeries", () => {
  it("splits used memory by kind", () => {
    const [point] = usageSeries([sample(100, 10 * GIB, 12 * GIB)], "virtual:0", 60, 100);
    expect(point).toEqual({ time: 100, train: 10 * GIB, inference: 0, other: 2 * GIB, total: 80 * GIB });
  });

  it("keeps the window and thins long histories", () => {
    const history = Array.from({ length: 1000 }, (_, index) => sample(index, GIB, GIB));
    const points = usageSeries(history, "virtual:0", 600, 999, 100);
    expect(points[0]!.time).toBe(399);
    expect(points.at(-1)!.time).toBe(999);
    expect(points.length).toBeLessThanOrEqual(101);
    expect(points.length).toBeGreaterThan(50);
  });

  it("skips samples without the device", () => {
    expect(usageSeries([sample(1, 0, 0)], "cuda:0", 60, 1)).toEqual([]);
  });
});

describe("stackedPaths", () => {
  it("stacks layers from the bottom", () => {
    const points = [
      { time: 0, train: 10, inference: 20, other: 0, total: 100 },
      { time: 10, train: 10, inference: 20, other: 0, total: 100 },
    ];
    const paths = stackedPaths(points, { width: 100, height: 100, start: 0, end: 10, maxBytes: 100 });
    expect(paths.train).toBe("M0.0,90.0L100.0,90.0L100.0,100.0L0.0,100.0Z");
    expect(paths.inference).toBe("M0.0,70.0L100.0,70.0L100.0,90.0L0.0,90.0Z");
  });

  it("draws nothing from one point", () => {
    const paths = stackedPaths([{ time: 0, train: 1, inference: 1, other: 1, total: 10 }], { width: 1, height: 1, start: 0, end: 1, maxBytes: 10 });
    expect(paths).toEqual({ train: "", inference: "", other: "" });
  });
});
