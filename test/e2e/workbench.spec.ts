// The workbench: open an example recipe, run it, and watch its output and status.
import { expect, openRecipe, runAndWait, screenshot, test } from "./fixtures";

test("example recipe runs and prints its generated text", async ({ workbench: page }) => {
  await expect(page.getByTestId("file-list")).toContainText("hello_generate.py");
  await openRecipe(page, "hello_generate.py");
  await expect(page.locator(".monaco-editor")).toContainText("spawn_inference");

  const runButton = page.getByTestId("run-button");
  await runButton.click();
  // The status shows up as soon as the run is created: queued, running, or already done.
  await expect(page.getByTestId("run-status")).toHaveAttribute("data-status", /^(queued|running|succeeded)$/);

  const status = page.getByTestId("run-status");
  await expect(status).toHaveAttribute("data-status", "succeeded", { timeout: 180_000 });
  const console_ = page.getByTestId("console");
  await expect(console_).toContainText("prompt: Say hello to Galley.");
  // The tiny model's reply is random text (it may even start with a newline), so the check is
  // that some text follows the label.
  const stdout = (await console_.locator('[data-stream="stdout"]').allInnerTexts()).join("");
  expect(stdout, "the console shows the generated line").toContain("generated:");
  const reply = stdout.slice(stdout.indexOf("generated:") + "generated:".length);
  expect(reply.trim().length).toBeGreaterThan(0);
  await expect(runButton).toBeEnabled();
  await screenshot(page, "workbench");
});

test("chat template example round-trips a thread", async ({ workbench: page }) => {
  await openRecipe(page, "chat_template.py");
  expect(await runAndWait(page)).toBe("succeeded");
  await expect(page.getByTestId("console")).toContainText("round trip equals the original: True");
});
