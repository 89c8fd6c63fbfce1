// The config form generated from a recipe's InputConfig: registry picker, validation of every
// field before the run starts, defaults of empty fields, and the values reaching the recipe.
import { createWorkspaceFile, expect, openRecipe, runAndWait, screenshot, test } from "./fixtures";

const UNKNOWN_MODEL = `from adaptive_harmony.runtime import AdaptiveModel, InputConfig, RecipeContext, recipe_main


class Config(InputConfig):
    model: AdaptiveModel = AdaptiveModel("no-such-model")


@recipe_main
async def main(config: Config, ctx: RecipeContext):
    print("started with", config.model.path)
`;

const REQUIRED_PROMPT = `from adaptive_harmony.runtime import InputConfig, RecipeContext, recipe_main


class Config(InputConfig):
    prompt: str
    repeats: int = 2


@recipe_main
async def main(config: Config, ctx: RecipeContext):
    print("prompt is", repr(config.prompt), "repeats", config.repeats)
`;

test("config form validates before running", async ({ workbench: page }) => {
  await openRecipe(page, "config_form.py");
  const form = page.getByTestId("config-form");
  await expect(form).toBeVisible();

  const model = page.getByTestId("config-model");
  await expect(model).toHaveValue("galley-tiny-qwen3");
  await expect(model.locator("option", { hasText: /^galley-tiny-qwen3$/ })).toHaveCount(1);
  await expect(model.locator('option[value=""]')).toHaveText("default (galley-tiny-qwen3)");
  await expect(page.getByTestId("config-replies")).toHaveValue("3");

  // Two invalid values at once: both are listed, and no run starts.
  await page.getByTestId("config-replies").fill("0");
  await page.getByTestId("config-temperature").fill("5");
  await page.getByTestId("run-button").click();
  const problems = page.getByTestId("config-problem");
  await expect(problems).toHaveCount(2);
  await expect(problems.nth(0)).toHaveText("replies must be at least 1, got 0");
  await expect(problems.nth(1)).toHaveText("temperature must be at most 2, got 5");
  await expect(page.getByTestId("run-status")).toHaveCount(0);
  await screenshot(page, "config-form-invalid");

  await page.getByTestId("config-replies").fill("2");
  await page.getByTestId("config-temperature").fill("0");
  await page.getByTestId("config-prompt").fill("Name three GPUs.");
  expect(await runAndWait(page)).toBe("succeeded");

  const output = page.getByTestId("console");
  await expect(output).toContainText("reply 1:");
  await expect(output).toContainText("reply 2:");
  await expect(output).not.toContainText("reply 3:");
  await expect(page.locator('[data-testid="progress"] [data-stage="generate"]')).toContainText("2/2");
  await screenshot(page, "config-form");
});

test("config form rejects an unknown model", async ({ workbench: page }) => {
  await createWorkspaceFile(page, "forms/unknown_model.py", UNKNOWN_MODEL);
  await openRecipe(page, "forms/unknown_model.py");
  const model = page.getByTestId("config-model");
  await expect(model).toHaveValue("no-such-model");
  await expect(model.locator("option:checked")).toHaveText("no-such-model (not registered)");

  await page.getByTestId("run-button").click();
  await expect(page.getByTestId("config-problem")).toContainText('model unknown model "no-such-model"; pick one of');
  await expect(page.getByTestId("config-problem")).toContainText("galley-tiny-qwen3");
  await expect(page.getByTestId("run-status")).toHaveCount(0);
  await screenshot(page, "config-form-unknown-model");

  // Picking a registered model clears the problem and the run starts.
  await model.selectOption("galley-tiny-qwen3");
  expect(await runAndWait(page)).toBe("succeeded");
  await expect(page.getByTestId("console")).toContainText("started with model_registry://galley-tiny-qwen3");
});

test("empty config fields send their defaults", async ({ workbench: page }) => {
  await openRecipe(page, "config_form.py");
  const replies = page.getByTestId("config-replies");
  const prompt = page.getByTestId("config-prompt");
  await replies.fill("");
  await prompt.fill("");

  // An empty field shows the default it stands for, as placeholder and as a note.
  await expect(replies).toHaveAttribute("placeholder", "3");
  await expect(prompt).toHaveAttribute("placeholder", "Write a haiku about GPUs.");
  await expect(page.getByTestId("config-empty-note-replies")).toHaveText("Empty, so the run uses the default: 3");
  await expect(page.getByTestId("config-empty-note-temperature")).toHaveCount(0);
  await screenshot(page, "config-form-defaults");

  await page.getByTestId("config-temperature").fill("0");
  expect(await runAndWait(page)).toBe("succeeded");
  await expect(page.getByTestId("console")).toContainText("reply 3:");

  // The run's stored config contains the defaults, so it records every value the recipe used.
  const runId = await page.getByTestId("run-panel").getAttribute("data-run-id");
  await page.getByTestId("nav-runs").click();
  await page.locator(`[data-testid="run-row"][data-run-id="${runId}"]`).click();
  await page.getByTestId("run-tab-config").click();
  const config = JSON.parse(await page.getByTestId("run-config").innerText()) as Record<string, unknown>;
  expect(config.replies).toBe(3);
  expect(config.prompt).toBe("Write a haiku about GPUs.");
  expect(config.temperature).toBe(0);
});

test("required config field blocks the run", async ({ workbench: page }) => {
  await createWorkspaceFile(page, "forms/required_prompt.py", REQUIRED_PROMPT);
  await openRecipe(page, "forms/required_prompt.py");
  const prompt = page.getByTestId("config-prompt");
  await expect(prompt).toHaveValue("");
  await expect(prompt).toHaveAttribute("placeholder", "required");
  await expect(page.getByTestId("config-empty-note-prompt")).toHaveText("Required: the recipe has no default.");

  await page.getByTestId("run-button").click();
  await expect(page.getByTestId("config-problem")).toHaveText("prompt is required; the recipe has no default, so enter a value");
  await expect(page.getByTestId("config-problems")).toHaveText("Fix prompt before running.");
  await expect(page.getByTestId("run-status")).toHaveCount(0);
  await screenshot(page, "config-form-required");

  await prompt.fill("Name a GPU.");
  expect(await runAndWait(page)).toBe("succeeded");
  await expect(page.getByTestId("console")).toContainText("prompt is 'Name a GPU.' repeats 2");
});
