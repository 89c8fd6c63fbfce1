import type { Migration } from "./types.js";

export const initial: Migration = {
  version: 1,
  name: "models, datasets, runs and run events",
  up(db) {
    db.exec(`
      CREATE TABLE models (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('base', 'full', 'adapter', 'scoring', 'architecture')),
        path TEXT,
        storage TEXT NOT NULL CHECK (storage IN ('copy', 'link', 'generated', 'saved', 'none')),
        base_key TEXT REFERENCES models(key) ON DELETE RESTRICT,
        config_json TEXT NOT NULL,
        facts_json TEXT NOT NULL,
        kv_cache_len INTEGER NOT NULL CHECK (kv_cache_len > 0),
        tokens_to_generate INTEGER NOT NULL CHECK (tokens_to_generate > 0),
        tp INTEGER NOT NULL CHECK (tp > 0),
        parent_key TEXT,
        run_id TEXT,
        recipe_hash TEXT,
        optim_step INTEGER,
        created_at TEXT NOT NULL
      );

      CREATE TABLE datasets (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        format TEXT NOT NULL,
        rows INTEGER,
        created_at TEXT NOT NULL
      );

      CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        recipe_path TEXT NOT NULL,
        recipe_source TEXT NOT NULL,
        recipe_hash TEXT NOT NULL,
        config_json TEXT NOT NULL,
        dry_run INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        created_at TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT,
        exit_code INTEGER,
        error TEXT,
        error_file TEXT,
        error_line INTEGER,
        -- PID of the control plane that started the run, to tell its orphans from the runs
        -- of another control plane on the same data directory.
        control_pid INTEGER
      );
      CREATE INDEX runs_by_created_at ON runs (created_at);

      CREATE TABLE run_events (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        time INTEGER NOT NULL,
        type TEXT NOT NULL,
        payload_json TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
      );
    `);
  },
};
