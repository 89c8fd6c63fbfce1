// Registering dataset files. The file stays where it is; the registry records its format and
// row count.
import fs from "node:fs";
import path from "node:path";

import { type DatasetRecord, RegistryKey } from "../../common/index.js";
import { ApiError, invalidRequest } from "../errors.js";
import type { DatasetStore } from "./dataset-store.js";

const FORMATS: Record<string, string> = { ".jsonl": "jsonl", ".json": "json", ".csv": "csv" };

/** Counts rows, checking that each JSONL line and the JSON document parse. */
export function countRows(file: string, format: string): number {
  const text = fs.readFileSync(file, "utf8");
  if (format === "json") {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new ApiError("unprocessable", `${file} is not valid JSON: ${(error as Error).message}`);
    }
    if (!Array.isArray(value)) throw new ApiError("unprocessable", `${file} must contain a JSON array of rows`);
    return value.length;
  }
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== "");
  if (format === "csv") return Math.max(lines.length - 1, 0);
  lines.forEach((line, index) => {
    try {
      JSON.parse(line);
    } catch (error) {
      throw new ApiError("unprocessable", `${file}:${index + 1} is not valid JSON: ${(error as Error).message}`);
    }
  });
  return lines.length;
}

export class DatasetService {
  constructor(
    readonly store: DatasetStore,
    private readonly onChange: (key: string) => void = () => {},
  ) {}

  importFile(file: string, key: string, name?: string): DatasetRecord {
    const parsedKey = RegistryKey.safeParse(key);
    if (!parsedKey.success) {
      throw invalidRequest(`invalid dataset key "${key}": ${parsedKey.error.issues.map((issue) => issue.message).join("; ")}`);
    }
    const resolved = path.resolve(file);
    if (!fs.existsSync(resolved) || !fs.statSync(resolved).isFile()) {
      throw invalidRequest(`dataset file ${resolved} does not exist`);
    }
    const format = FORMATS[path.extname(resolved).toLowerCase()];
    if (!format) {
      throw invalidRequest(`unsupported dataset file ${resolved}; use .jsonl, .json or .csv`);
    }
    const record = this.store.insert({ key, name: name ?? key, path: resolved, format, rows: countRows(resolved, format) });
    this.onChange(key);
    return record;
  }
}
