// Files changed on disk outside Galley reach clients as workspace.changed events, and the
// spawn release route reports an engine it cannot reach.
import fs from "node:fs";
import path from "node:path";

import { afterEach, beforeEach, describe, expect, test } from "vitest";

import type { ServerEvent } from "../src/common/index.js";
import type { ControlPlane } from "../src/node/control-plane.js";
import { openPlane } from "./helpers.js";

let plane: ControlPlane;
let events: ServerEvent[];

beforeEach(async () => {
  plane = openPlane();
  events = [];
  plane.dispatcher.on("event", (event) => events.push(event));
  await plane.listen(0);
});

afterEach(async () => {
  await plane.close();
});

/** Waits until a workspace.changed event lists `relative`, and returns every path reported until then. */
async function changedPaths(relative: string, timeoutMs = 5_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const paths = events.flatMap((event) => (event.type === "workspace.changed" ? event.paths : []));
    if (paths.includes(relative)) return paths;
    if (Date.now() > deadline) throw new Error(`no workspace.changed event named ${relative}; got ${JSON.stringify(paths)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("workspace watch", () => {
  test("file written outside is reported", async () => {
    fs.writeFileSync(path.join(plane.workspace.root, "outside.py"), "print('edited elsewhere')\n");
    expect(await changedPaths("outside.py")).toContain("outside.py");
  });

  test("file in a new folder is reported", async () => {
    fs.mkdirSync(path.join(plane.workspace.root, "nested", "deeper"), { recursive: true });
    await new Promise((resolve) => setTimeout(resolve, 200));
    fs.writeFileSync(path.join(plane.workspace.root, "nested", "deeper", "recipe.py"), "x = 1\n");
    expect(await changedPaths("nested/deeper/recipe.py")).toContain("nested/deeper/recipe.py");
  });

  test("hidden and tool folders are not reported", async () => {
    fs.mkdirSync(path.join(plane.workspace.root, ".galley"), { recursive: true });
    fs.writeFileSync(path.join(plane.workspace.root, ".galley", "playground.py"), "x = 1\n");
    fs.mkdirSync(path.join(plane.workspace.root, "__pycache__"), { recursive: true });
    fs.writeFileSync(path.join(plane.workspace.root, "__pycache__", "a.pyc"), "");
    fs.writeFileSync(path.join(plane.workspace.root, "visible.py"), "x = 1\n");
    const paths = await changedPaths("visible.py");
    expect(paths.filter((entry) => entry.startsWith(".galley") || entry.includes("__pycache__"))).toEqual([]);
  });

  test("rapid writes are batched", async () => {
    for (let index = 0; index < 20; index++) fs.writeFileSync(path.join(plane.workspace.root, `burst-${index}.py`), "x\n");
    await changedPaths("burst-19.py");
    const reports = events.filter((event) => event.type === "workspace.changed");
    expect(reports.length).toBeLessThan(5);
  });
});

describe("spawn release", () => {
  test("without an engine the error names its log", async () => {
    const outcome = await plane.dispatcher.call("spawns.release", { id: "abc123" });
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.error.code).toBe("engine_unavailable");
    expect(outcome.error.log_path).toBe(plane.paths.engineLog);
  });

  test("empty id is rejected", async () => {
    const outcome = await plane.dispatcher.call("spawns.release", { id: "" });
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.error.code).toBe("invalid_request");
  });
});
