// Shared steps of the specs: open the workbench of the server that global-setup started,
// open a recipe, run it, and keep a screenshot of a screen.
import path from "node:path";

import { expect, type Page, test as base } from "@playwright/test";

export const ARTIFACTS = path.resolve(__dirname, "..", "artifacts");

// A run starts the recipe runner and, on the first spawn of a model, loads it in a worker.
export const RUN_TIMEOUT_MS = 180_000;

export function serverUrl(): string {
  const url = process.env.GALLEY_E2E_URL;
  if (!url) throw new Error("GALLEY_E2E_URL is not set; run the specs through test/playwright.config.ts");
  return url;
}

/** Opens the workbench page of a server and waits until it is connected. */
export async function openWorkbench(page: Page, url: string): Promise<void> {
  page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
  await page.goto(url);
  await expect(page.getByTestId("connection-state")).toHaveText("connected");
}

export const test = base.extend<{ workbench: Page }>({
  workbench: async ({ page }, use) => {
    await openWorkbench(page, serverUrl());
    await use(page);
  },
});

/** Returns the absolute path of a file in the workspace of the server global-setup started. */
export function workspaceFile(relative: string): string {
  const home = process.env.GALLEY_E2E_HOME;
  if (!home) throw new Error("GALLEY_E2E_HOME is not set; run the specs through test/playwright.config.ts");
  return path.join(home, "workspace", relative);
}

export { expect };

export async function openRecipe(page: Page, recipePath: string): Promise<void> {
  await page.getByTestId("nav-workbench").click();
  await page.locator(`[data-testid="workspace-file"][data-path="${recipePath}"]`).click();
  await expect(page.locator(`[data-testid="editor-tab"][data-path="${recipePath}"]`)).toBeVisible();
  // Monaco has rendered the file once its view lines exist.
  await expect(page.locator(".monaco-editor .view-lines")).toBeVisible();
}

/** Clicks Run and waits for the run to reach a terminal status; returns that status. */
export async function runAndWait(page: Page): Promise<string> {
  // The badge still shows the previous run's status until the new run is known, so wait
  // for the panel to switch to a new run id first.
  const panel = page.getByTestId("run-panel");
  const previous = (await panel.getAttribute("data-run-id")) ?? "";
  await page.getByTestId("run-button").click();
  await expect(panel).not.toHaveAttribute("data-run-id", new RegExp(`^(${previous})?$`), { timeout: RUN_TIMEOUT_MS });
  const status = page.getByTestId("run-status");
  await expect(status).toHaveAttribute("data-status", /^(succeeded|failed|cancelled)$/, { timeout: RUN_TIMEOUT_MS });
  return (await status.getAttribute("data-status")) ?? "";
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Creates a workspace file through the HTTP API, as a test precondition. */
export async function createWorkspaceFile(
  page: Page,
  path: string,
  content: string,
  server = { url: serverUrl(), token: process.env.GALLEY_E2E_TOKEN ?? "" },
): Promise<void> {
  const url = new URL("/api/workspace/file", server.url);
  const response = await page.request.post(url.toString(), {
    headers: { Authorization: `Bearer ${server.token}` },
    data: { path, content },
  });
  expect(response.status(), await response.text()).toBe(201);
}
