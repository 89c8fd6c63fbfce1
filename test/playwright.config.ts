// End-to-end tests: Debian's Chromium drives the real workbench served by a real
// `galley serve` (control plane, engine and recipe runner), started by global-setup.ts.
import { defineConfig } from "@playwright/test";

const chromium = process.env.GALLEY_CHROMIUM ?? "/usr/bin/chromium";

export default defineConfig({
  testDir: "./e2e",
  outputDir: "../test-results",
  globalSetup: "./global-setup.ts",
  // The specs share one server and its engine, whose spawns and runs they observe, so they run
  // one at a time.
  workers: 1,
  fullyParallel: false,
  // Runs start Python processes and load models on a CPU; the first spawn imports torch.
  timeout: 240_000,
  expect: { timeout: 30_000 },
  reporter: [["list"], ["html", { outputFolder: "../playwright-report", open: "never" }]],
  use: {
    headless: true,
    viewport: { width: 1440, height: 900 },
    screenshot: "only-on-failure",
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: chromium,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
      ],
    },
  },
  projects: [{ name: "chromium", use: { browserName: "chromium" } }],
});
