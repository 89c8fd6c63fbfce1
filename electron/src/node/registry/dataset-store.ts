// The datasets table.
import type { DatasetRecord } from "../../common/index.js";
import type { Db } from "../db/database.js";
import { conflict } from "../errors.js";

export class DatasetStore {
  constructor(private readonly db: Db) {}

  list(): DatasetRecord[] {
    return this.db.prepare("SELECT * FROM datasets ORDER BY created_at DESC, key").all() as DatasetRecord[];
  }

  insert(dataset: Omit<DatasetRecord, "created_at">): DatasetRecord {
    if (this.db.prepare("SELECT 1 FROM datasets WHERE key = ?").get(dataset.key)) {
      throw conflict(`dataset key "${dataset.key}" is already registered; choose another key`);
    }
    const record = { ...dataset, created_at: new Date().toISOString() };
    this.db
      .prepare(
        "INSERT INTO datasets (key, name, path, format, rows, created_at) VALUES (@key, @name, @path, @format, @rows, @created_at)",
      )
      .run(record);
    return record;
  }
}
