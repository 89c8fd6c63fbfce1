import fs from "node:fs";
import path from "node:path";

import { describe, expect, test } from "vitest";

import { applyMigrations, openDatabase, schemaVersion } from "../src/node/db/database.js";
import { MIGRATIONS } from "../src/node/db/migrations/index.js";
import { tempDir } from "./helpers.js";

function tables(db: ReturnType<typeof openDatabase>): string[] {
  const rows = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[];
  return rows.map((row) => row.name);
}

describe("database", () => {
  test("fresh file gets every table in WAL mode", () => {
    const file = path.join(tempDir("db"), "galley.db");
    const db = openDatabase(file);
    expect(tables(db)).toEqual(expect.arrayContaining(["datasets", "models", "run_events", "runs", "schema_migrations"]));
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(schemaVersion(db)).toBe(MIGRATIONS.at(-1)!.version);
    db.close();
    expect(fs.existsSync(file)).toBe(true);
  });

  test("migrations are idempotent and keep data", () => {
    const file = path.join(tempDir("db"), "galley.db");
    const first = openDatabase(file);
    first.prepare("INSERT INTO datasets (key, name, path, format, rows, created_at) VALUES ('d', 'd', '/x', 'jsonl', 3, 'now')").run();
    first.close();

    const second = openDatabase(file);
    expect(applyMigrations(second, MIGRATIONS)).toEqual([]);
    const applied = second.prepare("SELECT COUNT(*) AS n FROM schema_migrations").get() as { n: number };
    expect(applied.n).toBe(MIGRATIONS.length);
    const row = second.prepare("SELECT rows FROM datasets WHERE key = 'd'").get() as { rows: number };
    expect(row.rows).toBe(3);
    second.close();
  });

  test("new migration applies once on an old file", () => {
    const file = path.join(tempDir("db"), "galley.db");
    openDatabase(file).close();
    const next = [
      ...MIGRATIONS,
      { version: 99, name: "add notes", up: (db: ReturnType<typeof openDatabase>) => db.exec("ALTER TABLE runs ADD COLUMN notes TEXT") },
    ];
    const db = openDatabase(file, next);
    expect(schemaVersion(db)).toBe(99);
    expect(applyMigrations(db, next)).toEqual([]);
    db.close();
  });

  test("failed migration rolls back", () => {
    const file = path.join(tempDir("db"), "galley.db");
    openDatabase(file).close();
    const broken = [
      ...MIGRATIONS,
      {
        version: 2,
        name: "half done",
        up: (db: ReturnType<typeof openDatabase>) => {
          db.exec("CREATE TABLE half_done (id INTEGER)");
          throw new Error("boom");
        },
      },
    ];
    expect(() => openDatabase(file, broken)).toThrow("boom");
    const db = openDatabase(file);
    expect(tables(db)).not.toContain("half_done");
    expect(schemaVersion(db)).toBe(1);
    db.close();
  });

  test("newer schema is rejected with the fix", () => {
    const file = path.join(tempDir("db"), "galley.db");
    const db = openDatabase(file);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (500, 'future', 'now')").run();
    db.close();
    expect(() => openDatabase(file)).toThrow(/schema version 500.*knows versions up to 1.*newer Galley/);
  });

  test("out-of-order migrations are rejected", () => {
    const db = openDatabase(path.join(tempDir("db"), "galley.db"));
    const unordered = [MIGRATIONS[0]!, { ...MIGRATIONS[0]!, name: "again" }];
    expect(() => applyMigrations(db, unordered)).toThrow(/migration "again" has version 1, not greater than the one before it/);
    db.close();
  });
});
