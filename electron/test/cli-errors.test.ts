// Errors of the CLI. Operating system errors a person can fix are reported as one sentence,
// without a stack. Rejected files list their problems, and an unreachable server exits 3 with
// a hint. Cancelling a run that no process here runs names the run's status.
import fs from "node:fs";
import path from "node:path";

import { afterEach, describe, expect, test, vi } from "vitest";

import { reportError } from "../src/node/cli/context.js";
import { openDatabase } from "../src/node/db/database.js";
import { ApiError } from "../src/node/errors.js";
import { RunStore } from "../src/node/registry/run-store.js";
import { closedPort, runCli, tempDir } from "./helpers.js";

function errno(code: string, fields: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`${code} failure`), { code, ...fields });
}

function reported(error: unknown): { code: number; text: string } {
  const write = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  const code = reportError(error);
  const text = write.mock.calls.map((call) => String(call[0])).join("");
  return { code, text };
}

describe("reportError", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  test("port in use names the port and the fix", () => {
    const { code, text } = reported(errno("EADDRINUSE", { port: 41761, address: "127.0.0.1" }));
    expect(code).toBe(1);
    expect(text).toBe("error: port 41761 on 127.0.0.1 is already in use; pick another with --port, or --port 0 for a free one\n");
  });

  test("file in place of a folder names the path", () => {
    const { text } = reported(errno("ENOTDIR", { path: "/etc/passwd/logs" }));
    expect(text).toMatch(/^error: \/etc\/passwd\/logs cannot be used: a part of it is a file, not a folder/);
    expect(text).not.toContain("    at ");
  });

  test("unknown errors keep their stack", () => {
    const { text } = reported(new RangeError("boom"));
    expect(text).toMatch(/^error: unexpected failure: RangeError: boom\n\s+at /);
  });
});

describe("reportError reasons", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  test("every reason is printed", () => {
    const reasons = ["bad.jsonl:1: not valid JSON", "bad.jsonl:3: expected a JSON object"];
    const { code, text } = reported(new ApiError("unprocessable", "bad.jsonl has 2 problems in 4 lines", { reasons }));
    expect(code).toBe(1);
    expect(text).toBe("error: bad.jsonl has 2 problems in 4 lines\n  bad.jsonl:1: not valid JSON\n  bad.jsonl:3: expected a JSON object\n");
  });

  test("long lists stop at 20 with the rest counted", () => {
    const reasons = Array.from({ length: 50 }, (_, index) => `f.jsonl:${index + 1}: problem`);
    reasons.push("… and 7 more problems");
    const { text } = reported(new ApiError("unprocessable", "f.jsonl has 57 problems in 57 lines", { reasons }));
    const lines = text.trimEnd().split("\n");
    expect(lines).toHaveLength(22);
    expect(lines[20]).toBe("  f.jsonl:20: problem");
    expect(lines[21]).toBe("  … and 37 more");
  });

  test("single reason in the message is not repeated", () => {
    const reason = "f.jsonl:1: the file has no rows";
    const { text } = reported(new ApiError("unprocessable", `${reason} (nothing was registered)`, { reasons: [reason] }));
    expect(text).toBe(`error: ${reason} (nothing was registered)\n`);
  });
});

describe("datasets import of a bad file", () => {
  const home = tempDir("cli-dataset-home");
  const files = tempDir("cli-dataset-files");

  test("prints each line's problem", () => {
    const file = path.join(files, "bad.jsonl");
    fs.writeFileSync(file, '{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n{"messages": [{"role": "robot", "content": "x"}]}\n{"messages": []}\n');
    const result = runCli(["datasets", "import", file, "--key", "x"], { GALLEY_HOME: home });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`error: ${file} has 3 problems in 4 lines`);
    expect(result.stderr).toContain(`  ${file}:2: not valid JSON`);
    expect(result.stderr).toContain(`  ${file}:3: messages[0].role must be one of system, user, assistant, tool, got "robot"`);
    expect(result.stderr).toContain(`  ${file}:4: "messages" is empty`);
  });

  test("final newline is not counted as a line", () => {
    const file = path.join(files, "arr.jsonl");
    fs.writeFileSync(file, "[1, 2]\n");
    const result = runCli(["datasets", "import", file, "--key", "arr"], { GALLEY_HOME: home });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`error: ${file} has 1 problem in 1 line;`);
  });
});

describe("GALLEY_URL without a server", () => {
  const home = tempDir("cli-url-home");
  const recipe = path.join(tempDir("cli-url-recipes"), "noop.py");
  fs.writeFileSync(recipe, "from galley.runtime import recipe_main\n\n\n@recipe_main\nasync def main(ctx):\n    pass\n");

  test("run exits 3 with the hint", async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const result = runCli(["run", recipe], { GALLEY_HOME: home, GALLEY_URL: url, GALLEY_TOKEN: "t" });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(`opening the WebSocket of GALLEY_URL at ${url} failed: connect ECONNREFUSED`);
    expect(result.stderr).toContain("check GALLEY_URL and that `galley serve` is running");
  });

  test("runs list exits 3 with the hint", async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const result = runCli(["runs", "list"], { GALLEY_HOME: home, GALLEY_URL: url, GALLEY_TOKEN: "t" });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(`of GALLEY_URL at ${url} failed: connect ECONNREFUSED`);
    expect(result.stderr).toContain("check GALLEY_URL and that `galley serve` is running");
  });

  test("blocked port is explained", () => {
    const result = runCli(["runs", "list"], { GALLEY_HOME: home, GALLEY_URL: "http://127.0.0.1:6000", GALLEY_TOKEN: "t" });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("the port is blocked by Node's HTTP client");
    expect(result.stderr).toContain("restart `galley serve` with another --port");
    expect(result.stderr).not.toContain("bad port");
  });

  test("run help lists the exit codes", () => {
    const result = runCli(["run", "--help"], { GALLEY_HOME: home });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^ {2}3 {4}the Galley server \(GALLEY_URL or serve\.json\) could not be reached/m);
    expect(result.stdout).toContain("130  cancelled by Ctrl-C (SIGINT); 143 by SIGTERM; 129 by SIGHUP");
  });
});

describe("runs cancel without a server", () => {
  const home = tempDir("cli-cancel-home");
  const cli = (...args: string[]) => runCli(args, { GALLEY_HOME: home });

  /** Records a run in the home's registry, as a control plane in this process (alive) would. */
  function recordRun(id: string, end: "succeeded" | null): void {
    fs.mkdirSync(path.join(home, "runs"), { recursive: true });
    const db = openDatabase(path.join(home, "galley.db"));
    try {
      const store = new RunStore(db, (runId) => path.join(home, "runs", runId));
      store.create({ id, recipe_path: "/tmp/r.py", recipe_source: "", recipe_hash: "h", config: {}, dry_run: false });
      store.markRunning(id);
      if (end) store.finish(id, { status: end, exit_code: 0, error: null });
    } finally {
      db.close();
    }
  }

  test("ended run names its status", () => {
    cli("runs", "list");
    recordRun("20260101-000000-aaaaaa", "succeeded");
    const result = cli("runs", "cancel", "20260101-000000-aaaaaa");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("error: run 20260101-000000-aaaaaa has already ended with status succeeded");
  });

  test("run of another process is not cancelled", () => {
    recordRun("20260101-000000-bbbbbb", null);
    const result = cli("runs", "cancel", "20260101-000000-bbbbbb");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("error: run 20260101-000000-bbbbbb is running in another galley process");
    expect(cli("runs", "list").stdout).toMatch(/20260101-000000-bbbbbb\s+running/);
  });

  test("unknown run is not found", () => {
    const result = cli("runs", "cancel", "no-such-run");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("no-such-run");
  });
});
