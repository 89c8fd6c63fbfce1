import fs from "node:fs";
import path from "node:path";

import { afterEach, beforeEach, describe, expect, test } from "vitest";

import type { ControlPlane } from "../src/node/control-plane.js";
import { ApiError } from "../src/node/errors.js";
import { openPlane, tempDir } from "./helpers.js";

let plane: ControlPlane;
let dir: string;

beforeEach(() => {
  plane = openPlane();
  dir = tempDir("datasets");
});

afterEach(() => {
  plane.db.close();
});

describe("datasets", () => {
  test("jsonl rows are counted", () => {
    const file = path.join(dir, "chat.jsonl");
    fs.writeFileSync(file, '{"q": "a"}\n{"q": "b"}\n\n{"q": "c"}\n');
    const record = plane.datasets.importFile(file, "chat");
    expect(record).toMatchObject({ key: "chat", format: "jsonl", rows: 3, path: file });
    expect(plane.datasets.store.list().map((dataset) => dataset.key)).toEqual(["chat"]);
  });

  test("csv and json rows are counted", () => {
    fs.writeFileSync(path.join(dir, "table.csv"), "q,a\n1,2\n3,4\n");
    fs.writeFileSync(path.join(dir, "rows.json"), "[1, 2, 3, 4]");
    expect(plane.datasets.importFile(path.join(dir, "table.csv"), "table").rows).toBe(2);
    expect(plane.datasets.importFile(path.join(dir, "rows.json"), "rows").rows).toBe(4);
  });

  test("bad line names the line number", () => {
    const file = path.join(dir, "broken.jsonl");
    fs.writeFileSync(file, '{"q": "a"}\n{"q": \n');
    expect(() => plane.datasets.importFile(file, "broken")).toThrow(`${file} has 1 problem in 3 lines`);
    expect(plane.datasets.store.list()).toEqual([]);
  });

  test("every bad line is listed by number", () => {
    const file = path.join(dir, "chat.jsonl");
    const lines = [
      '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}',
      "not json",
      "",
      "[1, 2]",
      '{"messages": [{"role": "bot", "content": 3}]}',
      '{"messages": "hi"}',
    ];
    fs.writeFileSync(file, lines.join("\n"));
    let caught: unknown;
    try {
      plane.datasets.importFile(file, "chat");
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ApiError);
    const body = (caught as ApiError).toBody();
    expect(body.code).toBe("unprocessable");
    expect(body.message).toContain("5 problems in 6 lines");
    expect(body.reasons).toEqual([
      expect.stringMatching(/^line 2: not valid JSON/),
      "line 4: expected a JSON object, got an array",
      'line 5: messages[0].role must be one of system, user, assistant, tool, got "bot"',
      "line 5: messages[0].content must be a string, got a number",
      'line 6: "messages" must be an array of {role, content}, got a string',
    ]);
    expect(plane.datasets.store.list()).toEqual([]);
  });

  test("long problem lists are cut with a count", () => {
    const file = path.join(dir, "many.jsonl");
    fs.writeFileSync(file, "x\n".repeat(60));
    expect.assertions(3);
    try {
      plane.datasets.importFile(file, "many");
    } catch (error) {
      const reasons = (error as ApiError).toBody().reasons ?? [];
      expect(reasons).toHaveLength(51);
      expect(reasons[49]).toMatch(/^line 50: /);
      expect(reasons[50]).toBe("… and 10 more problems");
    }
  });

  test("unsupported file and taken key", () => {
    fs.writeFileSync(path.join(dir, "data.parquet"), "");
    expect(() => plane.datasets.importFile(path.join(dir, "data.parquet"), "pq")).toThrow(/use \.jsonl, \.json or \.csv/);
    fs.writeFileSync(path.join(dir, "a.jsonl"), "{}\n");
    plane.datasets.importFile(path.join(dir, "a.jsonl"), "a");
    expect(() => plane.datasets.importFile(path.join(dir, "a.jsonl"), "a")).toThrow('dataset key "a" is already registered');
  });
});
