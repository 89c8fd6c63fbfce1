// A second server whose engine places spawns on 4 virtual 80 GiB devices, while compute runs
// on the CPU. An example recipe's spawn appears on the GPU panel and the workbench's GPU strip
// and leaves when the run ends. A model's edited kv_cache_len reaches the next spawn.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { galleyCli, type RunningServer, startServer } from "../server";
import { createWorkspaceFile, expect, openRecipe, openWorkbench, RUN_TIMEOUT_MS, runAndWait, screenshot, test } from "./fixtures";

// Spawns the model without kv_cache_len, so the spawn takes the registry's default.
const KV_PROBE = `from adaptive_harmony import StringThread
from adaptive_harmony.runtime import RecipeContext, recipe_main


@recipe_main
async def main(ctx: RecipeContext):
    model = await ctx.client.model("model_registry://galley-tiny-qwen3", tokens_to_generate=4).spawn_inference("probe")
    await model.generate(StringThread([("user", "hi")]))
    print(f"probe spawned with kv_cache_len {model.info.kv_cache_len} on {', '.join(model.info.devices)}")
`;

let server: RunningServer;

test.beforeAll(async () => {
  // The second server reuses the first one's generated model instead of generating its own.
  const mainHome = process.env.GALLEY_E2E_HOME;
  if (!mainHome) throw new Error("GALLEY_E2E_HOME is not set; run the specs through test/playwright.config.ts");
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "galley-e2e-virtual-"));
  galleyCli(home, ["models", "import", path.join(mainHome, "models", "galley-tiny-qwen3"), "--key", "galley-tiny-qwen3", "--link"]);
  server = await startServer({ home, args: ["--devices", "4x80GiB"], logName: "serve-virtual.log" });
});

test.afterAll(async () => {
  await server?.stop();
  if (server && !process.env.GALLEY_E2E_KEEP_HOME) fs.rmSync(server.home, { recursive: true, force: true });
});

test("spawn appears on virtual devices and leaves", async ({ page }) => {
  await openWorkbench(page, server.url);
  await page.getByTestId("nav-gpus").click();
  await expect(page.getByTestId("gpu-card")).toHaveCount(4);
  await expect(page.getByTestId("gpu-card").first()).toHaveAttribute("data-device", "virtual:0");

  await openRecipe(page, "train_adapter.py");
  await page.getByTestId("run-button").click();
  // The GPU strip stays on the workbench while the run goes, with the spawn on one device.
  const strip = page.getByTestId("gpu-strip");
  await expect(strip.getByTestId("strip-device")).toHaveCount(4);
  await expect(strip.locator('[data-testid="strip-device"][data-spawns="1"]')).toHaveCount(1, { timeout: RUN_TIMEOUT_MS });
  await screenshot(page, "virtual-workbench-strip");

  await page.getByTestId("nav-gpus").click();
  const segment = page.locator('[data-testid="spawn-segment"][data-spawn="policy"]');
  await expect(segment).toHaveAttribute("data-kind", "train");
  const device = await segment.locator("xpath=ancestor::*[@data-testid='gpu-card']").getAttribute("data-device");
  expect(device).toMatch(/^virtual:[0-3]$/);
  const row = page.locator('[data-testid="spawn-row"][data-spawn="policy"]');
  await expect(row).toContainText(device!);
  await expect(row.getByTestId("spawn-tokens")).toHaveText("batch 256");
  await segment.hover();
  await expect(page.getByTestId("spawn-hover")).toContainText("optimizer_state");
  await screenshot(page, "virtual-gpus");

  // A training spawn is released as soon as its run's session closes.
  await expect(row).toHaveCount(0, { timeout: RUN_TIMEOUT_MS });
  await expect(segment).toHaveCount(0);
  await expect(page.locator(`[data-testid="gpu-timeline"][data-device="${device}"]`)).not.toHaveAttribute("data-points", /^[01]$/);
  await screenshot(page, "virtual-gpus-after");

  await page.getByTestId("nav-workbench").click();
  await expect(page.getByTestId("run-status")).toHaveAttribute("data-status", "succeeded");
  await expect(strip).toHaveCount(0);
});

test("edited kv_cache_len reaches the next spawn", async ({ page }) => {
  await openWorkbench(page, server.url);
  await createWorkspaceFile(page, "kv_probe.py", KV_PROBE, server);

  async function setKvCacheLen(value: number): Promise<void> {
    await page.getByTestId("nav-registry").click();
    await page.locator('[data-testid="model-row"][data-key="galley-tiny-qwen3"]').click();
    const detail = page.getByTestId("model-detail");
    await detail.getByTestId("defaults-kv_cache_len").fill(String(value));
    await detail.getByTestId("save-defaults").click();
    await expect(page.locator('[data-testid="model-row"][data-key="galley-tiny-qwen3"] td').nth(4)).toHaveText(String(value));
  }

  await setKvCacheLen(3072);
  await openRecipe(page, "kv_probe.py");
  expect(await runAndWait(page)).toBe("succeeded");
  await expect(page.getByTestId("console")).toContainText("probe spawned with kv_cache_len 3072");

  // The next spawn after another edit takes the new value; the kept spawn keeps its own.
  await setKvCacheLen(4096);
  await openRecipe(page, "kv_probe.py");
  expect(await runAndWait(page)).toBe("succeeded");
  await expect(page.getByTestId("console")).toContainText("probe spawned with kv_cache_len 4096");

  await page.getByTestId("nav-gpus").click();
  const probes = page.locator('[data-testid="spawn-row"][data-spawn="probe"]');
  await expect(probes.getByTestId("spawn-tokens")).toHaveText(["kv 3072", "kv 4096"], { useInnerText: true, timeout: 10_000 });
  await page.locator('[data-testid="spawn-segment"][data-spawn="probe"]').first().hover();
  await expect(page.getByTestId("spawn-hover")).toContainText("kv_cache");
  await screenshot(page, "virtual-kv-cache-len");
});
