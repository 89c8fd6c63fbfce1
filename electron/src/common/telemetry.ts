// Engine telemetry as the engine pushes it (engine/galley/protocol.py: Telemetry), and the
// engine's status as the control plane's supervisor reports it.
import { z } from "zod";

export const ProcessMemory = z
  .object({
    pid: z.number().int(),
    bytes: z.number(),
    spawn: z.string().nullable().optional(),
    galley: z.boolean().optional(),
  })
  .loose();

export const DeviceInfo = z
  .object({
    id: z.string(),
    kind: z.enum(["cuda", "cpu", "virtual"]),
    index: z.number().int(),
    name: z.string(),
    total_bytes: z.number(),
    used_bytes: z.number(),
    free_bytes: z.number(),
    utilization: z.number().nullable().optional(),
    processes: z.array(ProcessMemory).default([]),
  })
  .loose();
export type DeviceInfo = z.infer<typeof DeviceInfo>;

export const RankMemory = z
  .object({
    rank: z.number().int(),
    device: z.string(),
    pid: z.number().int().nullable().optional(),
    // Measured: NVML per-process bytes on CUDA, RSS on CPU.
    process_bytes: z.number().nullable().optional(),
    torch_allocated: z.number().nullable().optional(),
    torch_reserved: z.number().nullable().optional(),
    torch_peak: z.number().nullable().optional(),
    // Planned bytes by component (weights, kv_cache, gradients, ...).
    plan: z.record(z.string(), z.number()).nullable().optional(),
  })
  .loose();
export type RankMemory = z.infer<typeof RankMemory>;

export const SpawnTelemetry = z
  .object({
    id: z.string(),
    name: z.string(),
    session: z.string(),
    kind: z.enum(["inference", "train"]),
    model_key: z.string(),
    tp: z.number().int(),
    devices: z.array(z.string()),
    ranks: z.array(RankMemory),
    state: z.enum(["loading", "ready", "busy", "kept", "failed", "released"]),
    last_op: z.string().nullable().optional(),
    op_counts: z.record(z.string(), z.number()).default({}),
    tokens_per_second: z.number().nullable().optional(),
    created_at: z.number(),
    // The configuration the spawn resolved to: the recipe's values, else the model's defaults.
    kv_cache_len: z.number().int().nullable().optional(),
    tokens_to_generate: z.number().int().nullable().optional(),
    max_batch_size: z.number().int().nullable().optional(),
  })
  .loose();
export type SpawnTelemetry = z.infer<typeof SpawnTelemetry>;

export const Telemetry = z
  .object({
    // Seconds since the Unix epoch, as the engine reports it.
    time: z.number(),
    devices: z.array(DeviceInfo),
    spawns: z.array(SpawnTelemetry),
  })
  .loose();
export type Telemetry = z.infer<typeof Telemetry>;

export const EngineState = z.enum(["stopped", "starting", "ready", "restarting", "failed"]);
export type EngineState = z.infer<typeof EngineState>;

export const EngineStatus = z.object({
  state: EngineState,
  url: z.string().nullable(),
  pid: z.number().int().nullable(),
  // Unexpected exits that the supervisor restarted the engine after.
  restarts: z.number().int().nonnegative(),
  started_at: z.string().nullable(),
  last_error: z.string().nullable(),
  log_path: z.string(),
  devices: z.string().nullable(),
});
export type EngineStatus = z.infer<typeof EngineStatus>;

export const ReleaseSpawnParams = z.object({ id: z.string().min(1, "give the spawn id that telemetry shows") });

/** What the engine returns after ending a spawn; `pids` are the worker processes that exited. */
export const ReleasedSpawn = z.object({
  id: z.string(),
  name: z.string(),
  session: z.string(),
  released: z.boolean(),
  pids: z.array(z.number().int().nullable()),
});
export type ReleasedSpawn = z.infer<typeof ReleasedSpawn>;

export const TelemetryHistoryParams = z.object({
  // Return samples newer than this time, in seconds since the Unix epoch.
  since: z.coerce.number().default(0),
});
