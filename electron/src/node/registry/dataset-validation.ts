// Checks a dataset file before it is registered and counts its rows. Every bad JSONL line is
// reported with its line number, so a person can fix the file in one pass.
import fs from "node:fs";

import { ApiError } from "../errors.js";

const ROLES = ["system", "user", "assistant", "tool"];
// Enough to fix a file by hand; the message gives the total.
const MAX_LISTED_PROBLEMS = 50;

function describeType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/**
 * Returns the problems of one row, which must be a JSON object. A row with `messages` is in the
 * chat format that recipes read as StringThread turns, so each message needs a known role and
 * string content.
 */
export function rowProblems(row: unknown): string[] {
  if (typeof row !== "object" || row === null || Array.isArray(row)) {
    return [`expected a JSON object, got ${describeType(row)}`];
  }
  if (!("messages" in row)) return [];
  const messages = (row as { messages: unknown }).messages;
  if (!Array.isArray(messages)) return [`"messages" must be an array of {role, content}, got ${describeType(messages)}`];
  const problems: string[] = [];
  messages.forEach((message: unknown, index) => {
    if (typeof message !== "object" || message === null || Array.isArray(message)) {
      problems.push(`messages[${index}] must be an object with role and content, got ${describeType(message)}`);
      return;
    }
    const { role, content } = message as { role?: unknown; content?: unknown };
    if (typeof role !== "string" || !ROLES.includes(role)) {
      problems.push(`messages[${index}].role must be one of ${ROLES.join(", ")}, got ${JSON.stringify(role) ?? "nothing"}`);
    }
    if (typeof content !== "string") {
      problems.push(`messages[${index}].content must be a string, got ${describeType(content)}`);
    }
  });
  return problems;
}

function reject(file: string, problems: string[], lines: number): never {
  const listed = problems.slice(0, MAX_LISTED_PROBLEMS);
  if (problems.length > listed.length) listed.push(`… and ${problems.length - listed.length} more problems`);
  const plural = problems.length === 1 ? "problem" : "problems";
  throw new ApiError(
    "unprocessable",
    `${file} has ${problems.length} ${plural} in ${lines} lines; fix them and import again (nothing was registered)`,
    { reasons: listed },
  );
}

function jsonlRows(file: string, text: string): number {
  const problems: string[] = [];
  let rows = 0;
  const lines = text.split(/\r?\n/);
  lines.forEach((line, index) => {
    if (line.trim() === "") return;
    rows++;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      problems.push(`line ${index + 1}: not valid JSON (${(error as Error).message})`);
      return;
    }
    for (const problem of rowProblems(value)) problems.push(`line ${index + 1}: ${problem}`);
  });
  if (problems.length > 0) reject(file, problems, lines.length);
  return rows;
}

function jsonRows(file: string, text: string): number {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ApiError("unprocessable", `${file} is not valid JSON: ${(error as Error).message}`);
  }
  if (!Array.isArray(value)) throw new ApiError("unprocessable", `${file} must contain a JSON array of rows`);
  const problems = value.flatMap((row: unknown, index) =>
    typeof row === "object" && row !== null ? rowProblems(row).map((problem) => `row ${index}: ${problem}`) : [],
  );
  if (problems.length > 0) reject(file, problems, value.length);
  return value.length;
}

/** Validates a dataset file and returns its row count; throws unprocessable with every problem. */
export function countRows(file: string, format: string): number {
  const text = fs.readFileSync(file, "utf8");
  if (format === "json") return jsonRows(file, text);
  if (format === "csv") {
    const lines = text.split(/\r?\n/).filter((line) => line.trim() !== "");
    return Math.max(lines.length - 1, 0);
  }
  return jsonlRows(file, text);
}
