// Text the CLI prints: the spawn table of `galley gpus`, and `galley models list` on an empty
// registry while another process creates the default model.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

import { describe, expect, test } from "vitest";

import { Telemetry } from "../src/common/index.js";
import { telemetryTables } from "../src/node/cli/format.js";
import { DEFAULT_MODEL_KEY } from "../src/node/control-plane.js";
import { runCli, tempDir } from "./helpers.js";

const GIB = 1024 ** 3;

function spawnTelemetry(name: string, pids: (number | null)[], state: "loading" | "ready") {
  return {
    id: `id-${name}`,
    name,
    session: "session-1",
    kind: "inference",
    model_key: "tiny",
    tp: pids.length,
    devices: pids.map((_, rank) => `virtual:${rank}`),
    ranks: pids.map((pid, rank) => ({ rank, device: `virtual:${rank}`, pid, process_bytes: GIB, plan: { weights: GIB } })),
    state,
    created_at: 1_760_000_000,
  };
}

describe("gpus spawn table", () => {
  const telemetry = Telemetry.parse({
    time: 1_760_000_000,
    devices: [
      { id: "virtual:0", kind: "virtual", index: 0, name: "virtual 80 GiB", total_bytes: 80 * GIB, used_bytes: 2 * GIB, free_bytes: 78 * GIB },
      { id: "virtual:1", kind: "virtual", index: 1, name: "virtual 80 GiB", total_bytes: 80 * GIB, used_bytes: GIB, free_bytes: 79 * GIB },
    ],
    spawns: [spawnTelemetry("gen", [4242], "ready"), spawnTelemetry("policy", [5151, 5152], "ready"), spawnTelemetry("late", [null], "loading")],
  });
  const lines = telemetryTables(telemetry).split("\n");
  const spawnHeader = lines.findIndex((line) => line.startsWith("SPAWN"));

  test("header has a PIDS column", () => {
    expect(lines[spawnHeader]).toMatch(/^SPAWN\s+KIND\s+MODEL\s+TP\s+DEVICES\s+STATE\s+PIDS\s+PLANNED\s+MEASURED\s+LAST OP$/);
  });

  test("each rank's worker pid is shown", () => {
    expect(lines[spawnHeader + 1]).toMatch(/^gen\s+inference\s+tiny\s+1\s+virtual:0\s+ready\s+4242\s+1\.00 GiB\s+1\.00 GiB\s+-$/);
    expect(lines[spawnHeader + 2]).toMatch(/^policy\s+inference\s+tiny\s+2\s+virtual:0,virtual:1\s+ready\s+5151,5152\s+2\.00 GiB/);
  });

  test("rank without a pid shows a dash", () => {
    expect(lines[spawnHeader + 3]).toMatch(/^late\s+inference\s+tiny\s+1\s+virtual:0\s+loading\s+-\s+1\.00 GiB/);
  });
});

/** Returns the pid of a process that has exited. */
async function exitedPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid!;
}

describe("models list on an empty registry", () => {
  const listModels = (home: string) => runCli(["models", "list"], { GALLEY_HOME: home });

  test("live defaults.lock holder is named", () => {
    const home = tempDir("models-creating-home");
    // The lock names this test process, as it would name a `galley serve` that generates the default model.
    fs.writeFileSync(path.join(home, "defaults.lock"), `${process.pid}\n`);
    const result = listModels(home);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(
      `no models registered yet: galley process ${process.pid} is creating the default model ${DEFAULT_MODEL_KEY} ` +
        "(about half a minute); wait for it, then run `galley models list` again\n",
    );
    // Listing must not take or remove the lock of the process that creates the model.
    expect(fs.readFileSync(path.join(home, "defaults.lock"), "utf8")).toBe(`${process.pid}\n`);
  });

  test("lock of an exited process is ignored", async () => {
    const home = tempDir("models-stale-lock-home");
    fs.writeFileSync(path.join(home, "defaults.lock"), `${await exitedPid()}\n`);
    const result = listModels(home);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe("no models registered; add one with `galley models make-tiny` or `galley models import`\n");
  });

  test("no lock suggests adding a model", () => {
    const result = listModels(tempDir("models-empty-home"));
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe("no models registered; add one with `galley models make-tiny` or `galley models import`\n");
  });
});
