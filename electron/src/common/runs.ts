// Runs of a recipe and the events they produce.
import { z } from "zod";

export const RunStatus = z.enum(["queued", "running", "succeeded", "failed", "cancelled"]);
export type RunStatus = z.infer<typeof RunStatus>;

export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = ["succeeded", "failed", "cancelled"];

/** The `error: FILE:LINE: message` line of a failed run, with the file mapped to the recipe path. */
export const RunError = z.object({
  message: z.string(),
  file: z.string().nullable(),
  line: z.number().int().nullable(),
});
export type RunError = z.infer<typeof RunError>;

export const Run = z.object({
  id: z.string(),
  recipe_path: z.string(),
  recipe_hash: z.string(),
  config: z.record(z.string(), z.unknown()),
  dry_run: z.boolean(),
  status: RunStatus,
  created_at: z.string(),
  started_at: z.string().nullable(),
  ended_at: z.string().nullable(),
  exit_code: z.number().int().nullable(),
  error: RunError.nullable(),
});
export type Run = z.infer<typeof Run>;

/** A run with its recipe snapshot, as returned by runs.get. */
export const RunDetail = Run.extend({
  recipe_source: z.string(),
  run_dir: z.string(),
});
export type RunDetail = z.infer<typeof RunDetail>;

/**
 * Event types stored per run. stdout and stderr carry output chunks. The next six are the
 * JSON lines the runner writes on GALLEY_EVENTS_FD (docs/contracts.md). status records each
 * status change, and other keeps a runner line of an unknown type unchanged.
 */
export const RunEventType = z.enum([
  "stdout",
  "stderr",
  "stages",
  "progress",
  "metric",
  "artifact",
  "error",
  "spawn",
  "status",
  "other",
]);
export type RunEventType = z.infer<typeof RunEventType>;

export const RunEvent = z.object({
  run_id: z.string(),
  seq: z.number().int().nonnegative(),
  // Milliseconds since the Unix epoch.
  time: z.number(),
  type: RunEventType,
  payload: z.record(z.string(), z.unknown()),
});
export type RunEvent = z.infer<typeof RunEvent>;

// Payloads of the typed events, for consumers that narrow on RunEvent.type.
export const OutputPayload = z.object({ text: z.string() });
export const StagesPayload = z.object({ stages: z.array(z.string()) });
export const ProgressPayload = z.object({ stage: z.string(), total: z.number(), done: z.number() });
export const MetricPayload = z.object({
  name: z.string(),
  value: z.number(),
  step: z.number().nullable().optional(),
});
export const ArtifactPayload = z.object({ name: z.string(), kind: z.string(), uri: z.string() });
export const ErrorPayload = z.object({ message: z.string() });
export const SpawnPayload = z.object({ name: z.string(), kind: z.string(), model_key: z.string() });
export const StatusPayload = z.object({
  status: RunStatus,
  exit_code: z.number().int().nullable().optional(),
  error: RunError.nullable().optional(),
});

export const StartRunParams = z.object({
  // A workspace-relative path, or an absolute path (the CLI runs files from anywhere).
  recipe_path: z.string().min(1, "give the recipe file to run"),
  config: z.record(z.string(), z.unknown()).default({}),
  dry_run: z.boolean().default(false),
});
export type StartRunParams = z.input<typeof StartRunParams>;

export const ListRunsParams = z.object({
  limit: z.coerce.number().int().positive().max(1000).default(100),
  status: RunStatus.optional(),
});

export const RunEventsParams = z.object({
  id: z.string(),
  // Return events with seq greater than this; -1 (the default) returns from the first.
  after_seq: z.coerce.number().int().min(-1).default(-1),
  limit: z.coerce.number().int().positive().max(100_000).default(10_000),
});
