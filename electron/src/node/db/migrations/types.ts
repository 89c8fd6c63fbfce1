import type Database from "better-sqlite3";

/** One schema change. Versions are applied in increasing order, each in one transaction. */
export interface Migration {
  version: number;
  name: string;
  up(db: Database.Database): void;
}
