// The workbench's explorer (rename, delete, files changed on disk) and console (ANSI colors,
// search, follow), and the run's stage progress bars.
import fs from "node:fs";

import type { Page } from "@playwright/test";

import { createWorkspaceFile, expect, openRecipe, runAndWait, screenshot, test, workspaceFile } from "./fixtures";

const PRINTS = `from adaptive_harmony.runtime import RecipeContext, recipe_main


@recipe_main
async def main(ctx: RecipeContext):
    print("MARKER")
`;

const COLORFUL = `from adaptive_harmony.runtime import RecipeContext, recipe_main


@recipe_main
async def main(ctx: RecipeContext):
    ctx.job.register_stages(["prepare", "work", "never reached"])
    ctx.job.report_progress("prepare", tot_num_samples=1, processed_num_samples=1)
    print("\\x1b[31mred alert\\x1b[0m then plain")
    print("\\x1b[1;32mbold green\\x1b[0m")
    print("progress 10%\\rprogress 100%")
    for step in range(300):
        print(f"line {step}")
        if (step + 1) % 100 == 0:
            ctx.job.report_progress("work", tot_num_samples=300, processed_num_samples=step + 1)
    print("a needle in the haystack")
`;

function item(page: Page, path: string) {
  return page.locator(`[data-testid="recipe-item"][data-path="${path}"]`);
}

function row(page: Page, path: string) {
  return page.locator(".file-row", { has: item(page, path) });
}

test("explorer renames and deletes files", async ({ workbench: page }) => {
  await createWorkspaceFile(page, "explorer/old_name.py", PRINTS);
  // The explorer follows the disk, so the new file shows up without a reload.
  await openRecipe(page, "explorer/old_name.py");

  await row(page, "explorer/old_name.py").hover();
  await row(page, "explorer/old_name.py").getByTestId("rename-file").click();
  const input = page.getByTestId("rename-input");
  await input.fill("explorer/new_name");
  await input.press("Enter");
  await expect(item(page, "explorer/new_name.py")).toBeVisible();
  await expect(item(page, "explorer/old_name.py")).toHaveCount(0);
  await expect(page.locator('[data-testid="editor-tab"][data-path="explorer/new_name.py"]')).toBeVisible();
  expect(fs.existsSync(workspaceFile("explorer/new_name.py"))).toBe(true);
  expect(fs.existsSync(workspaceFile("explorer/old_name.py"))).toBe(false);

  await row(page, "explorer/new_name.py").hover();
  await row(page, "explorer/new_name.py").getByTestId("delete-file").click();
  const dialog = page.getByTestId("confirm-dialog");
  await expect(dialog).toContainText("Delete explorer/new_name.py?");
  await screenshot(page, "explorer-delete-confirm");
  await dialog.getByTestId("confirm-accept").click();
  await expect(item(page, "explorer/new_name.py")).toHaveCount(0);
  await expect(page.locator('[data-testid="editor-tab"][data-path="explorer/new_name.py"]')).toHaveCount(0);
  expect(fs.existsSync(workspaceFile("explorer/new_name.py"))).toBe(false);
});

test("files changed on disk reload or warn", async ({ workbench: page }) => {
  const file = workspaceFile("explorer/watched.py");
  fs.mkdirSync(workspaceFile("explorer"), { recursive: true });
  fs.writeFileSync(file, "VERSION_ONE = 1\n");
  await openRecipe(page, "explorer/watched.py");
  const editor = page.locator(".monaco-editor .view-lines");
  await expect(editor).toContainText("VERSION_ONE");

  // A tab without unsaved edits follows the disk.
  fs.writeFileSync(file, "VERSION_TWO = 2\n");
  await expect(editor).toContainText("VERSION_TWO");
  await expect(page.getByTestId("disk-banner")).toHaveCount(0);

  // With unsaved edits, the tab keeps them and shows that the disk changed.
  await page.locator(".monaco-editor .view-line").first().click();
  await page.keyboard.press("End");
  await page.keyboard.type("  # local edit");
  await expect(page.getByTestId("save-button")).toBeEnabled();
  fs.writeFileSync(file, "VERSION_THREE = 3\n");
  const banner = page.getByTestId("disk-banner");
  await expect(banner).toHaveAttribute("data-kind", "changed");
  await expect(editor).toContainText("local edit");
  await screenshot(page, "explorer-disk-conflict");
  await banner.getByTestId("disk-keep").click();
  await expect(banner).toHaveCount(0);
  await expect(editor).toContainText("local edit");
  await expect(page.getByTestId("save-button")).toBeEnabled();

  fs.writeFileSync(file, "VERSION_FOUR = 4\n");
  await banner.getByTestId("disk-reload").click();
  await expect(editor).toContainText("VERSION_FOUR");
  await expect(editor).not.toContainText("local edit");
  await expect(page.getByTestId("save-button")).toBeDisabled();
});

test("console colors, search, follow and progress", async ({ workbench: page }) => {
  await createWorkspaceFile(page, "explorer/colorful.py", COLORFUL);
  await openRecipe(page, "explorer/colorful.py");
  expect(await runAndWait(page)).toBe("succeeded");

  const output = page.getByTestId("console");
  await expect(output.getByText("red alert", { exact: true })).toHaveCSS("color", "rgb(205, 49, 49)");
  await expect(output.getByText("then plain", { exact: true })).not.toHaveCSS("color", "rgb(205, 49, 49)");
  await expect(output.getByText("bold green", { exact: true })).toHaveCSS("font-weight", "700");
  await expect(output).not.toContainText("\x1b");
  // The carriage return redrew its line.
  await expect(output).toContainText("progress 100%");
  await expect(output).not.toContainText("progress 10%");

  const progress = page.getByTestId("progress");
  await expect(progress.locator('[data-stage="prepare"]')).toHaveAttribute("data-state", "done");
  await expect(progress.locator('[data-stage="work"]')).toContainText("300/300");
  await expect(progress.locator('[data-stage="never reached"]')).toHaveAttribute("data-state", "waiting");

  // Follow keeps the newest line in view; scrolling up turns it off, ticking it scrolls back.
  const follow = page.getByTestId("console-follow");
  await expect(follow).toBeChecked();
  const atBottom = () => output.evaluate((element) => element.scrollHeight - element.scrollTop - element.clientHeight < 8);
  await expect.poll(atBottom).toBe(true);
  await output.evaluate((element) => {
    element.scrollTop = 0;
  });
  await expect(follow).not.toBeChecked();
  await follow.check();
  await expect.poll(atBottom).toBe(true);

  await page.getByTestId("console-search").fill("NEEDLE");
  await expect(page.getByTestId("console-matches")).toHaveText("1 matching line");
  await expect(output.locator(".console-line")).toHaveCount(1);
  await expect(output.locator("mark")).toHaveText("needle");
  await screenshot(page, "console-search");
  await page.getByTestId("console-search").fill("");
  await expect(output).toContainText("line 299");
});
