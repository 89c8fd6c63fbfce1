// Every API method of the control plane: its params, its result and its HTTP route.
// The HTTP server, the WebSocket handler and the Electron IPC bridge are all generated from
// this table, so a method exists on every transport or on none.
import { z } from "zod";

import {
  AddArchitectureParams,
  DatasetRecord,
  ImportDatasetParams,
  ImportModelParams,
  ImportResult,
  MakeTinyParams,
  ModelRecord,
  RegisterModelParams,
  SetDefaultsParams,
} from "./models.js";
import { ListRunsParams, Run, RunDetail, RunEvent, RunEventsParams, StartRunParams } from "./runs.js";
import { EngineStatus, ReleasedSpawn, ReleaseSpawnParams, Telemetry, TelemetryHistoryParams } from "./telemetry.js";
import {
  CreateFileParams,
  PathParams,
  RecipeSchema,
  RenameParams,
  WorkspaceEntry,
  WorkspaceFile,
  WorkspaceInfo,
  WriteFileParams,
} from "./workspace.js";

export type HttpVerb = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface MethodSpec<P extends z.ZodType = z.ZodType, R extends z.ZodType = z.ZodType> {
  /** Route under the HTTP server; `:name` segments fill the param of that name. */
  http: { verb: HttpVerb; path: string; successStatus?: number };
  params: P;
  result: R;
  summary: string;
}

function method<P extends z.ZodType, R extends z.ZodType>(spec: MethodSpec<P, R>): MethodSpec<P, R> {
  return spec;
}

const NoParams = z.object({});
const KeyParams = z.object({ key: z.string() });
const RunIdParams = z.object({ id: z.string() });
/**
 * The signal that made the caller cancel, e.g. SIGINT for Ctrl-C in `galley run`. A cancelled
 * run's exit_code is 128 + its number (130, 143 or 129), the exit code of the `galley run`
 * that followed it. Default SIGTERM, the signal the runner receives.
 */
export const CancelSignal = z.enum(["SIGINT", "SIGTERM", "SIGHUP"]);
export type CancelSignal = z.infer<typeof CancelSignal>;
const CancelRunParams = RunIdParams.extend({ signal: CancelSignal.default("SIGTERM") });
const ModelList = z.object({ models: z.array(ModelRecord) });

export const api = {
  // Registry
  "models.list": method({
    http: { verb: "GET", path: "/api/models" },
    params: NoParams,
    result: ModelList,
    summary: "List registered models, newest first.",
  }),
  "models.get": method({
    http: { verb: "GET", path: "/api/models/:key" },
    params: KeyParams,
    result: ModelRecord,
    summary: "Get one model; not_found lists the known keys.",
  }),
  "models.setDefaults": method({
    http: { verb: "PATCH", path: "/api/models/:key/defaults" },
    params: SetDefaultsParams,
    result: ModelRecord,
    summary: "Change a model's default kv_cache_len, tokens_to_generate or tp.",
  }),
  "models.import": method({
    http: { verb: "POST", path: "/api/models/import", successStatus: 201 },
    params: ImportModelParams,
    result: ImportResult,
    summary: "Validate an HF-format folder and register it; rejected folders register nothing.",
  }),
  "models.makeTiny": method({
    http: { verb: "POST", path: "/api/models/make-tiny", successStatus: 201 },
    params: MakeTinyParams,
    result: ImportResult,
    summary: "Generate a small random-initialized model of a real architecture and register it.",
  }),
  "models.addArchitecture": method({
    http: { verb: "POST", path: "/api/models/architectures", successStatus: 201 },
    params: AddArchitectureParams,
    result: ModelRecord,
    summary: "Register an architecture-only entry (no weights) from resources/architectures.",
  }),
  "models.remove": method({
    http: { verb: "DELETE", path: "/api/models/:key" },
    params: KeyParams,
    result: z.object({ key: z.string(), deleted_files: z.boolean() }),
    summary: "Unregister a model, deleting its folder if the registry owns it.",
  }),
  "datasets.list": method({
    http: { verb: "GET", path: "/api/datasets" },
    params: NoParams,
    result: z.object({ datasets: z.array(DatasetRecord) }),
    summary: "List registered datasets.",
  }),
  "datasets.import": method({
    http: { verb: "POST", path: "/api/datasets", successStatus: 201 },
    params: ImportDatasetParams,
    result: DatasetRecord,
    summary: "Register a JSONL, JSON or CSV file as a dataset, counting its rows.",
  }),

  // Workspace
  "workspace.info": method({
    http: { verb: "GET", path: "/api/workspace" },
    params: NoParams,
    result: WorkspaceInfo,
    summary: "Get the workspace root folder.",
  }),
  "workspace.list": method({
    http: { verb: "GET", path: "/api/workspace/files" },
    params: NoParams,
    result: z.object({ entries: z.array(WorkspaceEntry) }),
    summary: "List the workspace's files and folders, recursively.",
  }),
  "workspace.read": method({
    http: { verb: "GET", path: "/api/workspace/file" },
    params: PathParams,
    result: WorkspaceFile,
    summary: "Read a text file of the workspace.",
  }),
  "workspace.write": method({
    http: { verb: "PUT", path: "/api/workspace/file" },
    params: WriteFileParams,
    result: WorkspaceEntry,
    summary: "Overwrite an existing workspace file.",
  }),
  "workspace.create": method({
    http: { verb: "POST", path: "/api/workspace/file", successStatus: 201 },
    params: CreateFileParams,
    result: WorkspaceEntry,
    summary: "Create a workspace file; conflict if it exists.",
  }),
  "workspace.rename": method({
    http: { verb: "POST", path: "/api/workspace/rename" },
    params: RenameParams,
    result: WorkspaceEntry,
    summary: "Rename or move a workspace file or folder; conflict if the target exists.",
  }),
  "workspace.delete": method({
    http: { verb: "DELETE", path: "/api/workspace/file" },
    params: PathParams,
    result: z.object({ path: z.string() }),
    summary: "Delete a workspace file or an empty folder.",
  }),
  "recipes.schema": method({
    http: { verb: "GET", path: "/api/recipes/schema" },
    params: PathParams,
    result: RecipeSchema,
    summary: "Get a recipe's input config as JSON Schema; unprocessable carries the file and line.",
  }),

  // Runs
  "runs.start": method({
    http: { verb: "POST", path: "/api/runs", successStatus: 201 },
    params: StartRunParams,
    result: Run,
    summary: "Snapshot a recipe and its config and start it.",
  }),
  "runs.list": method({
    http: { verb: "GET", path: "/api/runs" },
    params: ListRunsParams,
    result: z.object({ runs: z.array(Run) }),
    summary: "List runs, newest first.",
  }),
  "runs.get": method({
    http: { verb: "GET", path: "/api/runs/:id" },
    params: RunIdParams,
    result: RunDetail,
    summary: "Get a run with its recipe snapshot.",
  }),
  "runs.events": method({
    http: { verb: "GET", path: "/api/runs/:id/events" },
    params: RunEventsParams,
    result: z.object({ events: z.array(RunEvent) }),
    summary: "List a run's stored events after a sequence number.",
  }),
  "runs.cancel": method({
    http: { verb: "POST", path: "/api/runs/:id/cancel" },
    params: CancelRunParams,
    result: Run,
    summary: "Stop a run: SIGTERM, then SIGKILL after a grace period.",
  }),

  // Engine
  "engine.status": method({
    http: { verb: "GET", path: "/api/engine" },
    params: NoParams,
    result: EngineStatus,
    summary: "Get the engine process's state.",
  }),
  "telemetry.snapshot": method({
    http: { verb: "GET", path: "/api/telemetry" },
    params: NoParams,
    result: z.object({ telemetry: Telemetry.nullable() }),
    summary: "Get the latest telemetry sample, or null before the first.",
  }),
  "telemetry.history": method({
    http: { verb: "GET", path: "/api/telemetry/history" },
    params: TelemetryHistoryParams,
    result: z.object({ samples: z.array(Telemetry) }),
    summary: "Get the telemetry samples of the last 10 minutes, oldest first.",
  }),

  "spawns.release": method({
    http: { verb: "POST", path: "/api/spawns/:id/release" },
    params: ReleaseSpawnParams,
    result: ReleasedSpawn,
    summary: "End a spawn of any session; the recipe that owns it gets not_found on its next op.",
  }),

  // Internal registry endpoints that the engine and the recipe runner call.
  "internal.models.list": method({
    http: { verb: "GET", path: "/api/internal/models" },
    params: NoParams,
    result: ModelList,
    summary: "List models for the engine and runner.",
  }),
  "internal.models.get": method({
    http: { verb: "GET", path: "/api/internal/models/:key" },
    params: KeyParams,
    result: ModelRecord,
    summary: "Get one model; not_found lists the known keys.",
  }),
  "internal.models.register": method({
    http: { verb: "POST", path: "/api/internal/models", successStatus: 201 },
    params: RegisterModelParams,
    result: ModelRecord,
    summary: "Register a model that a recipe saved; conflict if the key exists.",
  }),
} as const;

export type Api = typeof api;
export type ApiMethod = keyof Api;
/** Params as a caller writes them (defaults may be omitted). */
export type ApiParams<M extends ApiMethod> = z.input<Api[M]["params"]>;
/** Params after validation, as a handler receives them. */
export type ApiParsedParams<M extends ApiMethod> = z.output<Api[M]["params"]>;
export type ApiResult<M extends ApiMethod> = z.output<Api[M]["result"]>;

export const API_METHODS = Object.keys(api) as ApiMethod[];

export function isApiMethod(name: string): name is ApiMethod {
  return Object.prototype.hasOwnProperty.call(api, name);
}
