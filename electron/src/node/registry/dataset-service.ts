// Registering dataset files. The file stays where it is; the registry records its format and
// row count.
import fs from "node:fs";
import path from "node:path";

import { type DatasetRecord, RegistryKey } from "../../common/index.js";
import { invalidRequest } from "../errors.js";
import type { DatasetStore } from "./dataset-store.js";
import { countRows } from "./dataset-validation.js";

const FORMATS: Record<string, string> = { ".jsonl": "jsonl", ".json": "json", ".csv": "csv" };

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
