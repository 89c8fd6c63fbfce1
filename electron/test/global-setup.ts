// Builds the control plane once before the tests (the CLI tests run bin/galley.js, which
// loads dist/node), and gives the test files one temporary folder that is removed at the end.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";

export default function setup(): () => void {
  const electronDir = path.resolve(__dirname, "..");
  const tsc = createRequire(__filename).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-b", "src/node"], { cwd: electronDir, stdio: "inherit" });

  // Test workers inherit this variable; helpers.tempDir() creates folders inside it.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "galley-tests-"));
  process.env.GALLEY_TEST_ROOT = root;
  return () => fs.rmSync(root, { recursive: true, force: true });
}
