// The registry screen: the embedded default model and its editable inference configuration.
import { expect, screenshot, test } from "./fixtures";

test("model defaults are editable", async ({ workbench: page }) => {
  await page.getByTestId("nav-registry").click();
  const row = page.locator('[data-testid="model-row"][data-key="galley-tiny-qwen3"]');
  await expect(row).toContainText("qwen3");
  await row.click();

  const detail = page.getByTestId("model-detail");
  await expect(detail).toHaveAttribute("data-key", "galley-tiny-qwen3");
  await expect(detail).toContainText("Qwen3ForCausalLM");

  const tokens = detail.getByTestId("defaults-tokens_to_generate");
  await tokens.fill("0");
  await detail.getByTestId("save-defaults").click();
  await expect(detail).toContainText('tokens_to_generate must be a whole number of at least 1, got "0"');

  await tokens.fill("24");
  await detail.getByTestId("save-defaults").click();
  await expect(row.locator("td").nth(5)).toHaveText("24");

  // The change is stored by the control plane, not only in this page.
  await page.reload();
  await page.getByTestId("nav-registry").click();
  await expect(page.locator('[data-testid="model-row"][data-key="galley-tiny-qwen3"] td').nth(5)).toHaveText("24");
  await screenshot(page, "registry");
});
