import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    // Tests that start Python (tiny model generation, the engine, recipe runs) take tens of
    // seconds on two cores; run files one at a time so they do not compete for the CPUs.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 240_000,
    env: { OMP_NUM_THREADS: "1", HF_HUB_OFFLINE: "1" },
  },
});
