// Operating system errors a person can fix are reported as one sentence, without a stack.
import { afterEach, describe, expect, test, vi } from "vitest";

import { reportError } from "../src/node/cli/context.js";

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
