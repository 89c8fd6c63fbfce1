// `galley serve` on a fresh data directory: first start generates the default model and
// seeds the workspace, then serves the API with the token and starts the engine.
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";

import { afterAll, describe, expect, test } from "vitest";

import { DEFAULT_MODEL_KEY } from "../src/node/control-plane.js";
import { engineAvailable, galleyBin, layout, openPlane, tempDir, writeSmallModel } from "./helpers.js";

const exampleRecipes = fs.existsSync(path.join(layout.resourcesDir, "recipes"))
  ? fs.readdirSync(path.join(layout.resourcesDir, "recipes")).filter((name) => name.endsWith(".py")).sort()
  : [];

describe("first start", () => {
  test("registry with models gets no default model", async () => {
    const plane = openPlane();
    try {
      await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "mine" });
      await plane.ensureDefaults();
      expect(plane.models.store.keys()).toEqual(["mine"]);
      expect(fs.readdirSync(plane.workspace.root).sort()).toEqual(exampleRecipes);
    } finally {
      plane.db.close();
    }
  });

  test("workspace with files is left alone", async () => {
    const workspace = tempDir("own-workspace");
    fs.writeFileSync(path.join(workspace, "mine.py"), "print('mine')\n");
    const plane = openPlane({ workspace });
    try {
      await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "mine" });
      await plane.ensureDefaults();
      expect(fs.readdirSync(workspace)).toEqual(["mine.py"]);
    } finally {
      plane.db.close();
    }
  });
});

describe.skipIf(!engineAvailable("serve test"))("galley serve", () => {
  let child: ChildProcess | null = null;

  afterAll(() => {
    if (child && child.exitCode === null) child.kill("SIGKILL");
  });

  test("serves after creating the default model", { timeout: 300_000 }, async () => {
    const home = tempDir("serve-home");
    const token = "serve-test-token";
    child = spawn(process.execPath, [galleyBin, "serve", "--port", "0"], {
      env: { ...process.env, GALLEY_HOME: home, GALLEY_TOKEN: token, GALLEY_LOG_LEVEL: "warning" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const url = await new Promise<string>((resolve, reject) => {
      readline.createInterface({ input: child!.stdout! }).on("line", (line) => {
        const match = /^Galley is serving the workbench at (http:\/\/127\.0\.0\.1:\d+\/\?token=\S+)$/.exec(line);
        if (match) resolve(match[1]!);
      });
      child!.once("exit", (code) => reject(new Error(`galley serve exited with ${code}: ${stderr}`)));
    });
    expect(new URL(url).searchParams.get("token")).toBe(token);
    const base = new URL(url).origin;
    const get = async (route: string) =>
      (await (await fetch(`${base}${route}`, { headers: { Authorization: `Bearer ${token}` } })).json()) as Record<string, unknown>;

    const { models } = (await get("/api/models")) as { models: { key: string; kind: string; storage: string; facts: { architecture: string } }[] };
    expect(models).toHaveLength(1);
    expect(models[0]).toMatchObject({ key: DEFAULT_MODEL_KEY, kind: "base", storage: "generated", facts: { architecture: "Qwen3ForCausalLM" } });
    expect(fs.readdirSync(path.join(home, "workspace")).sort()).toEqual(exampleRecipes);

    let engine = (await get("/api/engine")) as { state: string; pid: number | null };
    const deadline = Date.now() + 120_000;
    while (engine.state !== "ready" && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      engine = (await get("/api/engine")) as { state: string; pid: number | null };
    }
    expect(engine.state, stderr).toBe("ready");
    const enginePid = engine.pid!;

    const exited = new Promise<number | null>((resolve) => child!.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(() => process.kill(enginePid, 0)).toThrow();
    expect(fs.readFileSync(path.join(home, "logs", "galley.log"), "utf8")).toContain("registered the default model");
  });
});
