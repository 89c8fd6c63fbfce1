// Checks a dataset file before it is registered and counts its rows. Every problem is
// reported as FILE:LINE: problem; fix, and all of them at once, so a person can fix the file
// in one pass.
import fs from "node:fs";

import { ApiError } from "../errors.js";
import { parseCsv } from "./csv.js";

const ROLES = ["system", "user", "assistant", "tool"];
// Enough to fix a file by hand; the message gives the total.
const MAX_LISTED_PROBLEMS = 50;

const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const CONVERT_TO_UTF8 = "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT)";

/** A problem at a line of the file, without the file name. */
interface LineProblem {
  line: number;
  text: string;
}

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** Returns the problems of one chat message; each names the message and gives the fix. */
function messageProblems(message: unknown, index: number): string[] {
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    return [`messages[${index}] must be an object with "role" and "content", got ${describeType(message)}`];
  }
  const { role, content } = message as { role?: unknown; content?: unknown };
  const problems: string[] = [];
  if (role === undefined) {
    problems.push(`messages[${index}] has no "role"; add one of ${ROLES.join(", ")}`);
  } else if (typeof role !== "string" || !ROLES.includes(role)) {
    problems.push(`messages[${index}].role must be one of ${ROLES.join(", ")}, got ${JSON.stringify(role)}`);
  }
  if (content === undefined) {
    problems.push(`messages[${index}] has no "content"; add the message's text as a string`);
  } else if (typeof content !== "string") {
    problems.push(`messages[${index}].content must be a string, got ${describeType(content)}`);
  }
  return problems;
}

/**
 * Returns the problems of one row, which must be a JSON object. A row with `messages` is in the
 * chat format that recipes read as StringThread turns, so each message needs a known role and
 * string content. `chat` is true when the first row had `messages`, so this one needs them too.
 */
export function rowProblems(row: unknown, chat = false): string[] {
  if (typeof row !== "object" || row === null || Array.isArray(row)) {
    return [`expected a JSON object, got ${describeType(row)}; write each row as one object such as {"messages": [...]}`];
  }
  if (!("messages" in row)) {
    return chat ? ['no "messages" field, but the first row has one; give every row of a chat dataset its messages'] : [];
  }
  const messages = (row as { messages: unknown }).messages;
  if (!Array.isArray(messages)) {
    return [`"messages" must be an array of {"role", "content"} objects, got ${describeType(messages)}`];
  }
  if (messages.length === 0) return ['"messages" is empty; give the row at least one message'];
  return messages.flatMap((message: unknown, index) => messageProblems(message, index));
}

function isChatRow(row: unknown): boolean {
  return typeof row === "object" && row !== null && !Array.isArray(row) && "messages" in row;
}

function reject(file: string, problems: LineProblem[], summary: string): never {
  const reasons = problems.slice(0, MAX_LISTED_PROBLEMS).map((problem) => `${file}:${problem.line}: ${problem.text}`);
  if (problems.length > reasons.length) reasons.push(`… and ${problems.length - reasons.length} more problems`);
  const plural = problems.length === 1 ? "problem" : "problems";
  throw new ApiError(
    "unprocessable",
    `${file} has ${problems.length} ${plural} in ${summary}; fix them and import again (nothing was registered)`,
    { reasons },
  );
}

/** Rejects the whole file for one problem; `line` is null when the problem has no known line. */
function rejectFile(file: string, line: number | null, text: string): never {
  const reason = line === null ? `${file}: ${text}` : `${file}:${line}: ${text}`;
  throw new ApiError("unprocessable", `${reason} (nothing was registered)`, { reasons: [reason] });
}

/** Decodes the file as UTF-8, rejecting other encodings with the line of the first bad byte. */
function readUtf8(file: string): string {
  let bytes = fs.readFileSync(file);
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    rejectFile(
      file,
      1,
      "the file is UTF-16 encoded (it starts with a UTF-16 byte order mark); save it as UTF-8 (e.g. iconv -f utf-16 -t utf-8 IN > OUT)",
    );
  }
  if (bytes.subarray(0, 3).equals(UTF8_BOM)) bytes = bytes.subarray(3);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const { line, column, byte } = firstInvalidUtf8(bytes);
    rejectFile(file, line, `not valid UTF-8: byte 0x${byte.toString(16).padStart(2, "0")} at column ${column}; ${CONVERT_TO_UTF8}`);
  }
}

/** Returns the offset of the first byte that is not part of a valid UTF-8 sequence, or -1. */
function invalidUtf8Offset(bytes: Buffer): number {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i]!;
    let length = -1;
    let min = 0x80; // the allowed range of the second byte, which excludes overlong forms and surrogates
    let max = 0xbf;
    if (lead < 0x80) length = 1;
    else if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead === 0xe0) min = 0xa0;
      if (lead === 0xed) max = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead === 0xf0) min = 0x90;
      if (lead === 0xf4) max = 0x8f;
    }
    if (length === -1 || i + length > bytes.length) return i;
    for (let k = 1; k < length; k++) {
      const byte = bytes[i + k]!;
      const [low, high] = k === 1 ? [min, max] : [0x80, 0xbf];
      if (byte < low || byte > high) return i;
    }
    i += length;
  }
  return -1;
}

/** Returns the line (1-based), byte column (1-based) and value of the first byte that is not valid UTF-8. */
function firstInvalidUtf8(bytes: Buffer): { line: number; column: number; byte: number } {
  const offset = Math.max(invalidUtf8Offset(bytes), 0);
  // Buffer.lastIndexOf counts a negative start from the end, so offset 0 needs its own case.
  const lineStart = offset === 0 ? 0 : bytes.lastIndexOf(0x0a, offset - 1) + 1;
  let line = 1;
  for (let i = 0; i < lineStart; i++) if (bytes[i] === 0x0a) line++;
  return { line, column: offset - lineStart + 1, byte: bytes[offset] ?? 0 };
}

function jsonlRows(file: string, text: string): number {
  const problems: LineProblem[] = [];
  let rows = 0;
  let chat: boolean | null = null;
  const lines = text.split(/\r?\n/);
  lines.forEach((line, index) => {
    if (line.trim() === "") return;
    rows++;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      problems.push({
        line: index + 1,
        text: `not valid JSON (${(error as Error).message}); write one JSON object per line, with no line breaks inside it`,
      });
      return;
    }
    chat ??= isChatRow(value);
    for (const problem of rowProblems(value, chat)) problems.push({ line: index + 1, text: problem });
  });
  if (rows === 0) {
    rejectFile(file, 1, "the file has no rows; write one JSON object per line, such as {\"messages\": [...]}");
  }
  // A final newline ends the last line; it does not start another.
  const lineCount = text.endsWith("\n") ? lines.length - 1 : lines.length;
  if (problems.length > 0) reject(file, problems, `${lineCount} ${lineCount === 1 ? "line" : "lines"}`);
  return rows;
}

/** Returns the line on which each element of a top-level JSON array starts. */
export function arrayElementLines(text: string): number[] {
  const lines: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let escaped = false;
  let expectingElement = false;
  for (const char of text) {
    if (char === "\n") line++;
    if (inString) {
      if (escaped) escaped = false;
      else if (char === "\\") escaped = true;
      else if (char === '"') inString = false;
      continue;
    }
    if (/\s/.test(char)) continue;
    if (depth === 1 && expectingElement && char !== "]") {
      lines.push(line);
      expectingElement = false;
    }
    if (char === '"') inString = true;
    else if (char === "[" || char === "{") {
      depth++;
      if (depth === 1) expectingElement = true;
    } else if (char === "]" || char === "}") depth--;
    else if (char === "," && depth === 1) expectingElement = true;
  }
  return lines;
}

/** Returns whether JSON.parse finds an error inside `prefix`, as opposed to running out of input. */
function errorInside(prefix: string): boolean {
  try {
    JSON.parse(prefix);
    return false;
  } catch (error) {
    const message = (error as Error).message;
    if (message.includes("Unexpected end of JSON input")) return false;
    const position = /position (\d+)/.exec(message);
    return !position || Number(position[1]) < prefix.length;
  }
}

/**
 * Returns the line of the first syntax error in `text`. V8's messages give no position for
 * some errors, so this finds the shortest prefix that already contains an error.
 */
function syntaxErrorLine(text: string): number {
  let low = 1;
  let high = text.length;
  while (low < high) {
    const middle = Math.floor((low + high) / 2);
    if (errorInside(text.slice(0, middle))) high = middle;
    else low = middle + 1;
  }
  return text.slice(0, low - 1).split("\n").length;
}

function jsonRows(file: string, text: string): number {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    rejectFile(
      file,
      syntaxErrorLine(text),
      `not valid JSON (${(error as Error).message}); fix the syntax, or use .jsonl with one object per line`,
    );
  }
  if (!Array.isArray(value)) {
    rejectFile(file, 1, `expected a JSON array of rows, got ${describeType(value)}; wrap the rows in [ ... ]`);
  }
  if (value.length === 0) rejectFile(file, 1, "the array has no rows; add at least one row object");
  const rowLines = arrayElementLines(text);
  const chat = isChatRow(value[0]);
  const problems = value.flatMap((row: unknown, index) =>
    rowProblems(row, chat).map((problem) => ({ line: rowLines[index] ?? 1, text: `row ${index}: ${problem}` })),
  );
  if (problems.length > 0) reject(file, problems, `${value.length} rows`);
  return value.length;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** Counts the data records of a CSV file with a header row; a quoted field may span lines. */
function csvRows(file: string, text: string): number {
  const { records, problems, droppedRecords } = parseCsv(text);
  const [header, ...rows] = records;
  if (!header && problems.length === 0) {
    rejectFile(file, 1, "the file is empty; write a header row and one row per example");
  }
  if (header && rows.length === 0 && problems.length === 0) {
    rejectFile(file, header.line, "the file has a header row but no data rows; add one row per example");
  }
  const lineProblems: LineProblem[] = [...problems];
  if (header) {
    lineProblems.push(...headerProblems(header.line, header.fields));
    for (const row of rows) {
      const problem = fieldCountProblem(row.fields, header.fields);
      if (problem) lineProblems.push({ line: row.line, text: problem });
    }
  }
  lineProblems.sort((a, b) => a.line - b.line);
  // Records dropped for a syntax error are data records too; the header is not.
  const dataRecords = rows.length + droppedRecords;
  if (lineProblems.length > 0) reject(file, lineProblems, plural(dataRecords, "data record"));
  return rows.length;
}

/** Rejects header columns without a name or with a name that an earlier column has, by 1-based column number. */
function headerProblems(line: number, names: string[]): LineProblem[] {
  const problems: LineProblem[] = [];
  const firstColumn = new Map<string, number>();
  names.forEach((name, index) => {
    const column = index + 1;
    if (name.trim() === "") {
      problems.push({ line, text: `column ${column} of the header has no name; give every column a name` });
      return;
    }
    const earlier = firstColumn.get(name);
    if (earlier !== undefined) {
      problems.push({
        line,
        text: `column ${column} of the header is named ${JSON.stringify(name)}, like column ${earlier}; give every column a distinct name`,
      });
      return;
    }
    firstColumn.set(name, column);
  });
  return problems;
}

/** Returns why a row's field count differs from the header's, or null when they match. */
function fieldCountProblem(fields: string[], names: string[]): string | null {
  const columns = names.length;
  if (fields.length === columns) return null;
  const listed = names.map((name) => JSON.stringify(name)).join(", ");
  const counts = `the row has ${plural(fields.length, "field")}, but the header has ${columns} (${listed})`;
  if (fields.length > columns) {
    return `${counts}; put a field that contains commas in double quotes ("1,5")`;
  }
  const missing = names.slice(fields.length).map((name) => JSON.stringify(name)).join(", ");
  return `${counts}, so it has no value for ${missing}; add the missing fields, or end the row with one comma per missing field to leave them empty`;
}

/** Validates a dataset file and returns its row count; throws unprocessable with every problem. */
export function countRows(file: string, format: string): number {
  const text = readUtf8(file);
  if (format === "json") return jsonRows(file, text);
  if (format === "csv") return csvRows(file, text);
  return jsonlRows(file, text);
}
