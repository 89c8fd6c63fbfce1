// Releasing spawns from the GPU panel's spawn table: a kept spawn after a confirmation, and
// a spawn a running recipe still uses, whose next call then fails with not_found.
import { createWorkspaceFile, expect, openRecipe, RUN_TIMEOUT_MS, runAndWait, screenshot, test } from "./fixtures";

// Generates until the spawn is released under it, then prints the error the SDK raised.
const HOLDS_A_SPAWN = `import asyncio

from adaptive_harmony import StringThread
from adaptive_harmony.runtime import RecipeContext, recipe_main


@recipe_main
async def main(ctx: RecipeContext):
    model = await ctx.client.model(
        "model_registry://galley-tiny-qwen3", kv_cache_len=512, tokens_to_generate=2
    ).spawn_inference("victim")
    print("spawned victim", flush=True)
    for _ in range(240):
        try:
            await model.generate(StringThread([("user", "ping")]))
        except Exception as error:
            print(f"after release: {type(error).__name__}: {error}", flush=True)
            return
        await asyncio.sleep(0.25)
    raise RuntimeError("the spawn was never released")
`;

test("kept spawn is released after confirming", async ({ workbench: page }) => {
  await openRecipe(page, "hello_generate.py");
  expect(await runAndWait(page)).toBe("succeeded");

  await page.getByTestId("nav-gpus").click();
  const row = page.locator('[data-testid="spawn-row"][data-spawn="hello"][data-state="kept"]').first();
  await expect(row).toBeVisible();
  await expect(row.getByTestId("spawn-tokens")).toHaveText("kv 1024");
  const spawnId = await row.getAttribute("data-spawn-id");

  // Cancel leaves the spawn alone.
  await row.getByTestId("release-spawn").click();
  const dialog = page.getByTestId("confirm-dialog");
  await expect(dialog).toContainText("Release spawn hello?");
  await expect(dialog).toContainText("kept warm for reuse");
  await dialog.getByTestId("confirm-cancel").click();
  await expect(dialog).toHaveCount(0);
  await expect(page.locator(`[data-spawn-id="${spawnId}"]`)).toBeVisible();

  await row.getByTestId("release-spawn").click();
  await screenshot(page, "spawn-release-confirm");
  await dialog.getByTestId("confirm-accept").click();
  await expect(page.locator(`[data-spawn-id="${spawnId}"]`)).toHaveCount(0);
  await expect(page.getByTestId("notices")).toContainText("Released spawn hello");
  await screenshot(page, "spawn-released");
});

test("released spawn fails its owner's next call", async ({ workbench: page }) => {
  await createWorkspaceFile(page, "spawns/holds_a_spawn.py", HOLDS_A_SPAWN);
  await openRecipe(page, "spawns/holds_a_spawn.py");
  await page.getByTestId("run-button").click();
  await expect(page.getByTestId("console")).toContainText("spawned victim", { timeout: RUN_TIMEOUT_MS });

  await page.getByTestId("nav-gpus").click();
  const row = page.locator('[data-testid="spawn-row"][data-spawn="victim"]');
  await expect(row).toHaveCount(1);
  await row.getByTestId("release-spawn").click();
  await page.getByTestId("confirm-accept").click();
  await expect(row).toHaveCount(0);

  await page.getByTestId("nav-workbench").click();
  await expect(page.getByTestId("run-status")).toHaveAttribute("data-status", "succeeded", { timeout: RUN_TIMEOUT_MS });
  await expect(page.getByTestId("console")).toContainText(/after release: \w+: .*no spawn named 'victim'/);
});
