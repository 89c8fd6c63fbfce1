// End to end against a real engine and the real recipe runner, on a tiny generated Qwen3.
import fs from "node:fs";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";

import type { Run, RunEvent, ServerMessage } from "../src/common/index.js";
import type { ControlPlane } from "../src/node/control-plane.js";
import { engineAvailable, generateTinyModel, openPlane } from "./helpers.js";

const TOKEN = "run-manager-token";
let plane: ControlPlane;

const GENERATE_RECIPE = `"""Generate a few tokens and report progress and a metric."""
from adaptive_harmony import StringThread
from adaptive_harmony.runtime import recipe_main, RecipeContext


@recipe_main
async def main(ctx: RecipeContext):
    ctx.job.register_stages(["generate"])
    model = await ctx.client.model("model_registry://tiny", kv_cache_len=256, tokens_to_generate=4).spawn_inference("gen")
    reply = await model.temperature(0.0).generate(StringThread([("user", "hello")]))
    print("generated:", repr(reply.last_content()))
    ctx.job.report_progress("generate", tot_num_samples=1, processed_num_samples=1)
    ctx.log_metric("reply_chars", len(reply.last_content()), step=0)
`;

const FAILING_RECIPE = `from adaptive_harmony.runtime import recipe_main, RecipeContext


@recipe_main
async def main(ctx: RecipeContext):
    print("about to fail")
    raise ValueError("the answer is not 42")
`;

// Alternates stdout and stderr lines, then raises: two pipes read apart would group them.
const INTERLEAVED_RECIPE = `import sys
from adaptive_harmony.runtime import recipe_main, RecipeContext


@recipe_main
async def main(ctx: RecipeContext):
    for i in range(200):
        print(f"out {i}")
        print(f"err {i}", file=sys.stderr)
    raise ValueError("stop")
`;

const SLEEPING_RECIPE = `import asyncio
from adaptive_harmony.runtime import recipe_main, RecipeContext


@recipe_main
async def main(ctx: RecipeContext):
    print("waiting", flush=True)
    await asyncio.sleep(600)
`;

const CONFIG_RECIPE = `from typing import Annotated
from pydantic import Field
from adaptive_harmony.runtime import InputConfig, AdaptiveModel, recipe_main, RecipeContext


class Config(InputConfig):
    model: Annotated[AdaptiveModel, Field(description="Model to use")]
    steps: Annotated[int, Field(ge=1, description="Steps")] = 3


@recipe_main
async def main(config: Config, ctx: RecipeContext):
    print(config.model.path, config.steps)
`;

function writeRecipe(name: string, source: string): string {
  plane.workspace.create(name, source);
  return name;
}

function eventsOf(runId: string): RunEvent[] {
  return plane.runStore.events(runId, -1, 100_000);
}

function outputOf(runId: string, stream: "stdout" | "stderr"): string {
  return eventsOf(runId)
    .filter((event) => event.type === stream)
    .map((event) => String(event.payload.text))
    .join("");
}

describe.skipIf(!engineAvailable("run manager tests"))("run manager with a real engine", () => {
  beforeAll(async () => {
    plane = openPlane({ token: TOKEN, keepWarm: 0, cancelGraceMs: 3000 });
    await plane.models.importFolder({ dir: generateTinyModel("qwen3"), key: "tiny", link: true });
    await plane.listen(0);
    await plane.startEngine();
  }, 300_000);

  afterAll(async () => {
    await plane?.close();
  });

  test("recipe runs end to end and stores events", { timeout: 240_000 }, async () => {
    const socket = new WebSocket(`${plane.apiAddress()!.url.replace("http", "ws")}/api/ws?token=${TOKEN}`);
    await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
    const pushed: ServerMessage[] = [];
    let runId = "";
    const endPushed = new Promise<void>((resolve) => {
      socket.on("message", (data) => {
        const message = JSON.parse(data.toString()) as ServerMessage;
        pushed.push(message);
        if (message.kind === "event" && message.event.type === "run.status" && message.event.run.id === runId) {
          if (message.event.run.status === "succeeded" || message.event.run.status === "failed") resolve();
        }
      });
    });

    const queued = plane.runs.startRun({ recipe_path: writeRecipe("generate.py", GENERATE_RECIPE), config: {}, dry_run: false });
    runId = queued.id;
    expect(queued.status).toBe("queued");
    const run = await plane.runs.waitForRun(queued.id);
    const stderr = outputOf(run.id, "stderr");
    expect(run.status, stderr).toBe("succeeded");
    expect(run.exit_code).toBe(0);
    expect(run.error).toBeNull();

    expect(outputOf(run.id, "stdout")).toMatch(/^generated: '.*'\n$/);
    const types = eventsOf(run.id).map((event) => event.type);
    expect(types).toContain("stages");
    expect(types).toContain("progress");
    expect(types).toContain("metric");
    expect(types).toContain("spawn");
    const spawn = eventsOf(run.id).find((event) => event.type === "spawn")!;
    expect(spawn.payload).toMatchObject({ name: "gen", kind: "inference", model_key: "tiny" });
    const statuses = eventsOf(run.id)
      .filter((event) => event.type === "status")
      .map((event) => event.payload.status);
    expect(statuses).toEqual(["running", "succeeded"]);
    const seqs = eventsOf(run.id).map((event) => event.seq);
    expect(seqs).toEqual([...seqs.keys()]);

    const snapshot = path.join(plane.runs.runDir(run.id), "recipe.py");
    expect(fs.readFileSync(snapshot, "utf8")).toBe(GENERATE_RECIPE);
    expect(plane.runStore.detail(run.id).recipe_source).toBe(GENERATE_RECIPE);

    // The socket delivers the last status a moment after the run manager records it.
    await endPushed;
    const outputs = pushed.filter((message) => message.kind === "event" && message.event.type === "run.output");
    expect(outputs.length).toBeGreaterThan(0);
    const finalStatus = pushed.filter(
      (message): message is Extract<ServerMessage, { kind: "event" }> =>
        message.kind === "event" && message.event.type === "run.status",
    );
    expect(finalStatus.map((message) => (message.event as { run: Run }).run.status)).toEqual(["queued", "running", "succeeded"]);
    socket.close();
  });

  test("raising recipe fails with file and line", { timeout: 120_000 }, async () => {
    const queued = plane.runs.startRun({ recipe_path: writeRecipe("failing.py", FAILING_RECIPE), config: {}, dry_run: false });
    const run = await plane.runs.waitForRun(queued.id);
    expect(run.status).toBe("failed");
    expect(run.exit_code).toBe(1);
    expect(run.error).toEqual({ message: expect.stringContaining("the answer is not 42"), file: "failing.py", line: 7 });
    expect(outputOf(run.id, "stdout")).toBe("about to fail\n");
  });

  test("output is stored in write order", { timeout: 120_000 }, async () => {
    const queued = plane.runs.startRun({ recipe_path: writeRecipe("interleaved.py", INTERLEAVED_RECIPE), config: {}, dry_run: false });
    const run = await plane.runs.waitForRun(queued.id);
    expect(run.status).toBe("failed");
    expect(run.error).toEqual({ message: "ValueError: stop", file: "interleaved.py", line: 10 });

    const lines: string[] = [];
    for (const event of eventsOf(run.id)) {
      if (event.type !== "stdout" && event.type !== "stderr") continue;
      for (const line of String(event.payload.text).split("\n")) {
        if (line !== "" && !line.startsWith("INFO ")) lines.push(`${event.type}: ${line}`);
      }
    }
    const expected = Array.from({ length: 200 }, (_, i) => [`stdout: out ${i}`, `stderr: err ${i}`]).flat();
    expect(lines.slice(0, 400)).toEqual(expected);
    expect(lines[400]).toBe("stderr: Traceback (most recent call last):");
    expect(lines.at(-1)).toMatch(/^stderr: error: .*recipe\.py:10: ValueError: stop$/);
  });

  test("bad config exits 2 before running", { timeout: 120_000 }, async () => {
    const recipe = writeRecipe("configured.py", CONFIG_RECIPE);
    const queued = plane.runs.startRun({ recipe_path: recipe, config: { model: "ghost", steps: 0 }, dry_run: false });
    const run = await plane.runs.waitForRun(queued.id);
    expect(run.status).toBe("failed");
    expect(run.exit_code).toBe(2);
    expect(run.error?.message).toMatch(/ghost/);
    expect(run.error?.message).toMatch(/tiny/);
    // The location is the field's declaration in the recipe, not a line of the run's
    // pretty-printed config.json, and the message names each field by its path.
    expect(run.error?.file).toBe("configured.py");
    expect(run.error?.line).toBe(7);
    expect(run.error?.message).toContain('(1) config field "model" = "ghost": unknown model key');
    expect(run.error?.message).toContain('(2) config field "steps" = 0: Input should be greater than or equal to 1; change "steps" in the config');
    expect(outputOf(run.id, "stderr")).not.toContain("config.json");
    expect(outputOf(run.id, "stdout")).toBe("");
  });

  test("cancel stops a running recipe", { timeout: 120_000 }, async () => {
    const queued = plane.runs.startRun({ recipe_path: writeRecipe("sleeping.py", SLEEPING_RECIPE), config: {}, dry_run: false });
    await new Promise<void>((resolve) => {
      const listener = () => {
        if (outputOf(queued.id, "stdout").includes("waiting")) {
          plane.runs.off("event", listener);
          resolve();
        }
      };
      plane.runs.on("event", listener);
    });
    expect(plane.runs.cancel(queued.id).status).toBe("running");
    const run = await plane.runs.waitForRun(queued.id);
    expect(run.status).toBe("cancelled");
    // 128 + SIGTERM, the default signal of a cancel request.
    expect(run.exit_code).toBe(143);
    expect(run.error).toEqual({ message: "cancelled by SIGTERM", file: null, line: null });
    expect(run.ended_at).not.toBeNull();
    expect(() => plane.runs.cancel(queued.id)).toThrow(/has already ended with status cancelled/);
  });

  test("schema of a recipe marks model fields", { timeout: 120_000 }, async () => {
    writeRecipe("schema.py", CONFIG_RECIPE);
    const outcome = await plane.dispatcher.call("recipes.schema", { path: "schema.py" });
    expect(outcome.ok).toBe(true);
    if (!outcome.ok) return;
    const schema = (outcome.result as { schema: { properties: Record<string, Record<string, unknown>> } }).schema;
    expect(schema.properties.model?.["x-galley-kind"]).toBe("model");
    expect(schema.properties.steps?.default).toBe(3);
  });

  test("schema of a broken recipe has file and line", { timeout: 120_000 }, async () => {
    writeRecipe("broken.py", "from adaptive_harmony.runtime import recipe_main\n\n\ndef oops(:\n    pass\n");
    const outcome = await plane.dispatcher.call("recipes.schema", { path: "broken.py" });
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.error.code).toBe("unprocessable");
    expect(outcome.error.file).toBe("broken.py");
    expect(outcome.error.line).toBe(4);
  });

  test("telemetry reaches the history", { timeout: 30_000 }, async () => {
    const deadline = Date.now() + 10_000;
    while (!plane.engine!.history.latest() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    const outcome = await plane.dispatcher.call("telemetry.snapshot", {});
    expect(outcome.ok).toBe(true);
    if (!outcome.ok) return;
    const telemetry = (outcome.result as { telemetry: { devices: { id: string }[] } | null }).telemetry;
    expect(telemetry).not.toBeNull();
    expect(telemetry!.devices.length).toBeGreaterThan(0);
    const history = await plane.dispatcher.call("telemetry.history", { since: 0 });
    expect(history.ok).toBe(true);
    if (!history.ok) return;
    expect((history.result as { samples: unknown[] }).samples.length).toBeGreaterThan(0);
  });

  test("engine is restarted after it dies", { timeout: 240_000 }, async () => {
    const engine = plane.engine!;
    const pid = engine.status().pid!;
    const restarted = new Promise<void>((resolve) => {
      const listener = () => {
        if (engine.status().state === "ready" && engine.status().pid !== pid) {
          engine.off("status", listener);
          resolve();
        }
      };
      engine.on("status", listener);
    });
    process.kill(pid, "SIGKILL");
    await restarted;
    expect(engine.status().restarts).toBe(1);
    expect(engine.status().last_error).toBeNull();
    const log = fs.readFileSync(plane.paths.engineLog, "utf8");
    expect(log.match(/starting engine:/g)?.length).toBe(2);
  });
});
