// Architecture facts of a decoder-only transformer from its config.json, and the parameter
// count of the Llama-style families from the config alone (for entries without weights).
import type { ModelDefaults, ModelFacts } from "../../common/index.js";

export type ConfigJson = Record<string, unknown>;

/** Default KV cache length: the model's context, capped at the engine's default of 131,072. */
export const MAX_DEFAULT_KV_CACHE_LEN = 131_072;
export const DEFAULT_TOKENS_TO_GENERATE = 2048;
export const DEFAULT_TP = 1;

/** Multimodal configs keep the language model's dimensions under text_config. */
export function textConfig(config: ConfigJson): ConfigJson {
  const nested = config.text_config;
  if (config.hidden_size === undefined && nested && typeof nested === "object") return nested as ConfigJson;
  return config;
}

export function intField(config: ConfigJson, name: string): number | undefined {
  const value = config[name];
  return typeof value === "number" && Number.isInteger(value) ? value : undefined;
}

export interface Dimensions {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  intermediate: number | undefined;
  maxPositions: number | undefined;
  tied: boolean;
}

/** Reads the dimensions; the caller has checked that the required ones are positive integers. */
export function dimensions(config: ConfigJson): Dimensions {
  const text = textConfig(config);
  const hidden = intField(text, "hidden_size")!;
  const heads = intField(text, "num_attention_heads")!;
  return {
    hidden,
    layers: intField(text, "num_hidden_layers")!,
    heads,
    kvHeads: intField(text, "num_key_value_heads") ?? heads,
    headDim: intField(text, "head_dim") ?? Math.floor(hidden / heads),
    vocab: intField(text, "vocab_size")!,
    intermediate: intField(text, "intermediate_size"),
    maxPositions: intField(text, "max_position_embeddings"),
    tied: (text.tie_word_embeddings ?? config.tie_word_embeddings) === true,
  };
}

export function configDtype(config: ConfigJson): string | undefined {
  const value = config.torch_dtype ?? config.dtype ?? textConfig(config).torch_dtype;
  return typeof value === "string" ? value : undefined;
}

export function architectureName(config: ConfigJson): string {
  const architectures = config.architectures;
  return Array.isArray(architectures) && typeof architectures[0] === "string" ? architectures[0] : "unknown";
}

export function familyName(config: ConfigJson): string {
  return typeof config.model_type === "string" ? config.model_type : "unknown";
}

export function defaultDeployment(config: ConfigJson): ModelDefaults {
  const maxPositions = intField(textConfig(config), "max_position_embeddings");
  return {
    kv_cache_len: Math.min(maxPositions ?? MAX_DEFAULT_KV_CACHE_LEN, MAX_DEFAULT_KV_CACHE_LEN),
    tokens_to_generate: DEFAULT_TOKENS_TO_GENERATE,
    tp: DEFAULT_TP,
  };
}

export function buildFacts(
  config: ConfigJson,
  counted: { parameters: number; weightBytes?: number; tensorDtype?: string },
): ModelFacts {
  const dims = dimensions(config);
  const facts: ModelFacts = {
    family: familyName(config),
    architecture: architectureName(config),
    parameters: counted.parameters,
    layers: dims.layers,
    heads: dims.heads,
    kv_heads: dims.kvHeads,
    hidden: dims.hidden,
    vocab: dims.vocab,
    dtype: configDtype(config) ?? counted.tensorDtype ?? "unknown",
    head_dim: dims.headDim,
    tied_embeddings: dims.tied,
  };
  if (dims.intermediate !== undefined) facts.intermediate = dims.intermediate;
  if (dims.maxPositions !== undefined) facts.max_position_embeddings = dims.maxPositions;
  if (counted.weightBytes !== undefined) facts.weight_bytes = counted.weightBytes;
  return facts;
}

const COUNTABLE_FAMILIES = new Set(["llama", "mistral", "qwen2", "qwen3"]);

/**
 * Counts the parameters of a Llama-style decoder from its config: embeddings, an untied
 * lm_head, per layer q/k/v/o (with GQA and head_dim), biases where the family has them,
 * Qwen3's q/k norms, the gated MLP and two RMSNorms, and the final norm. Returns null for
 * other families, whose layout this function does not know.
 */
export function parametersFromConfig(config: ConfigJson): number | null {
  if (!COUNTABLE_FAMILIES.has(familyName(config))) return null;
  const dims = dimensions(config);
  if (dims.intermediate === undefined) return null;
  const text = textConfig(config);

  const { hidden, heads, kvHeads, headDim, vocab, intermediate, layers } = dims;
  // Qwen2 always has q/k/v biases; Llama and Qwen3 put biases on q/k/v/o with attention_bias.
  const qkvBias = familyName(config) === "qwen2" || text.attention_bias === true;
  const outputBias = familyName(config) !== "qwen2" && text.attention_bias === true;
  const mlpBias = text.mlp_bias === true;

  const queries = heads * headDim;
  const keysValues = kvHeads * headDim;
  let attention = hidden * queries + 2 * hidden * keysValues + queries * hidden;
  if (qkvBias) attention += queries + 2 * keysValues;
  if (outputBias) attention += hidden;
  if (familyName(config) === "qwen3") attention += 2 * headDim; // q_norm and k_norm

  let mlp = 3 * hidden * intermediate;
  if (mlpBias) mlp += 2 * intermediate + hidden;

  const perLayer = attention + mlp + 2 * hidden;
  const embeddings = vocab * hidden * (dims.tied ? 1 : 2);
  return embeddings + layers * perLayer + hidden;
}
