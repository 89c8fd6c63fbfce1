// The page's access token: taken from the URL, hidden from the address bar, and rejected
// with a clear message when wrong or missing.
import { expect, serverUrl, test } from "./fixtures";

test("token leaves the address bar", async ({ workbench: page }) => {
  expect(new URL(page.url()).searchParams.has("token")).toBe(false);
  // A reload keeps working with the token kept in sessionStorage.
  await page.reload();
  await expect(page.getByTestId("connection-state")).toHaveText("connected");
});

test("page without a token explains how to open it", async ({ page }) => {
  const url = new URL(serverUrl());
  url.search = "";
  await page.goto(url.toString());
  await expect(page.getByTestId("start-error")).toContainText("Open the URL that `galley serve` printed");
});

test("wrong token is reported, not retried forever", async ({ page }) => {
  const url = new URL(serverUrl());
  url.searchParams.set("token", "not-the-token");
  await page.goto(url.toString());
  await expect(page.getByTestId("connection-state")).toHaveText("invalid token");
});
