// Processes that share one data directory: lock files, two `galley serve` started at the same
// moment, two control planes creating the default model, and engine token files left by a
// control plane that was killed.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

import { describe, expect, test } from "vitest";

import { DEFAULT_MODEL_KEY } from "../src/node/control-plane.js";
import { removeStaleTokenFiles } from "../src/node/engine/supervisor.js";
import { silentLogger } from "../src/node/log.js";
import { tryLock } from "../src/node/server/home-lock.js";
import { galleyBin, openPlane, pythonAvailable, tempDir } from "./helpers.js";

/** Returns the PID of a process that has exited. */
async function exitedPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid!;
}

describe("tryLock", () => {
  test("held lock names its holder", () => {
    const file = path.join(tempDir("lock"), "serve.lock");
    fs.writeFileSync(file, `${process.ppid}\n`);
    const attempt = tryLock(file);
    expect(attempt.acquired).toBe(false);
    expect(attempt.acquired ? null : attempt.holder).toBe(process.ppid);
    expect(fs.readFileSync(file, "utf8")).toBe(`${process.ppid}\n`);
  });

  test("lock of an exited process is taken over", async () => {
    const file = path.join(tempDir("lock"), "serve.lock");
    fs.writeFileSync(file, `${await exitedPid()}\n`);
    const attempt = tryLock(file);
    expect(attempt.acquired).toBe(true);
    expect(fs.readFileSync(file, "utf8")).toBe(`${process.pid}\n`);
    if (attempt.acquired) attempt.release();
    expect(fs.existsSync(file)).toBe(false);
  });

  test("second attempt in one process is rejected", () => {
    const file = path.join(tempDir("lock"), "defaults.lock");
    const first = tryLock(file);
    expect(first.acquired).toBe(true);
    expect(tryLock(file).acquired).toBe(false);
    if (first.acquired) first.release();
    expect(tryLock(file).acquired).toBe(true);
  });
});

describe("removeStaleTokenFiles", () => {
  test("removes only files of exited processes", async () => {
    const home = tempDir("tokens-home");
    const dead = await exitedPid();
    const names = [`engine-${dead}.token`, `engine-${process.pid}.token`, `engine-${process.ppid}.token`, "engine-notes.token", "other.token"];
    for (const name of names) fs.writeFileSync(path.join(home, name), "secret");
    removeStaleTokenFiles(home, silentLogger());
    expect(fs.readdirSync(home).sort()).toEqual(names.slice(1).sort());
  });
});

describe.skipIf(!pythonAvailable("default model race tests"))("first start of two processes", () => {
  test("two control planes create the default model once", { timeout: 300_000 }, async () => {
    const home = tempDir("race-planes-home");
    const planes = [openPlane({ home }), openPlane({ home })];
    try {
      await Promise.all(planes.map((plane) => plane.ensureDefaults()));
      expect(planes[0]!.models.store.list().map((model) => model.key)).toEqual([DEFAULT_MODEL_KEY]);
      expect(fs.existsSync(path.join(home, "defaults.lock"))).toBe(false);
    } finally {
      for (const plane of planes) plane.db.close();
    }
  });

  test("second galley serve fails as already serving", { timeout: 300_000 }, async () => {
    const home = tempDir("race-serve-home");
    const start = () => {
      const child = spawn(process.execPath, [galleyBin, "serve", "--port", "0"], {
        env: { ...process.env, GALLEY_HOME: home, GALLEY_LOG_LEVEL: "warn", HF_HUB_OFFLINE: "1" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      return { child, exited, output: () => output };
    };
    const serves = [start(), start()];
    try {
      const loserIndex = await Promise.race(serves.map((serve, index) => serve.exited.then(() => index)));
      const loser = serves[loserIndex]!;
      const winner = serves[1 - loserIndex]!;
      expect(await loser.exited, loser.output()).toBe(1);
      expect(loser.output()).toContain(`error: galley serve (pid ${winner.child.pid}) is already serving ${home}, or still starting`);
      expect(loser.output()).not.toContain("delete");

      const deadline = Date.now() + 240_000;
      while (!winner.output().includes("Galley is serving the workbench at") && Date.now() < deadline && winner.child.exitCode === null) {
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(winner.output()).toContain("Galley is serving the workbench at");
      winner.child.kill("SIGTERM");
      expect(await winner.exited, winner.output()).toBe(0);
      expect(fs.existsSync(path.join(home, "serve.lock"))).toBe(false);
    } finally {
      for (const serve of serves) if (serve.child.exitCode === null) serve.child.kill("SIGKILL");
    }
  });
});
