import { createWorkspaceFile, expect, openRecipe, runAndWait, test } from "./fixtures";
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


test("debug layout", async ({ workbench: page }) => {
  await createWorkspaceFile(page, "dbg/colorful.py", COLORFUL);
  await openRecipe(page, "dbg/colorful.py");
  expect(await runAndWait(page)).toBe("succeeded");
  const boxes = await page.evaluate(() => {
    const out: Record<string, unknown> = {};
    for (const sel of [".workbench", ".workbench-center", ".strip-slot", ".editor-pane", ".console-pane", ".console-box", ".console", ".explorer", ".file-row", ".file"]) {
      const el = document.querySelector(sel) as HTMLElement | null;
      out[sel] = el ? { ...el.getBoundingClientRect().toJSON(), sh: el.scrollHeight } : null;
    }
    return out;
  });
  console.log(JSON.stringify(boxes, null, 1));
});
