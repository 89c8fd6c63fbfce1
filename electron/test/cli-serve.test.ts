// `galley` commands beside a running `galley serve` on the same data directory: they find it
// through serve.json and use its engine and run history, with the exit codes of a local run.
// Without a server, a recipe that cannot load fails before any engine starts.
import { type ChildProcess, spawn, type SpawnOptions } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";

import type { EngineStatus, Run } from "../src/common/index.js";
import { DEFAULT_MODEL_KEY } from "../src/node/control-plane.js";
import { findServer } from "../src/node/cli/server-access.js";
import { removeServeFile, ServeFile, writeServeFile } from "../src/node/server/local-access.js";
import { closedPort, engineAvailable, galleyBin, runCli, tempDir, type CliResult } from "./helpers.js";

const BROWSER_TOKEN = "cli-serve-browser-token";
const home = tempDir("cli-serve-home");
// Outside the server's workspace (<home>/workspace), as recipes run from a terminal often are.
const recipes = tempDir("cli-serve-recipes");
const serveFile = path.join(home, "serve.json");

const GENERATE_RECIPE = `import os
from adaptive_harmony import StringThread
from adaptive_harmony.runtime import recipe_main, RecipeContext


@recipe_main
async def main(ctx: RecipeContext):
    print("engine", os.environ["GALLEY_ENGINE_URL"], "parent", os.getppid(), flush=True)
    model = await ctx.client.model("model_registry://${DEFAULT_MODEL_KEY}", kv_cache_len=64, tokens_to_generate=2).spawn_inference("gen")
    await model.temperature(0.0).generate(StringThread([("user", "hi")]))
`;

const RAISING_RECIPE = `from adaptive_harmony.runtime import recipe_main, RecipeContext


@recipe_main
async def main(ctx: RecipeContext):
    raise ValueError("the answer is not 42")
`;

const SLEEPING_RECIPE = `import asyncio
from adaptive_harmony.runtime import recipe_main, RecipeContext


@recipe_main
async def main(ctx: RecipeContext):
    print("waiting", flush=True)
    await asyncio.sleep(600)
`;

const SYNTAX_ERROR_RECIPE = "def main(:\n    pass\n";

const CONFIG_RECIPE = `from typing import Annotated
from pydantic import Field
from adaptive_harmony.runtime import InputConfig, recipe_main, RecipeContext


class Config(InputConfig):
    steps: Annotated[int, Field(ge=1, description="Steps")]


@recipe_main
async def main(config: Config, ctx: RecipeContext):
    print(config.steps)
`;

function writeRecipe(name: string, source: string): string {
  const file = path.join(recipes, name);
  fs.writeFileSync(file, source);
  return file;
}

function lastLine(text: string): string {
  return text.trim().split("\n").at(-1)!;
}

/** PIDs of engine processes started for `dataHome` (their --models-dir is inside it); null where /proc does not exist. */
function engineProcesses(dataHome: string): number[] | null {
  if (!fs.existsSync("/proc/self/cmdline")) return null;
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string[];
    try {
      args = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // The process exited while we looked.
    }
    const moduleIndex = args.indexOf("-m");
    if (moduleIndex >= 0 && args[moduleIndex + 1] === "galley.engine" && args.includes(path.join(dataHome, "models"))) {
      pids.push(Number(entry));
    }
  }
  return pids;
}

/** Returns the PID of a process that has exited. */
async function exitedPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid!;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Process groups of the `galley serve` and `galley run` processes this file starts. Each one
// leads its own group, so that killing the group also ends the engine and the recipe runners
// it started, on platforms where they would not exit with their parent.
// NOTE: engine worker processes that start a process group of their own are not in it, and
// exit only when the engine ends them.
const serveGroups = new Set<number>();
const runGroups = new Set<number>();

/** Starts the built `galley` CLI as the leader of a new process group, recorded in `groups`. */
function startGalley(args: string[], groups: Set<number>, options: SpawnOptions): ChildProcess {
  const child = spawn(process.execPath, [galleyBin, ...args], { ...options, detached: true });
  if (child.pid !== undefined) groups.add(child.pid);
  return child;
}

/** Sends SIGKILL to every process group in `groups`; synchronous, so the process exit handler can call it. */
function killGroups(groups: Set<number>): void {
  for (const group of groups) {
    try {
      process.kill(-group, "SIGKILL");
    } catch (error) {
      // ESRCH: every process of the group has exited.
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  }
  groups.clear();
}

// A detached group gets no signal from the terminal, so a test worker that exits or is stopped
// before afterAll runs kills the groups here.
// NOTE: a test worker killed with SIGKILL runs none of this. Its serve then stays until it is
// killed by hand, while its engine exits with it on Linux.
const killAllGroups = () => {
  killGroups(runGroups);
  killGroups(serveGroups);
};
process.once("exit", killAllGroups);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    killAllGroups();
    process.exit(128 + os.constants.signals[signal]);
  });
}

describe("server discovery", () => {
  const emptyEnv = {};

  test("missing serve.json means no server", async () => {
    expect(await findServer(tempDir("no-serve-home"), emptyEnv)).toBeNull();
  });

  test("invalid serve.json is removed", async () => {
    const dataHome = tempDir("invalid-serve-home");
    fs.writeFileSync(path.join(dataHome, "serve.json"), "{not json");
    expect(await findServer(dataHome, emptyEnv)).toBeNull();
    expect(fs.existsSync(path.join(dataHome, "serve.json"))).toBe(false);
  });

  test("serve.json of a newer server is kept", async () => {
    const dataHome = tempDir("replaced-serve-home");
    const record: ServeFile = { url: "http://127.0.0.1:1", pid: process.pid, token: "t", workspace: dataHome, started_at: "2026-01-01T00:00:00Z" };
    writeServeFile(dataHome, record);
    expect(fs.statSync(path.join(dataHome, "serve.json")).mode & 0o777).toBe(0o600);
    removeServeFile(dataHome, process.pid + 1);
    expect(fs.existsSync(path.join(dataHome, "serve.json"))).toBe(true);
    removeServeFile(dataHome, process.pid);
    expect(fs.existsSync(path.join(dataHome, "serve.json"))).toBe(false);
  });

  test("GALLEY_URL without a token is rejected", async () => {
    const lookup = findServer(tempDir("env-home"), { GALLEY_URL: "http://127.0.0.1:41761/" });
    await expect(lookup).rejects.toThrow("GALLEY_URL is set to http://127.0.0.1:41761/ but no token was given; set GALLEY_TOKEN");
  });

  test("GALLEY_URL takes the token from its query", async () => {
    const server = await findServer(tempDir("env-home"), { GALLEY_URL: "http://127.0.0.1:41761/?token=abc" });
    expect(server).toEqual({ url: "http://127.0.0.1:41761", token: "abc", source: "GALLEY_URL", local: false });
  });
});

describe.skipIf(!engineAvailable("CLI with galley serve tests"))("galley CLI with galley serve running", () => {
  let serve: ChildProcess;
  let serveExit: Promise<number | null>;
  let record: ServeFile;
  let engine: EngineStatus;
  const cli = (...args: string[]) => runCli(args, { GALLEY_HOME: home });

  const api = async <T>(route: string, token: string, init: RequestInit = {}): Promise<{ status: number; body: T }> => {
    const response = await fetch(new URL(route, record.url), {
      ...init,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    });
    return { status: response.status, body: (await response.json()) as T };
  };

  const latestRun = async (): Promise<Run> => (await api<{ runs: Run[] }>("/api/runs?limit=1", BROWSER_TOKEN)).body.runs[0]!;

  const waitForRunEnd = async (id: string): Promise<Run> => {
    for (;;) {
      const { body } = await api<Run>(`/api/runs/${id}`, BROWSER_TOKEN);
      if (body.status !== "queued" && body.status !== "running") return body;
      await sleep(200);
    }
  };

  /** Starts `galley serve` on `home` and waits until its engine is ready. */
  const startServe = async () => {
    // Output goes to a file: a pipe that the test does not drain while runCli blocks could fill and stall the server.
    const log = fs.openSync(path.join(recipes, "serve.log"), "w");
    serve = startGalley(["serve", "--port", "0"], serveGroups, {
      env: { ...process.env, GALLEY_HOME: home, GALLEY_TOKEN: BROWSER_TOKEN, GALLEY_LOG_LEVEL: "warning" },
      stdio: ["ignore", log, log],
    });
    serveExit = new Promise((resolve) => serve.once("exit", (code) => resolve(code)));
    const deadline = Date.now() + 240_000;
    while (!fs.existsSync(serveFile)) {
      if (serve.exitCode !== null || Date.now() > deadline) {
        throw new Error(`galley serve wrote no serve.json: ${fs.readFileSync(path.join(recipes, "serve.log"), "utf8")}`);
      }
      await sleep(200);
    }
    record = ServeFile.parse(JSON.parse(fs.readFileSync(serveFile, "utf8")));
    for (;;) {
      engine = (await api<EngineStatus>("/api/engine", BROWSER_TOKEN)).body;
      if (engine.state === "ready" || Date.now() > deadline) break;
      await sleep(500);
    }
    expect(engine.state).toBe("ready");
  };

  beforeAll(startServe, 300_000);

  // Also after a failed or timed-out test: a `galley run` left waiting, and every serve with
  // its engine.
  afterEach(() => killGroups(runGroups));
  afterAll(() => killAllGroups());

  test("serve.json is private to its owner", () => {
    expect(fs.statSync(serveFile).mode & 0o777).toBe(0o600);
    expect(record.pid).toBe(serve.pid);
    expect(record.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(record.token).not.toBe(BROWSER_TOKEN);
    expect(fs.readFileSync(path.join(recipes, "serve.log"), "utf8")).not.toContain(record.token);
  });

  test("run uses the server's engine", { timeout: 120_000 }, async () => {
    const recipe = writeRecipe("generate.py", GENERATE_RECIPE);
    const result = cli("run", recipe);
    expect(result.code, result.stderr).toBe(0);
    // The runner is a child of the server and talks to the server's engine.
    expect(result.stdout).toContain(`engine ${engine.url} parent ${serve.pid}\n`);
    expect(result.stderr).toContain(`[spawn] gen: inference of ${DEFAULT_MODEL_KEY}`);
    expect(engineProcesses(home) ?? [engine.pid]).toEqual([engine.pid]);

    const run = await latestRun();
    expect(run.recipe_path).toBe(recipe);
    expect(run.status).toBe("succeeded");
  });

  test("raising recipe exits 1", { timeout: 120_000 }, () => {
    const recipe = writeRecipe("raises.py", RAISING_RECIPE);
    const result = cli("run", recipe);
    expect(result.code).toBe(1);
    expect(lastLine(result.stderr)).toBe(`error: ${recipe}:6: ValueError: the answer is not 42`);
  });

  test("syntax error exits 2 with the given path", { timeout: 120_000 }, () => {
    const recipe = writeRecipe("broken.py", SYNTAX_ERROR_RECIPE);
    const relative = path.relative(process.cwd(), recipe);
    const result = cli("run", relative);
    expect(result.code).toBe(2);
    expect(lastLine(result.stderr)).toMatch(new RegExp(`^error: ${relative.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:1: SyntaxError`));
    expect(result.stderr).not.toContain(path.join(home, "runs"));
  });

  /** Starts `galley run` of a recipe that sleeps, and resolves once the recipe runs. */
  const startSleepingRun = async (name: string) => {
    const recipe = writeRecipe(name, SLEEPING_RECIPE);
    const child = startGalley(["run", recipe], runGroups, {
      env: { ...process.env, GALLEY_HOME: home, GALLEY_LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes("waiting\n")) resolve();
      });
      void exited.then((code) => reject(new Error(`galley run exited with ${code} before the recipe ran: ${stderr}`)));
    });
    return { recipe, child, exited, stderr: () => stderr };
  };

  test.each([
    ["SIGINT", 130, "Ctrl-C"],
    ["SIGTERM", 143, "SIGTERM"],
    ["SIGHUP", 129, "SIGHUP, the terminal closed"],
  ] as const)("%s cancels the run on the server", { timeout: 120_000 }, async (signal, exitCode, reason) => {
    const { recipe, child, exited, stderr } = await startSleepingRun(`sleeps-${signal}.py`);
    const running = await latestRun();
    expect(running.recipe_path).toBe(recipe);
    expect(running.status).toBe("running");

    child.kill(signal);
    expect(await exited, stderr()).toBe(exitCode);
    const ended = await waitForRunEnd(running.id);
    expect(ended.status).toBe("cancelled");
    expect(ended.exit_code).toBe(exitCode);
    expect(ended.error?.message).toBe(`cancelled by ${signal}`);
    expect(lastLine(stderr())).toBe(`galley: run ${running.id} cancelled (${reason})`);
    expect(stderr()).not.toContain("cancelled by SIGTERM");
  });

  test("runs cancel stops a server run", { timeout: 120_000 }, async () => {
    const { child, exited, stderr } = await startSleepingRun("sleeps-cancelled.py");
    const running = await latestRun();
    const cancelled = cli("runs", "cancel", running.id);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout).toBe(`run ${running.id} cancelled (exit code 143)\n`);
    expect(await exited, stderr()).toBe(143);
    expect(lastLine(stderr())).toBe(`galley: run ${running.id} was cancelled outside this terminal (exit code 143)`);
    expect(child.exitCode).toBe(143);

    const shown = cli("runs", "show", running.id);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain('"message": "cancelled by SIGTERM"');
    expect(lastLine(shown.stdout)).toBe(`--- run ${running.id} cancelled by SIGTERM (exit code 143)`);

    const again = cli("runs", "cancel", running.id);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`error: run ${running.id} has already ended with status cancelled`);
  });

  test("runs show prints the recipe's own path", { timeout: 120_000 }, async () => {
    const recipe = writeRecipe("raises-shown.py", RAISING_RECIPE);
    expect(cli("run", recipe).code).toBe(1);
    const run = await latestRun();
    const result = cli("runs", "show", run.id);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`error: ${recipe}:6: ValueError: the answer is not 42`);
    expect(result.stdout).toContain(`File "${recipe}", line 6`);
    expect(result.stdout).not.toContain(path.join(home, "runs", run.id, "recipe.py"));
  });

  test("engine flags conflict with the server", () => {
    const result = cli("run", writeRecipe("unused.py", RAISING_RECIPE), "--devices", "2x80GiB");
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--devices cannot apply: this command uses galley serve (pid ${serve.pid})`);
    expect(result.stderr).toContain("pass --standalone");
  });

  test("runs list shows server runs", () => {
    const result = cli("runs", "list", "--limit", "50");
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/succeeded\s+0\s+.*generate\.py/);
    expect(result.stdout).toMatch(/cancelled\s+130\s+.*sleeps-SIGINT\.py/);
    expect(result.stdout).toMatch(/cancelled\s+143\s+.*sleeps-SIGTERM\.py/);
    expect(result.stdout).toMatch(/cancelled\s+129\s+.*sleeps-SIGHUP\.py/);
  });

  test("browser token runs workspace files only", { timeout: 120_000 }, async () => {
    const recipe = writeRecipe("outside.py", RAISING_RECIPE);
    const rejected = await api<{ error: { code: string; message: string } }>("/api/runs", BROWSER_TOKEN, {
      method: "POST",
      body: JSON.stringify({ recipe_path: recipe }),
    });
    expect(rejected.status).toBe(400);
    expect(rejected.body.error.message).toBe(`path "${recipe}" is absolute; give a path relative to the workspace root`);

    const accepted = await api<Run>("/api/runs", record.token, { method: "POST", body: JSON.stringify({ recipe_path: recipe }) });
    expect(accepted.status).toBe(201);
    const ended = await waitForRunEnd(accepted.body.id);
    expect(ended.exit_code).toBe(1);
    expect(ended.error?.message).toBe("ValueError: the answer is not 42");
  });

  test("local token keeps the workspace checks", async () => {
    const escaping = await api<{ error: { code: string } }>("/api/runs", record.token, {
      method: "POST",
      body: JSON.stringify({ recipe_path: "../outside.py" }),
    });
    expect(escaping.status).toBe(400);
    const read = await api<{ error: { code: string } }>(`/api/workspace/file?path=${encodeURIComponent(path.join(recipes, "outside.py"))}`, record.token);
    expect(read.status).toBe(400);
  });

  test("clean shutdown removes serve.json", { timeout: 60_000 }, async () => {
    serve.kill("SIGTERM");
    expect(await serveExit).toBe(0);
    expect(fs.existsSync(serveFile)).toBe(false);
  });

  test.each([
    ["process gone", true],
    ["nothing listening", false],
  ])("stale serve.json (%s) is ignored", { timeout: 120_000 }, async (_case, pidGone) => {
    const stale: ServeFile = {
      url: `http://127.0.0.1:${await closedPort()}`,
      pid: pidGone ? await exitedPid() : process.pid,
      token: "stale-token",
      workspace: path.join(home, "workspace"),
      started_at: new Date().toISOString(),
    };
    fs.writeFileSync(serveFile, JSON.stringify(stale));
    const recipe = writeRecipe("stale.py", SYNTAX_ERROR_RECIPE);
    const result: CliResult = cli("run", recipe);
    // A standalone run: the recipe check fails with the runner's own exit code and line.
    expect(result.code, result.stderr).toBe(2);
    expect(lastLine(result.stderr)).toMatch(/^error: .*stale\.py:1: SyntaxError/);
    expect(fs.existsSync(serveFile)).toBe(false);
  });

  test("killed server ends the run as lost", { timeout: 300_000 }, async () => {
    await startServe();
    const { exited, stderr } = await startSleepingRun("sleeps-killed.py");
    const running = await latestRun();
    serve.kill("SIGKILL");
    expect(await exited, stderr()).toBe(3);
    expect(stderr()).toContain(`error: lost the connection to galley serve (pid ${serve.pid}) at ${record.url} before run ${running.id} ended`);
    expect(stderr()).toContain(`the run may have stopped with the server. Check its status with \`galley runs show ${running.id}\``);
    expect(stderr()).not.toContain("goes on there");

    // The next control plane on the data directory marks the run failed, once the killed
    // server is reaped (kill(pid, 0) still succeeds on a zombie).
    await serveExit;
    const shown = cli("runs", "show", running.id);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain('"status": "failed"');
  });
});

describe.skipIf(!engineAvailable("recipe check tests"))("galley run without a server", () => {
  const standaloneHome = tempDir("cli-check-home");
  const cli = (...args: string[]) => runCli(args, { GALLEY_HOME: standaloneHome });
  const engineLog = path.join(standaloneHome, "logs", "engine.log");

  beforeAll(() => {
    // A registered model keeps `galley run` from generating the default one; the check needs none.
    const generated = cli("models", "make-tiny", "--family", "qwen3", "--key", "tiny");
    expect(generated.code, generated.stderr).toBe(0);
  }, 300_000);

  test("syntax error exits 2 before an engine starts", { timeout: 120_000 }, () => {
    const recipe = writeRecipe("check-syntax.py", SYNTAX_ERROR_RECIPE);
    const result = cli("run", recipe);
    expect(result.code).toBe(2);
    expect(lastLine(result.stderr)).toBe(`error: ${recipe}:1: SyntaxError: invalid syntax; fix the line shown above`);
    expect(fs.existsSync(engineLog)).toBe(false);
  });

  test("invalid config exits 2 before an engine starts", { timeout: 120_000 }, () => {
    const recipe = writeRecipe("check-config.py", CONFIG_RECIPE);
    const config = path.join(recipes, "check-config.json");
    fs.writeFileSync(config, JSON.stringify({ steps: 0 }));
    const result = cli("run", recipe, "--config", config);
    expect(result.code).toBe(2);
    expect(lastLine(result.stderr)).toBe(
      `error: ${recipe}:7: invalid config (1 problem): config field "steps" = 0: Input should be greater than or equal to 1; change "steps" in the config`,
    );
    expect(fs.existsSync(engineLog)).toBe(false);
  });

  test("failed checks are recorded as runs", () => {
    const result = cli("runs", "list");
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/failed\s+2\s+-\s+.*check-config\.py/);
    expect(result.stdout).toMatch(/failed\s+2\s+-\s+.*check-syntax\.py/);
  });
});
