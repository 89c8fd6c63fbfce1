import { describe, expect, test } from "vitest";

import { api, API_METHODS, ServerEvent, toValidationIssues } from "../src/common/index.js";
import { openPlane } from "./helpers.js";

function issuesOf(method: keyof typeof api, params: unknown) {
  const parsed = api[method].params.safeParse(params);
  expect(parsed.success).toBe(false);
  return parsed.success ? [] : toValidationIssues(parsed.error);
}

describe("contract", () => {
  test("routes are unique", () => {
    const routes = API_METHODS.map((method) => `${api[method].http.verb} ${api[method].http.path}`);
    expect(new Set(routes).size).toBe(routes.length);
  });

  test("route params exist in the params schema", () => {
    for (const method of API_METHODS) {
      const names = api[method].http.path
        .split("/")
        .filter((segment) => segment.startsWith(":"))
        .map((segment) => segment.slice(1));
      const keys = Object.keys((api[method].params as unknown as { shape: Record<string, unknown> }).shape);
      for (const name of names) expect(keys, `${method} has :${name} in its route`).toContain(name);
    }
  });

  test("bad defaults are rejected with paths", () => {
    const issues = issuesOf("models.setDefaults", { key: "m", kv_cache_len: 0, tp: 1.5 });
    expect(issues.map((issue) => issue.path)).toEqual([["kv_cache_len"], ["tp"]]);
    expect(issues[0]!.message).toMatch(/>0|greater than 0/i);
  });

  test("empty defaults patch is rejected", () => {
    const issues = issuesOf("models.setDefaults", { key: "m" });
    expect(issues).toEqual([{ path: [], message: "set at least one of kv_cache_len, tokens_to_generate, tp" }]);
  });

  test("import rejects a bad key and a missing folder", () => {
    const issues = issuesOf("models.import", { key: "Has Space" });
    const paths = issues.map((issue) => issue.path.join("."));
    expect(paths).toContain("dir");
    expect(paths).toContain("key");
    expect(issues.find((issue) => issue.path[0] === "key")!.message).toMatch(/lower-case letters/);
  });

  test("run start needs a recipe and an object config", () => {
    const issues = issuesOf("runs.start", { config: [1, 2] });
    expect(issues.map((issue) => issue.path)).toEqual([["recipe_path"], ["config"]]);
  });

  test("register validates nested fields", () => {
    const issues = issuesOf("internal.models.register", { key: "k", path: "/x", kind: "weird", optim_step: -1 });
    expect(issues.map((issue) => issue.path)).toEqual([["kind"], ["optim_step"]]);
  });

  test("query numbers are coerced", () => {
    const parsed = api["runs.events"].params.parse({ id: "r", after_seq: "41", limit: "5" });
    expect(parsed).toEqual({ id: "r", after_seq: 41, limit: 5 });
  });

  test("events parse", () => {
    const output = ServerEvent.parse({ type: "run.output", run_id: "r", seq: 1, time: 2, stream: "stdout", text: "hi" });
    expect(output.type).toBe("run.output");
    expect(ServerEvent.safeParse({ type: "run.output", run_id: "r" }).success).toBe(false);
  });

  test("dispatcher returns every issue", async () => {
    const plane = openPlane();
    try {
      const outcome = await plane.dispatcher.call("models.setDefaults", { key: "m", kv_cache_len: -5, tokens_to_generate: "many" });
      expect(outcome.ok).toBe(false);
      if (outcome.ok) return;
      expect(outcome.error.code).toBe("invalid_request");
      expect(outcome.error.issues?.map((issue) => issue.path)).toEqual([["kv_cache_len"], ["tokens_to_generate"]]);
      expect(outcome.error.message).toMatch(/^invalid params for models\.setDefaults: kv_cache_len: .*; tokens_to_generate: /);

      const unknown = await plane.dispatcher.call("models.explode", {});
      expect(unknown).toEqual({ ok: false, error: { code: "not_found", message: 'unknown API method "models.explode"' } });

      const missing = await plane.dispatcher.call("models.get", { key: "ghost" });
      expect(missing.ok).toBe(false);
      if (!missing.ok) {
        expect(missing.error.code).toBe("not_found");
        expect(missing.error.known_keys).toEqual([]);
      }
    } finally {
      plane.db.close();
    }
  });
});
