// A run's artifacts (JobNotifier artifacts and the model it saved), a chart for every metric
// it logged, and the saved model's lineage in the registry linking back to the run.
import { createWorkspaceFile, expect, openRecipe, runAndWait, screenshot, test } from "./fixtures";

const SAVES = `from adaptive_harmony import StringThread
from adaptive_harmony.runtime import JobArtifact, RecipeContext, recipe_main


@recipe_main
async def main(ctx: RecipeContext):
    policy = await (
        ctx.client.model("model_registry://galley-tiny-qwen3", kv_cache_len=256, tokens_to_generate=8)
        .with_adapter()
        .spawn_train("policy", max_batch_size=128)
    )
    thread = StringThread([("user", "Name a GPU."), ("assistant", "H100.")]).with_weight_last_assistant_turn()
    for step in range(3):
        await policy.train_language_modelling(thread)
        stats = await policy.optim_step(lr=1e-3, wd=0.0, max_grad_norm=1.0)
        ctx.log_metric("loss", stats["loss"], step=step)
        ctx.log_metric("reward", 0.5 + 0.1 * step, step=step)
        ctx.log_metric("kl", 0.01 * step, step=step)
    key = await policy.save("e2e adapter")
    print(f"saved {key}")
    ctx.job.register_artifact(JobArtifact(name="eval report", kind="evaluation", uri="file:///tmp/eval-report.json"))
`;

test("run lists artifacts, metrics and lineage", async ({ workbench: page }) => {
  await createWorkspaceFile(page, "runs/saves.py", SAVES);
  await openRecipe(page, "runs/saves.py");
  expect(await runAndWait(page)).toBe("succeeded");
  // Anchored to the recipe's own line: the engine's log can also contain "saved under".
  const saved = /^saved (\S+)$/m.exec(await page.getByTestId("console").innerText())?.[1];
  expect(saved, "the recipe printed the saved model's key").toBeTruthy();

  await page.getByTestId("nav-runs").click();
  await page.getByTestId("run-row").first().click();
  const detail = page.getByTestId("run-detail");
  const runId = await detail.getAttribute("data-run-id");
  await expect(detail).toContainText("runs/saves.py");

  await detail.getByTestId("run-tab-metrics").click();
  for (const metric of ["loss", "reward", "kl"]) {
    await expect(detail.locator(`[data-testid="metric-chart"][data-metric="${metric}"]`)).toContainText("3 points");
  }
  const reward = detail.locator('[data-testid="metric-chart"][data-metric="reward"] svg');
  const box = await reward.boundingBox();
  await page.mouse.move(box!.x + box!.width - 2, box!.y + box!.height / 2);
  await expect(detail.getByTestId("metric-readout")).toHaveText("step 2: 0.7000");
  await screenshot(page, "run-metrics");

  await detail.getByTestId("run-tab-artifacts").click();
  const artifacts = detail.getByTestId("run-artifacts");
  await expect(artifacts.locator('[data-testid="artifact-row"][data-kind="evaluation"]')).toContainText("file:///tmp/eval-report.json");
  const modelRow = artifacts.locator('[data-testid="artifact-row"][data-kind="model"]');
  await expect(modelRow).toHaveCount(1);
  await expect(modelRow).toContainText(`model_registry://${saved}`);
  await screenshot(page, "run-artifacts");

  // The saved model's lineage names its parent, the run, the recipe revision and the step.
  await modelRow.getByTestId("artifact-model-link").click();
  const model = page.getByTestId("model-detail");
  await expect(model).toHaveAttribute("data-key", saved!);
  await expect(model.getByTestId("lineage-parent")).toHaveText("galley-tiny-qwen3");
  await expect(model.getByTestId("lineage-run")).toHaveText(runId!);
  await expect(model.getByTestId("lineage-recipe-hash")).toHaveText(/^[0-9a-f]{12}$/);
  await expect(model.getByTestId("lineage-optim-step")).toHaveText("3");
  await screenshot(page, "model-lineage");

  await model.getByTestId("lineage-run").click();
  await expect(page.getByTestId("run-detail")).toHaveAttribute("data-run-id", runId!);
});
