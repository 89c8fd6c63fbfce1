import type { Telemetry } from "@galley/common";
import { describe, expect, it } from "vitest";

import { deviceMemory } from "../src/lib/memory";

const GIB = 1024 ** 3;

const SAMPLE: Telemetry = {
  time: 1,
  devices: [
    { id: "cuda:0", kind: "cuda", index: 0, name: "H100", total_bytes: 80 * GIB, used_bytes: 30 * GIB, free_bytes: 50 * GIB, processes: [] },
    { id: "cuda:1", kind: "cuda", index: 1, name: "H100", total_bytes: 80 * GIB, used_bytes: 0, free_bytes: 80 * GIB, processes: [] },
  ],
  spawns: [
    {
      id: "s1",
      name: "policy",
      session: "a",
      kind: "train",
      model_key: "m",
      tp: 1,
      devices: ["cuda:0"],
      ranks: [{ rank: 0, device: "cuda:0", process_bytes: 20 * GIB, plan: { weights: 10 * GIB, optimizer: 8 * GIB, total: 18 * GIB } }],
      state: "ready",
      op_counts: {},
      created_at: 0,
    },
    {
      id: "s2",
      name: "sampler",
      session: "a",
      kind: "inference",
      model_key: "m",
      tp: 1,
      devices: ["cuda:0"],
      ranks: [{ rank: 0, device: "cuda:0", process_bytes: null, plan: { weights: 4 * GIB, kv_cache: 2 * GIB } }],
      state: "loading",
      op_counts: {},
      created_at: 0,
    },
  ],
};

describe("deviceMemory", () => {
  const [first, second] = deviceMemory(SAMPLE);

  it("puts each spawn on the devices of its ranks", () => {
    expect(first?.segments.map((segment) => segment.spawn.name)).toEqual(["policy", "sampler"]);
    expect(second?.segments).toEqual([]);
  });

  it("uses the measurement, else the plan", () => {
    expect(first?.segments[0]).toMatchObject({ bytes: 20 * GIB, source: "measured", planned: 18 * GIB });
    expect(first?.segments[1]).toMatchObject({ bytes: 6 * GIB, source: "planned", measured: null });
  });

  it("leaves a precomputed total out of the components", () => {
    expect(first?.segments[0]?.plan).toEqual([
      ["weights", 10 * GIB],
      ["optimizer", 8 * GIB],
    ]);
  });

  it("attributes the remaining used memory to other processes", () => {
    expect(first?.other).toBe(4 * GIB);
  });
});
