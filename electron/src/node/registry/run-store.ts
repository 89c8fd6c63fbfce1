// The runs and run_events tables.
import type { Run, RunDetail, RunError, RunEvent, RunEventType, RunStatus } from "../../common/index.js";
import type { Db } from "../db/database.js";
import { notFound } from "../errors.js";
import { processExists } from "../processes.js";

interface RunRow {
  id: string;
  recipe_path: string;
  recipe_source: string;
  recipe_hash: string;
  config_json: string;
  dry_run: number;
  status: RunStatus;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  exit_code: number | null;
  error: string | null;
  error_file: string | null;
  error_line: number | null;
}

const RUN_COLUMNS =
  "id, recipe_path, recipe_hash, config_json, dry_run, status, created_at, started_at, ended_at, exit_code, error, error_file, error_line";

function toRun(row: RunRow): Run {
  const error: RunError | null =
    row.error === null ? null : { message: row.error, file: row.error_file, line: row.error_line };
  return {
    id: row.id,
    recipe_path: row.recipe_path,
    recipe_hash: row.recipe_hash,
    config: JSON.parse(row.config_json) as Record<string, unknown>,
    dry_run: row.dry_run === 1,
    status: row.status,
    created_at: row.created_at,
    started_at: row.started_at,
    ended_at: row.ended_at,
    exit_code: row.exit_code,
    error,
  };
}

export interface NewRun {
  id: string;
  recipe_path: string;
  recipe_source: string;
  recipe_hash: string;
  config: Record<string, unknown>;
  dry_run: boolean;
}

export interface RunEnd {
  status: RunStatus;
  exit_code: number | null;
  error: RunError | null;
}

export class RunStore {
  private readonly insertEventStatement;

  constructor(
    private readonly db: Db,
    private readonly runDir: (id: string) => string,
  ) {
    this.insertEventStatement = db.prepare(
      "INSERT INTO run_events (run_id, seq, time, type, payload_json) VALUES (?, ?, ?, ?, ?)",
    );
  }

  create(run: NewRun): Run {
    this.db
      .prepare(
        `INSERT INTO runs (id, recipe_path, recipe_source, recipe_hash, config_json, dry_run, status, created_at, control_pid)
         VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)`,
      )
      .run(
        run.id,
        run.recipe_path,
        run.recipe_source,
        run.recipe_hash,
        JSON.stringify(run.config),
        run.dry_run ? 1 : 0,
        new Date().toISOString(),
        process.pid,
      );
    return this.get(run.id);
  }

  get(id: string): Run {
    const row = this.db.prepare(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = ?`).get(id) as RunRow | undefined;
    if (!row) throw notFound(`unknown run "${id}"; list runs with \`galley runs list\` or GET /api/runs`);
    return toRun(row);
  }

  detail(id: string): RunDetail {
    const run = this.get(id);
    const row = this.db.prepare("SELECT recipe_source FROM runs WHERE id = ?").get(id) as {
      recipe_source: string;
    };
    return { ...run, recipe_source: row.recipe_source, run_dir: this.runDir(id) };
  }

  list(limit: number, status?: RunStatus): Run[] {
    const rows = status
      ? this.db
          .prepare(`SELECT ${RUN_COLUMNS} FROM runs WHERE status = ? ORDER BY created_at DESC, id DESC LIMIT ?`)
          .all(status, limit)
      : this.db.prepare(`SELECT ${RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT ?`).all(limit);
    return (rows as RunRow[]).map(toRun);
  }

  markRunning(id: string): Run {
    this.db
      .prepare("UPDATE runs SET status = 'running', started_at = ? WHERE id = ?")
      .run(new Date().toISOString(), id);
    return this.get(id);
  }

  finish(id: string, end: RunEnd): Run {
    this.db
      .prepare(
        `UPDATE runs SET status = ?, ended_at = ?, exit_code = ?, error = ?, error_file = ?, error_line = ?
         WHERE id = ?`,
      )
      .run(
        end.status,
        new Date().toISOString(),
        end.exit_code,
        end.error?.message ?? null,
        end.error?.file ?? null,
        end.error?.line ?? null,
        id,
      );
    return this.get(id);
  }

  /**
   * Marks runs as failed that are queued or running but whose control plane process has
   * exited, because nothing watches them any more. Returns their ids.
   */
  failOrphans(): string[] {
    const rows = (
      this.db.prepare("SELECT id, control_pid FROM runs WHERE status IN ('queued', 'running')").all() as {
        id: string;
        control_pid: number | null;
      }[]
    ).filter((row) => row.control_pid === null || !processExists(row.control_pid));
    for (const { id } of rows) {
      this.finish(id, {
        status: "failed",
        exit_code: null,
        error: { message: "the control plane stopped while this run was active", file: null, line: null },
      });
    }
    return rows.map((row) => row.id);
  }

  appendEvent(event: RunEvent): void {
    this.insertEventStatement.run(event.run_id, event.seq, event.time, event.type, JSON.stringify(event.payload));
  }

  events(runId: string, afterSeq: number, limit: number): RunEvent[] {
    const rows = this.db
      .prepare(
        "SELECT run_id, seq, time, type, payload_json FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
      )
      .all(runId, afterSeq, limit) as {
      run_id: string;
      seq: number;
      time: number;
      type: RunEventType;
      payload_json: string;
    }[];
    return rows.map((row) => ({
      run_id: row.run_id,
      seq: row.seq,
      time: row.time,
      type: row.type,
      payload: JSON.parse(row.payload_json) as Record<string, unknown>,
    }));
  }
}
