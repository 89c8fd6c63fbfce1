import fs from "node:fs";
import path from "node:path";

import { afterEach, beforeEach, describe, expect, test } from "vitest";

import type { ControlPlane } from "../src/node/control-plane.js";
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
    expect(() => plane.datasets.importFile(file, "broken")).toThrow(`${file}:2 is not valid JSON`);
    expect(plane.datasets.store.list()).toEqual([]);
  });

  test("unsupported file and taken key", () => {
    fs.writeFileSync(path.join(dir, "data.parquet"), "");
    expect(() => plane.datasets.importFile(path.join(dir, "data.parquet"), "pq")).toThrow(/use \.jsonl, \.json or \.csv/);
    fs.writeFileSync(path.join(dir, "a.jsonl"), "{}\n");
    plane.datasets.importFile(path.join(dir, "a.jsonl"), "a");
    expect(() => plane.datasets.importFile(path.join(dir, "a.jsonl"), "a")).toThrow('dataset key "a" is already registered');
  });
});
