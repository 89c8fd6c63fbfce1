// The workbench's explorer (every workspace file, rename, delete, files changed on disk) and
// console (ANSI colors, search, follow), and the run's stage progress bars.
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
  return page.locator(`[data-testid="workspace-file"][data-path="${path}"]`);
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

test("explorer lists and opens non-recipe files", async ({ workbench: page }) => {
  const dir = workspaceFile("data-files");
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(workspaceFile("data-files/config.json"), '{"lr": 0.001}\n');
  fs.writeFileSync(workspaceFile("data-files/train.jsonl"), '{"prompt": "a"}\n{"prompt": "b"}\n');
  fs.writeFileSync(workspaceFile("data-files/README.md"), "# Notes\n");
  fs.writeFileSync(workspaceFile("data-files/notes.txt"), "plain text\n");
  fs.writeFileSync(workspaceFile("data-files/adapter.safetensors"), Buffer.from([0x08, 0x00, 0x00, 0x00, 0x7b, 0x7d]));
  // Latin-1 bytes and a NUL: not UTF-8, under an extension that does not say binary.
  fs.writeFileSync(workspaceFile("data-files/export.dat"), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x00, 0x0a]));
  fs.writeFileSync(workspaceFile("data-files/huge.txt"), "x".repeat(5 * 1024 * 1024 + 1));
  await page.getByTestId("nav-workbench").click();

  const languages: Record<string, string> = {
    "data-files/config.json": "json",
    "data-files/train.jsonl": "jsonl",
    "data-files/README.md": "markdown",
    "data-files/notes.txt": "plaintext",
  };
  for (const [path, language] of Object.entries(languages)) {
    await expect(item(page, path)).toHaveAttribute("data-language", language);
    await expect(item(page, path)).toBeEnabled();
  }
  await expect(item(page, "data-files/adapter.safetensors")).toBeDisabled();
  await expect(item(page, "data-files/adapter.safetensors")).toContainText("binary");
  await expect(item(page, "data-files/huge.txt")).toBeDisabled();
  await expect(item(page, "data-files/huge.txt")).toHaveAttribute("title", /5\.0 MiB; the editor opens files up to 5\.0 MiB/);

  // A JSON file opens in Monaco's JSON mode, which marks a syntax error, and saves like a recipe.
  await openRecipe(page, "data-files/config.json");
  await expect(page.getByTestId("run-panel-idle")).toContainText("data-files/config.json is not a recipe");
  await page.locator(".monaco-editor .view-line").first().click();
  await page.keyboard.press("End");
  await page.keyboard.type(",");
  await expect(page.locator(".monaco-editor .squiggly-error").first()).toBeVisible();
  await page.getByTestId("save-button").click();
  await expect(page.getByTestId("save-button")).toBeDisabled();
  expect(fs.readFileSync(workspaceFile("data-files/config.json"), "utf8")).toBe('{"lr": 0.001},\n');

  // Text that is not UTF-8 opens read-only, so saving cannot rewrite its bytes.
  await openRecipe(page, "data-files/export.dat");
  await expect(page.getByTestId("read-only-banner")).toContainText("data-files/export.dat is read-only");
  await page.locator(".monaco-editor .view-line").first().click();
  await page.keyboard.type("edit");
  await expect(page.getByTestId("save-button")).toBeDisabled();
  // Switching to the read-only tab left the JSON tab's saved text alone.
  await expect(page.locator('[data-testid="editor-tab"][data-path="data-files/config.json"] .dirty')).toHaveCount(0);
  await screenshot(page, "explorer-data-files");

  // Renaming without an extension keeps the file's own.
  await row(page, "data-files/notes.txt").hover();
  await row(page, "data-files/notes.txt").getByTestId("rename-file").click();
  await page.getByTestId("rename-input").fill("data-files/todo");
  await page.getByTestId("rename-input").press("Enter");
  await expect(item(page, "data-files/todo.txt")).toBeVisible();
  expect(fs.existsSync(workspaceFile("data-files/todo.txt"))).toBe(true);

  // A new file with an extension starts empty; only a .py file gets the recipe template.
  await page.getByTestId("new-recipe").click();
  await page.getByTestId("new-recipe-name").fill("data-files/eval.yaml");
  await page.getByTestId("new-recipe-name").press("Enter");
  await expect(item(page, "data-files/eval.yaml")).toHaveAttribute("data-language", "yaml");
  expect(fs.readFileSync(workspaceFile("data-files/eval.yaml"), "utf8")).toBe("");
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
