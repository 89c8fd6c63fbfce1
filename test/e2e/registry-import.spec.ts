// Importing datasets and model folders from the Registry screen: every problem of a bad file
// or folder is listed (JSONL problems by line number) and nothing is registered.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { expect, screenshot, test } from "./fixtures";

function tempFolder(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

test("jsonl import lists bad lines", async ({ workbench: page }) => {
  const dir = tempFolder("galley-e2e-datasets-");
  const bad = path.join(dir, "bad.jsonl");
  fs.writeFileSync(
    bad,
    [
      '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}',
      "{not json",
      "[1, 2]",
      '{"messages": [{"role": "bot", "content": "beep"}]}',
    ].join("\n"),
  );
  const good = path.join(dir, "good.jsonl");
  fs.writeFileSync(good, ['{"prompt": "a"}', '{"prompt": "b"}', "", '{"prompt": "c"}'].join("\n"));

  await page.getByTestId("nav-registry").click();
  const form = page.getByTestId("dataset-import-form");
  await form.getByTestId("dataset-file").fill(bad);
  await form.getByTestId("dataset-key").fill("e2e-bad-data");
  await form.getByTestId("dataset-submit").click();
  const error = form.getByTestId("dataset-import-error");
  await expect(error).toContainText("has 3 problems in 4 lines");
  const reasons = error.getByTestId("error-reason");
  await expect(reasons).toHaveCount(3);
  await expect(reasons.nth(0)).toContainText(`${bad}:2: not valid JSON`);
  await expect(reasons.nth(1)).toContainText(`${bad}:3: expected a JSON object, got an array`);
  await expect(reasons.nth(2)).toHaveText(`${bad}:4: messages[0].role must be one of system, user, assistant, tool, got "bot"`);
  await expect(page.locator('[data-testid="dataset-row"][data-key="e2e-bad-data"]')).toHaveCount(0);
  await screenshot(page, "dataset-import-errors");

  await form.getByTestId("dataset-file").fill(good);
  await form.getByTestId("dataset-key").fill("e2e-good-data");
  await form.getByTestId("dataset-submit").click();
  await expect(form.getByTestId("dataset-import-done")).toContainText("Imported dataset e2e-good-data: 3 rows (jsonl).");
  const row = page.locator('[data-testid="dataset-row"][data-key="e2e-good-data"]');
  await expect(row.getByTestId("dataset-rows")).toHaveText("3");
});

test("model folder import lists every reason", async ({ workbench: page }) => {
  const folder = tempFolder("galley-e2e-model-");
  fs.writeFileSync(path.join(folder, "config.json"), '{"architectures": ["LlamaForCausalLM"], ');

  await page.getByTestId("nav-registry").click();
  const form = page.getByTestId("import-form");
  await form.getByTestId("import-dir").fill(folder);
  await form.getByTestId("import-key").fill("e2e-broken-model");
  await form.getByTestId("import-submit").click();
  const error = form.getByTestId("import-error");
  await expect(error).toHaveAttribute("data-code", "unprocessable");
  const reasons = error.getByTestId("error-reason");
  await expect(reasons.filter({ hasText: "config.json" })).not.toHaveCount(0);
  await expect(reasons.filter({ hasText: /tokenizer/ })).not.toHaveCount(0);
  await expect(reasons.filter({ hasText: /safetensors|weights/ })).not.toHaveCount(0);
  await expect(page.locator('[data-testid="model-row"][data-key="e2e-broken-model"]')).toHaveCount(0);
  await screenshot(page, "model-import-errors");
});
