import fs from "node:fs";
import path from "node:path";

import { afterEach, beforeEach, describe, expect, test } from "vitest";

import type { ControlPlane } from "../src/node/control-plane.js";
import { ApiError } from "../src/node/errors.js";
import { openPlane, tempDir } from "./helpers.js";

let plane: ControlPlane;
let dir: string;

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Imports the file and returns the rejection's body; fails the test if the import succeeds. */
function rejectionOf(file: string, key: string): ReturnType<ApiError["toBody"]> {
  try {
    plane.datasets.importFile(file, key);
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    return (error as ApiError).toBody();
  }
  throw new Error(`importing ${file} succeeded, but it should have been rejected`);
}

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
    fs.writeFileSync(path.join(dir, "rows.json"), '[{"q": 1}, {"q": 2}, {"q": 3}, {"q": 4}]');
    expect(plane.datasets.importFile(path.join(dir, "table.csv"), "table").rows).toBe(2);
    expect(plane.datasets.importFile(path.join(dir, "rows.json"), "rows").rows).toBe(4);
  });

  test("csv quoted fields span lines and commas", () => {
    const file = path.join(dir, "quoted.csv");
    const text =
      'prompt,answer\r\n' +
      '"Hello, world","He said ""hi"""\r\n' +
      '"two\nlines",plain\n' +
      '\n' +
      '"",""\n' +
      "last,row";
    fs.writeFileSync(file, text);
    expect(plane.datasets.importFile(file, "quoted").rows).toBe(4);
  });

  test("csv field count mismatch names the line", () => {
    const file = path.join(dir, "ragged.csv");
    fs.writeFileSync(file, 'a,b\n1,2,3\n"x\ny",2\n4\n');
    const body = rejectionOf(file, "ragged");
    expect(body.message).toContain(`${file} has 2 problems in 3 data records`);
    expect(body.reasons).toEqual([
      `${file}:2: the row has 3 fields, but the header has 2 ("a", "b"); put a field that contains commas in double quotes ("1,5")`,
      `${file}:5: the row has 1 field, but the header has 2 ("a", "b"), so it has no value for "b"; add the missing fields, or end the row with one comma per missing field to leave them empty`,
    ]);
    expect(plane.datasets.store.list()).toEqual([]);
  });

  test("csv problems count every data record", () => {
    const file = path.join(dir, "mixed.csv");
    fs.writeFileSync(file, 'q,a\n1,2,3\n4\n5,6\n"a"b,c\n');
    const body = rejectionOf(file, "mixed");
    expect(body.message).toContain(`${file} has 3 problems in 4 data records`);
    expect(body.reasons).toEqual([
      `${file}:2: the row has 3 fields, but the header has 2 ("q", "a"); put a field that contains commas in double quotes ("1,5")`,
      `${file}:3: the row has 1 field, but the header has 2 ("q", "a"), so it has no value for "a"; add the missing fields, or end the row with one comma per missing field to leave them empty`,
      `${file}:5: text "b" follows the closing quote of a quoted field; put a comma after the quote, or write a quote inside the field as ""`,
    ]);
  });

  test("csv short row names every missing column", () => {
    const file = path.join(dir, "short.csv");
    fs.writeFileSync(file, "q,a,source\n1,2,x\n3\n");
    const body = rejectionOf(file, "short");
    expect(body.reasons?.[0]).toContain('so it has no value for "a", "source";');
    expect(body.reasons?.[0]).not.toContain("double quotes");
  });

  test("csv unterminated quote counts as a record", () => {
    const file = path.join(dir, "open.csv");
    fs.writeFileSync(file, 'q,a\n1,2\n"open,3\n4,5\n');
    expect(rejectionOf(file, "open").message).toContain(`${file} has 1 problem in 2 data records`);
  });

  test.each([
    ["duplicate.csv", "q,q\n1,2\n", 'column 2 of the header is named "q", like column 1; give every column a distinct name'],
    ["unnamed.csv", "q,\n1,2\n", "column 2 of the header has no name; give every column a name"],
    ["blank.csv", "q, ,a\n1,2,3\n", "column 2 of the header has no name; give every column a name"],
  ])("csv header %s is rejected", (name, text, reason) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    const body = rejectionOf(file, "header");
    expect(body.reasons).toEqual([`${file}:1: ${reason}`]);
    expect(plane.datasets.store.list()).toEqual([]);
  });

  test("csv unterminated quote is rejected", () => {
    const file = path.join(dir, "unterminated.csv");
    fs.writeFileSync(file, 'a,b\n1,2,3\n"unterminated\n');
    const body = rejectionOf(file, "unterminated");
    expect(body.reasons).toEqual([
      `${file}:2: the row has 3 fields, but the header has 2 ("a", "b"); put a field that contains commas in double quotes ("1,5")`,
      `${file}:3: a quoted field starts here and has no closing quote ("); close it, and write a quote inside a field as ""`,
    ]);
    expect(plane.datasets.store.list()).toEqual([]);
  });

  test("csv text after a closing quote is rejected", () => {
    const file = path.join(dir, "stray.csv");
    fs.writeFileSync(file, 'a,b\n"x"y,2\n3,4\n');
    const body = rejectionOf(file, "stray");
    expect(body.reasons).toEqual([
      `${file}:2: text "y" follows the closing quote of a quoted field; put a comma after the quote, or write a quote inside the field as ""`,
    ]);
  });

  test("bad line names the line number", () => {
    const file = path.join(dir, "broken.jsonl");
    fs.writeFileSync(file, '{"q": "a"}\n{"q": \n');
    expect(() => plane.datasets.importFile(file, "broken")).toThrow(`${file} has 1 problem in 2 lines`);
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
      '{"messages": [{"content": "no role"}, {"role": "user"}]}',
      '{"prompt": "no messages"}',
      '{"messages": []}',
    ];
    fs.writeFileSync(file, lines.join("\n"));
    const body = rejectionOf(file, "chat");
    expect(body.code).toBe("unprocessable");
    expect(body.message).toContain("9 problems in 9 lines");
    expect(body.reasons).toEqual([
      expect.stringMatching(new RegExp(`^${escape(file)}:2: not valid JSON \\(.*\\); write one JSON object per line`)),
      `${file}:4: expected a JSON object, got an array; write each row as one object such as {"messages": [...]}`,
      `${file}:5: messages[0].role must be one of system, user, assistant, tool, got "bot"`,
      `${file}:5: messages[0].content must be a string, got a number`,
      `${file}:6: "messages" must be an array of {"role", "content"} objects, got a string`,
      `${file}:7: messages[0] has no "role"; add one of system, user, assistant, tool`,
      `${file}:7: messages[1] has no "content"; add the message's text as a string`,
      `${file}:8: no "messages" field, but the first row has one; give every row of a chat dataset its messages`,
      `${file}:9: "messages" is empty; give the row at least one message`,
    ]);
    expect(plane.datasets.store.list()).toEqual([]);
  });

  test("empty files are rejected", () => {
    const cases: [string, string, string][] = [
      ["empty.jsonl", "", "1: the file has no rows; write one JSON object per line"],
      ["blank.jsonl", "\n\n  \n", "1: the file has no rows; write one JSON object per line"],
      ["empty.json", "[]", "1: the array has no rows; add at least one row object"],
      ["empty.csv", "", "1: the file is empty; write a header row and one row per example"],
      ["header.csv", "q,a\n", "1: the file has a header row but no data rows; add one row per example"],
    ];
    for (const [name, content, problem] of cases) {
      const file = path.join(dir, name);
      fs.writeFileSync(file, content);
      expect(rejectionOf(file, "empty").message, name).toContain(`${file}:${problem}`);
    }
    expect(plane.datasets.store.list()).toEqual([]);
  });

  test("wrong encoding names the line", () => {
    const latin1 = path.join(dir, "latin1.jsonl");
    // "café" in Latin-1 on line 2: 0xE9 starts no valid UTF-8 sequence there.
    fs.writeFileSync(latin1, Buffer.concat([Buffer.from('{"q": "a"}\n{"q": "caf'), Buffer.from([0xe9]), Buffer.from('"}\n')]));
    const body = rejectionOf(latin1, "latin1");
    expect(body.reasons).toEqual([`${latin1}:2: not valid UTF-8: byte 0xe9 at column 11; save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT)`]);

    const utf16 = path.join(dir, "utf16.jsonl");
    fs.writeFileSync(utf16, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"q": "a"}\n', "utf16le")]));
    expect(rejectionOf(utf16, "utf16").message).toContain(`${utf16}:1: the file is UTF-16 encoded`);
    expect(plane.datasets.store.list()).toEqual([]);
  });

  test("utf-8 byte order mark is accepted", () => {
    const file = path.join(dir, "bom.jsonl");
    fs.writeFileSync(file, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"q": "é"}\n')]));
    expect(plane.datasets.importFile(file, "bom").rows).toBe(1);
  });

  test("json rows name their line", () => {
    const file = path.join(dir, "rows.json");
    fs.writeFileSync(file, '[\n  {"messages": [{"role": "user", "content": "hi"}]},\n  {"messages": [{"role": "user"}]},\n  "text"\n]\n');
    expect(rejectionOf(file, "rows").reasons).toEqual([
      `${file}:3: row 1: messages[0] has no "content"; add the message's text as a string`,
      `${file}:4: row 2: expected a JSON object, got a string; write each row as one object such as {"messages": [...]}`,
    ]);

    const broken = path.join(dir, "broken.json");
    fs.writeFileSync(broken, '[\n  {"q": 1},\n  {"q": }\n]\n');
    expect(rejectionOf(broken, "broken").reasons?.[0]).toMatch(new RegExp(`^${escape(broken)}:3: not valid JSON`));
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
      expect(reasons[49]).toMatch(/many\.jsonl:50: not valid JSON/);
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
