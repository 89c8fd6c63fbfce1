// Registry records: models and datasets. The ModelRecord shape is also what the engine and the
// recipe runner read from /api/internal/models (docs/contracts.md).
import { z } from "zod";

/** Registry keys name folders under models/, so they are restricted to a portable subset. */
export const KEY_PATTERN = /^[a-z0-9][a-z0-9._-]*$/;
export const KEY_MAX_LENGTH = 128;

export const RegistryKey = z
  .string()
  .min(1, "a key cannot be empty")
  .max(KEY_MAX_LENGTH, `a key has at most ${KEY_MAX_LENGTH} characters`)
  .regex(
    KEY_PATTERN,
    "a key uses lower-case letters, digits, '.', '_' and '-', and starts with a letter or digit",
  );

export const ModelKind = z.enum(["base", "full", "adapter", "scoring", "architecture"]);
export type ModelKind = z.infer<typeof ModelKind>;

/** Architecture facts computed from config.json and the safetensors headers. */
export const ModelFacts = z
  .object({
    family: z.string(),
    architecture: z.string(),
    parameters: z.number().int().nonnegative(),
    layers: z.number().int().nonnegative(),
    heads: z.number().int().nonnegative(),
    kv_heads: z.number().int().nonnegative(),
    hidden: z.number().int().nonnegative(),
    vocab: z.number().int().nonnegative(),
    dtype: z.string(),
    head_dim: z.number().int().nonnegative().optional(),
    intermediate: z.number().int().nonnegative().optional(),
    max_position_embeddings: z.number().int().nonnegative().optional(),
    tied_embeddings: z.boolean().optional(),
    // Bytes of all weight tensors on disk, when safetensors headers were read.
    weight_bytes: z.number().int().nonnegative().optional(),
    // Adapters only: LoRA rank and the adapter's own parameter count.
    adapter_rank: z.number().int().nonnegative().optional(),
    adapter_parameters: z.number().int().nonnegative().optional(),
  })
  .loose();
export type ModelFacts = z.infer<typeof ModelFacts>;

export const PositiveInt = z.number().int().positive();

/** Default deployment parameters: what a spawn uses when the recipe does not set them. */
export const ModelDefaults = z.object({
  kv_cache_len: PositiveInt,
  tokens_to_generate: PositiveInt,
  tp: PositiveInt,
});
export type ModelDefaults = z.infer<typeof ModelDefaults>;

export const ModelLineage = z.object({
  parent_key: z.string().nullable(),
  run_id: z.string().nullable(),
  recipe_hash: z.string().nullable(),
  optim_step: z.number().int().nullable(),
});
export type ModelLineage = z.infer<typeof ModelLineage>;

/** Storage of a model's folder: who owns it and where it came from. */
export const ModelStorage = z.enum([
  "copy", // copied into models/<key>/ on import; the registry owns it
  "link", // referenced in place; the registry never deletes it
  "generated", // written by make-tiny into models/<key>/
  "saved", // written by a recipe's save()
  "none", // architecture-only entry without weights
]);
export type ModelStorage = z.infer<typeof ModelStorage>;

export const ModelRecord = z.object({
  key: z.string(),
  name: z.string(),
  kind: ModelKind,
  path: z.string().nullable(),
  base_key: z.string().nullable(),
  config: z.record(z.string(), z.unknown()),
  facts: ModelFacts,
  defaults: ModelDefaults,
  lineage: ModelLineage,
  storage: ModelStorage,
  created_at: z.string(),
});
export type ModelRecord = z.infer<typeof ModelRecord>;

export const ImportModelParams = z.object({
  dir: z.string().min(1, "give the folder to import"),
  key: RegistryKey,
  name: z.string().min(1).optional(),
  // Reference the folder in place instead of copying it into models/<key>/.
  link: z.boolean().default(false),
  // Adapters: registry key of the base model, when adapter_config.json does not name one.
  base_key: RegistryKey.optional(),
});
export type ImportModelParams = z.input<typeof ImportModelParams>;

export const TinyFamily = z.enum(["llama-3.1", "qwen3"]);
export type TinyFamily = z.infer<typeof TinyFamily>;

export const MakeTinyParams = z.object({
  family: TinyFamily,
  key: RegistryKey,
  name: z.string().min(1).optional(),
  seed: z.number().int().nonnegative().optional(),
});
export type MakeTinyParams = z.input<typeof MakeTinyParams>;

export const ImportResult = z.object({
  model: ModelRecord,
  warnings: z.array(z.string()),
});
export type ImportResult = z.infer<typeof ImportResult>;

export const SetDefaultsParams = z
  .object({
    key: z.string(),
    kv_cache_len: PositiveInt.optional(),
    tokens_to_generate: PositiveInt.optional(),
    tp: PositiveInt.optional(),
  })
  .refine(
    (value) =>
      value.kv_cache_len !== undefined || value.tokens_to_generate !== undefined || value.tp !== undefined,
    { message: "set at least one of kv_cache_len, tokens_to_generate, tp" },
  );
export type SetDefaultsParams = z.input<typeof SetDefaultsParams>;

export const AddArchitectureParams = z.object({
  name: z.string().min(1),
  key: RegistryKey.optional(),
});
export type AddArchitectureParams = z.input<typeof AddArchitectureParams>;

/** Body of POST /api/internal/models, sent by the engine when a recipe calls save(). */
export const RegisterModelParams = z.object({
  key: RegistryKey,
  name: z.string().min(1).nullish(),
  path: z.string().min(1),
  kind: z.enum(["base", "full", "adapter", "scoring"]),
  parent_key: z.string().nullish(),
  run_id: z.string().nullish(),
  recipe_hash: z.string().nullish(),
  optim_step: z.number().int().nonnegative().nullish(),
  adapter_base_key: z.string().nullish(),
});
export type RegisterModelParams = z.input<typeof RegisterModelParams>;

export const DatasetRecord = z.object({
  key: z.string(),
  name: z.string(),
  path: z.string(),
  format: z.string(),
  rows: z.number().int().nonnegative().nullable(),
  created_at: z.string(),
});
export type DatasetRecord = z.infer<typeof DatasetRecord>;

export const ImportDatasetParams = z.object({
  file: z.string().min(1, "give the file to register"),
  key: RegistryKey,
  name: z.string().min(1).optional(),
});
export type ImportDatasetParams = z.input<typeof ImportDatasetParams>;
