// The Playground: a chat turn with the embedded model.
import { expect, screenshot, test } from "./fixtures";

test("playground answers a message", async ({ workbench: page }) => {
  await page.getByTestId("nav-playground").click();
  await expect(page.getByTestId("playground-model")).toHaveValue("galley-tiny-qwen3");

  await page.getByTestId("playground-input").fill("Hello there");
  await page.getByTestId("playground-send").click();
  const messages = page.getByTestId("playground-message");
  await expect(messages.first()).toHaveAttribute("data-role", "user");
  const reply = page.locator('[data-testid="playground-message"][data-role="assistant"]');
  await expect(reply).toHaveCount(1, { timeout: 180_000 });
  expect((await reply.locator("pre").innerText()).length).toBeGreaterThan(0);
  await expect(page.getByTestId("playground-error")).toHaveCount(0);
  await screenshot(page, "playground");
});
