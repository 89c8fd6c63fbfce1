// Every screen at a laptop size (1280x800) and in a narrow window (900x700), with screenshots
// for a person to look at. The checks: panes side by side do not overlap, no screen scrolls
// sideways as a whole, and counts of one read in the singular.
import type { Locator, Page } from "@playwright/test";

import { createWorkspaceFile, expect, openRecipe, runAndWait, screenshot, test } from "./fixtures";

const VIEWPORTS = [
  { width: 1280, height: 800 },
  { width: 900, height: 700 },
];

// A long recipe path stresses the widths of the runs table and the run header. One spawn and a
// metric with a single point show counts of one.
const RECIPE_PATH = "layout/a_recipe_with_a_rather_long_file_name_for_layout_checks.py";
const RECIPE = `from adaptive_harmony.runtime import RecipeContext, recipe_main


@recipe_main
async def main(ctx: RecipeContext):
    model = await ctx.client.model(
        "model_registry://galley-tiny-qwen3", kv_cache_len=256, tokens_to_generate=4
    ).spawn_inference("layout")
    ctx.job.register_stages(["evaluate"])
    for step in range(3):
        ctx.log_metric("score", 0.1 * step, step=step)
    ctx.log_metric("accuracy", 0.5, step=0)
    ctx.job.report_progress("evaluate", tot_num_samples=1, processed_num_samples=1)
    print("layout check done")
`;

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

async function boxOf(locator: Locator): Promise<Box> {
  const box = await locator.boundingBox();
  expect(box, `${locator.toString()} has a box on the page`).not.toBeNull();
  return box!;
}

function intersects(a: Box, b: Box): boolean {
  // Touching edges (a shared border line) is not an overlap.
  const overlapX = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const overlapY = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  return overlapX > 0.5 && overlapY > 0.5;
}

async function expectApart(first: Locator, second: Locator): Promise<void> {
  const a = await boxOf(first);
  const b = await boxOf(second);
  expect.soft(intersects(a, b), `${first.toString()} ${JSON.stringify(a)} overlaps ${second.toString()} ${JSON.stringify(b)}`).toBe(false);
}

/** Fails when an element of the screen is wider than the window, so the whole page scrolls sideways. */
async function expectNoSidewaysScroll(page: Page, screen: string): Promise<void> {
  const widths = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  expect.soft(widths.scroll, `the ${screen} screen is wider than the window`).toBeLessThanOrEqual(widths.client);
}

/** Fails when a pane's content is wider than the pane, so part of it is cut off or needs a sideways scroll. */
async function expectContentFits(pane: Locator, name: string): Promise<void> {
  const widths = await pane.evaluate((element) => ({ scroll: element.scrollWidth, client: element.clientWidth }));
  expect.soft(widths.scroll, `the content of the ${name} is wider than the pane`).toBeLessThanOrEqual(widths.client);
}

async function showScreen(page: Page, screen: string): Promise<void> {
  await page.getByTestId(`nav-${screen}`).click();
  await expect(page.getByTestId(`screen-${screen}`)).toBeVisible();
}

test("screens fit at 1280 and 900 px", async ({ workbench: page }) => {
  await createWorkspaceFile(page, RECIPE_PATH, RECIPE);
  await openRecipe(page, RECIPE_PATH);
  expect(await runAndWait(page)).toBe("succeeded");

  for (const viewport of VIEWPORTS) {
    const size = `${viewport.width}x${viewport.height}`;
    await page.setViewportSize(viewport);

    await showScreen(page, "workbench");
    await openRecipe(page, RECIPE_PATH);
    await expectApart(page.getByTestId("file-list"), page.getByTestId("editor"));
    await expectApart(page.getByTestId("editor"), page.getByTestId("run-panel"));
    await expectNoSidewaysScroll(page, "workbench");
    await screenshot(page, `layout-workbench-${size}`);

    await openRecipe(page, "config_form.py");
    await expect(page.getByTestId("config-form")).toBeVisible();
    await expectContentFits(page.getByTestId("run-panel"), "run panel");
    await expectContentFits(page.getByTestId("editor-tabs"), "editor tab bar");
    await screenshot(page, `layout-workbench-form-${size}`);

    await showScreen(page, "gpus");
    await expect(page.getByTestId("gpus-page")).toBeVisible();
    const gpuSummary = await page.locator(".gpus-head").innerText();
    expect(gpuSummary).toMatch(/\b\d+ spawns?\b/);
    expect(gpuSummary).not.toMatch(/\b1 (spawns|devices)\b/);
    await expectNoSidewaysScroll(page, "gpus");
    await screenshot(page, `layout-gpus-${size}`);

    await showScreen(page, "runs");
    await page.getByTestId("run-row").first().click();
    const detail = page.getByTestId("run-detail");
    await expect(detail).toContainText(RECIPE_PATH);
    await expect(detail).toContainText("1 spawn: layout (inference, galley-tiny-qwen3)");
    await expectApart(page.getByTestId("runs-table"), detail);
    await expectNoSidewaysScroll(page, "runs");
    await screenshot(page, `layout-runs-${size}`);
    await detail.getByTestId("run-tab-metrics").click();
    await expect(detail.getByTestId("metric-chart")).toHaveCount(2);
    await expect(detail.locator('[data-testid="metric-chart"][data-metric="accuracy"]')).toContainText("1 point ·");
    await expect(detail.locator('[data-testid="metric-chart"][data-metric="score"]')).toContainText("3 points ·");
    await expectApart(page.getByTestId("runs-table"), detail);
    await screenshot(page, `layout-runs-metrics-${size}`);

    await showScreen(page, "registry");
    await expect(page.getByTestId("model-detail")).toBeVisible();
    await expectApart(page.getByTestId("models-table"), page.getByTestId("model-detail"));
    await expectNoSidewaysScroll(page, "registry");
    await screenshot(page, `layout-registry-${size}`);

    await showScreen(page, "playground");
    await expectNoSidewaysScroll(page, "playground");
    await screenshot(page, `layout-playground-${size}`);
  }
});
