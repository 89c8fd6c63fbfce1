import type { Run } from "@galley/common";
import { describe, expect, it } from "vitest";

import { newerRun } from "../src/stores/runs";

function run(status: Run["status"]): Run {
  return { id: "r1", recipe_path: "recipes/raises.py", status } as Run;
}

describe("run status ordering", () => {
  it("keeps a running status when the queued start reply arrives late", () => {
    expect(newerRun(run("running"), run("queued")).status).toBe("running");
  });

  it("keeps a finished status over an older running or queued one", () => {
    for (const done of ["succeeded", "failed", "cancelled"] as const) {
      expect(newerRun(run(done), run("running")).status).toBe(done);
      expect(newerRun(run(done), run("queued")).status).toBe(done);
    }
  });

  it("takes a status that moves forward, or an unknown run", () => {
    expect(newerRun(run("queued"), run("running")).status).toBe("running");
    expect(newerRun(run("running"), run("cancelled")).status).toBe("cancelled");
    expect(newerRun(undefined, run("queued")).status).toBe("queued");
  });
});
