// A training run seen from every screen: its spawn on the device card and in the spawn table
// while it runs, progress and loss in the workbench and the run history.
import { expect, openRecipe, RUN_TIMEOUT_MS, runAndWait, screenshot, test } from "./fixtures";

test("training run shows on the GPU and Runs screens", async ({ workbench: page }) => {
  await openRecipe(page, "train_adapter.py");
  await page.getByTestId("run-button").click();

  // Training spawns are released as soon as their run ends, so the GPU screen is checked while
  // the run is going.
  await page.getByTestId("nav-gpus").click();
  const card = page.getByTestId("gpu-card").first();
  const segment = card.locator('[data-testid="spawn-segment"][data-spawn="policy"]');
  await expect(segment).toHaveAttribute("data-kind", "train", { timeout: RUN_TIMEOUT_MS });
  await segment.hover();
  const hover = page.getByTestId("spawn-hover");
  await expect(hover).toContainText("policy");
  await expect(hover).toContainText("planned total");
  await expect(hover).toContainText("measured (process)");
  await expect(hover).toContainText("GiB");
  const row = page.locator('[data-testid="spawn-row"][data-spawn="policy"]');
  await expect(row).toContainText("galley-tiny-qwen3");
  await expect(row).toContainText("train");
  await screenshot(page, "gpus");
  // Released once the run ends: the table has no row for it any more.
  await expect(row).toHaveCount(0, { timeout: RUN_TIMEOUT_MS });

  await page.getByTestId("nav-workbench").click();
  await expect(page.getByTestId("run-status")).toHaveAttribute("data-status", "succeeded");
  await expect(page.locator('[data-testid="progress"] [data-stage="train"]')).toContainText("20/20");
  await expect(page.getByTestId("console")).toContainText("step 19: loss");

  await page.getByTestId("nav-runs").click();
  const latest = page.getByTestId("run-row").first();
  await expect(latest).toContainText("train_adapter.py");
  await latest.click();
  const detail = page.getByTestId("run-detail");
  await expect(detail.getByTestId("run-detail-status")).toHaveAttribute("data-status", "succeeded");
  await detail.getByTestId("run-tab-metrics").click();
  await expect(detail.locator('[data-testid="metric-chart"][data-metric="loss"]')).toContainText("20 points");
  await screenshot(page, "runs-metrics");

  await detail.getByTestId("run-tab-recipe").click();
  await expect(detail.getByTestId("snapshot-diff")).toContainText("Unchanged since this run");
  await detail.getByTestId("run-tab-config").click();
  await expect(detail.getByTestId("run-config")).toHaveText("{}");
});

test("re-run from the history starts a new run", async ({ workbench: page }) => {
  await openRecipe(page, "chat_template.py");
  expect(await runAndWait(page)).toBe("succeeded");

  await page.getByTestId("nav-runs").click();
  const rows = page.getByTestId("run-row");
  await expect(rows.first()).toContainText("chat_template.py");
  const before = await rows.count();
  await rows.first().click();
  await page.getByTestId("rerun-button").click();

  await expect(rows).toHaveCount(before + 1);
  const detail = page.getByTestId("run-detail");
  await expect(detail.getByTestId("run-detail-status")).toHaveAttribute("data-status", "succeeded", { timeout: RUN_TIMEOUT_MS });
  await detail.getByTestId("run-tab-logs").click();
  await expect(detail.getByTestId("console")).toContainText("round trip equals the original: True");
  await screenshot(page, "runs");
});
