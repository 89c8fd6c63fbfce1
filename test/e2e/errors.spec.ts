// Errors in a recipe reach the person as file:line links that open the editor at that line.
import { createWorkspaceFile, expect, openRecipe, runAndWait, screenshot, test } from "./fixtures";

const RAISES = `from adaptive_harmony.runtime import RecipeContext, recipe_main


@recipe_main
async def main(ctx: RecipeContext):
    print("about to fail")
    raise ValueError("the answer is not 42")
`;

const SYNTAX_ERROR = `from adaptive_harmony.runtime import RecipeContext, recipe_main


@recipe_main
async def main(ctx: RecipeContext)
    print("missing colon above")
`;

test("runtime error links to its line", async ({ workbench: page }) => {
  await createWorkspaceFile(page, "errors/raises.py", RAISES);
  await openRecipe(page, "errors/raises.py");

  expect(await runAndWait(page)).toBe("failed");
  const error = page.getByTestId("run-error");
  await expect(error).toContainText("the answer is not 42");
  const link = error.getByTestId("error-location");
  await expect(link).toHaveAttribute("data-line", "7");

  // Move the cursor away, then follow the link back to the raising line.
  await page.locator(".monaco-editor .view-line").first().click();
  await expect(page.getByTestId("editor")).toHaveAttribute("data-cursor-line", "1");
  await link.click();
  await expect(page.getByTestId("editor")).toHaveAttribute("data-cursor-line", "7");
  await expect(page.getByTestId("editor")).toHaveAttribute("data-path", "errors/raises.py");
  await expect(page.getByTestId("console")).toContainText("about to fail");
  await screenshot(page, "error-line");
});

test("syntax error is shown before running", async ({ workbench: page }) => {
  await createWorkspaceFile(page, "errors/syntax.py", SYNTAX_ERROR);
  await openRecipe(page, "errors/syntax.py");

  // The schema request loads the recipe, so the error shows up as soon as it is opened.
  const error = page.getByTestId("schema-error");
  await expect(error).toBeVisible({ timeout: 60_000 });
  const link = error.getByTestId("error-location").first();
  await expect(link).toHaveAttribute("data-line", "5");
  await link.click();
  await expect(page.getByTestId("editor")).toHaveAttribute("data-cursor-line", "5");
});
