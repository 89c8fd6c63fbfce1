// The Playground: chat with the embedded model through an inference spawn that the second
// message reuses, with sampling controls checked before sending.
import { expect, screenshot, test } from "./fixtures";

test("playground chats with sampling controls", async ({ workbench: page }) => {
  await page.getByTestId("nav-playground").click();
  await expect(page.getByTestId("playground-model")).toHaveValue("galley-tiny-qwen3");

  // An out-of-range value is named, and nothing is sent.
  await page.getByTestId("playground-top-p").fill("1.5");
  await page.getByTestId("playground-input").fill("Hello there");
  await page.getByTestId("playground-send").click();
  await expect(page.getByTestId("playground-problem")).toHaveText('top_p must be above 0 and at most 1, got "1.5"');
  await expect(page.getByTestId("playground-message")).toHaveCount(0);

  await page.getByTestId("playground-top-p").fill("0.9");
  await page.getByTestId("playground-temperature").fill("0.8");
  await page.getByTestId("playground-max-tokens").fill("8");
  await page.getByTestId("playground-send").click();
  await expect(page.getByTestId("playground-problem")).toHaveCount(0);
  const messages = page.getByTestId("playground-message");
  await expect(messages.first()).toHaveAttribute("data-role", "user");
  const replies = page.locator('[data-testid="playground-message"][data-role="assistant"]');
  await expect(replies).toHaveCount(1, { timeout: 180_000 });
  expect((await replies.first().locator("pre").innerText()).length).toBeGreaterThan(0);
  await expect(replies.first().getByTestId("playground-spawn")).toContainText("kv_cache_len");

  // The second message finds the first message's spawn kept warm and reuses it.
  await page.getByTestId("playground-input").fill("And again");
  await page.getByTestId("playground-input").press("Enter");
  await expect(replies).toHaveCount(2, { timeout: 180_000 });
  await expect(replies.nth(1).getByTestId("playground-spawn")).toHaveAttribute("data-reused", "true");
  await expect(messages).toHaveCount(4);
  await expect(page.getByTestId("playground-error")).toHaveCount(0);
  await screenshot(page, "playground");
});
