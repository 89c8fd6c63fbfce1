// Validates an HF-format model folder (config, tokenizer, safetensors weights) or a peft
// adapter folder, and computes its architecture facts. Every problem found is reported, so
// a person fixes a folder in one pass.
import fs from "node:fs";
import path from "node:path";

import type { ModelFacts, ModelKind, ModelRecord } from "../../common/index.js";
import { ApiError } from "../errors.js";
import {
  baseFamilyReasons,
  doraReasons,
  peftTypeReasons,
  rankReasons,
  savedModuleReasons,
  targetModuleReasons,
  unknownModuleReasons,
  untrainedTargetWarnings,
} from "./adapter-config.js";
import { adapterShapeMismatches, loraPairs, namedBaseModel, shapeMismatchReasons } from "./adapter-fit.js";
import { buildFacts, type ConfigJson, intField, textConfig } from "./facts.js";
import { checkWeightShapes } from "./shapes.js";
import {
  readSafetensorsHeader,
  SafetensorsError,
  type SafetensorsHeader,
  TORCH_DTYPE_NAMES,
  tensorElements,
} from "./safetensors.js";

export interface FolderInspection {
  kind: Exclude<ModelKind, "architecture">;
  config: ConfigJson;
  facts: ModelFacts;
  baseKey: string | null;
  warnings: string[];
}

export interface InspectOptions {
  /** Registry key of an adapter's base, overriding what the folder names. */
  baseKey?: string | undefined;
  findModel(key: string): ModelRecord | null;
  listModels(): ModelRecord[];
}

/** Thrown when a folder cannot be registered; `reasons` lists every problem. */
export function folderRejected(dir: string, reasons: string[]): ApiError {
  return new ApiError(
    "unprocessable",
    `${dir} cannot be registered:\n${reasons.map((reason) => `  - ${reason}`).join("\n")}`,
    { reasons },
  );
}

/** Reads a JSON file, or records why it cannot be read. */
function readJson(file: string, reasons: string[]): ConfigJson | null {
  const name = path.basename(file);
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    reasons.push(`${name} is missing`);
    return null;
  }
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as ConfigJson;
    reasons.push(`${name} is not a JSON object`);
  } catch (error) {
    reasons.push(`${name} is not valid JSON: ${(error as Error).message}`);
  }
  return null;
}

function readGalleyMetadata(dir: string, reasons: string[]): ConfigJson | null {
  const file = path.join(dir, "galley.json");
  return fs.existsSync(file) ? readJson(file, reasons) : null;
}

export function inspectModelFolder(dir: string, options: InspectOptions): FolderInspection {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw folderRejected(dir, [`folder ${dir} does not exist`]);
  }
  if (!stat.isDirectory()) throw folderRejected(dir, [`${dir} is a file; give the model's folder`]);

  if (fs.existsSync(path.join(dir, "adapter_config.json"))) return inspectAdapter(dir, options);
  return inspectFullModel(dir);
}

// ---------------------------------------------------------------------------------------
// Full models

const REQUIRED_DIMENSIONS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"];

// The families the memory planner counts exactly and the engine's tensor parallelism shards.
export const SUPPORTED_ARCHITECTURES = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"];

function checkConfig(config: ConfigJson, reasons: string[]): boolean {
  const before = reasons.length;
  const architectures = config.architectures;
  if (!Array.isArray(architectures) || typeof architectures[0] !== "string") {
    reasons.push('config.json has no "architectures" list (e.g. ["LlamaForCausalLM"])');
  } else if (!SUPPORTED_ARCHITECTURES.includes(architectures[0])) {
    reasons.push(
      `config.json: architecture ${architectures[0]} is not supported; Galley runs ${SUPPORTED_ARCHITECTURES.join(", ")}`,
    );
  }
  if (typeof config.model_type !== "string") reasons.push('config.json has no "model_type" (e.g. "llama")');

  const text = textConfig(config);
  for (const name of REQUIRED_DIMENSIONS) {
    const value = intField(text, name);
    if (value === undefined || value <= 0) {
      reasons.push(`config.json: "${name}" must be a positive integer, got ${JSON.stringify(text[name] ?? null)}`);
    }
  }
  const kvHeads = intField(text, "num_key_value_heads");
  const heads = intField(text, "num_attention_heads");
  if (kvHeads !== undefined && heads !== undefined && heads > 0 && (kvHeads <= 0 || heads % kvHeads !== 0)) {
    reasons.push(`config.json: num_key_value_heads=${kvHeads} must be positive and divide num_attention_heads=${heads}`);
  }
  return reasons.length === before;
}

function checkTokenizer(dir: string, reasons: string[], warnings: string[]): void {
  const has = (name: string) => fs.existsSync(path.join(dir, name));
  if (!has("tokenizer.json") && !has("tokenizer.model")) {
    reasons.push("no tokenizer: expected tokenizer.json (or tokenizer.model for SentencePiece tokenizers)");
  }
  if (has("tokenizer.json")) {
    try {
      JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
    } catch (error) {
      reasons.push(`tokenizer.json is not valid JSON: ${(error as Error).message}`);
    }
  }
  if (!has("tokenizer_config.json")) {
    reasons.push("tokenizer_config.json is missing; it names the special tokens and the chat template");
    return;
  }
  const tokenizerConfig = readJson(path.join(dir, "tokenizer_config.json"), reasons);
  const hasTemplate =
    typeof tokenizerConfig?.chat_template === "string" ||
    Array.isArray(tokenizerConfig?.chat_template) ||
    has("chat_template.jinja") ||
    has("chat_template.json");
  if (tokenizerConfig && !hasTemplate) {
    warnings.push(
      "no chat template (tokenizer_config.json has no chat_template and there is no chat_template.jinja); " +
        "threads cannot be rendered in the model's own chat format",
    );
  }
}

interface WeightFiles {
  headers: SafetensorsHeader[];
  tensorDtype: string | undefined;
  parameters: number;
  weightBytes: number;
}

function readWeights(dir: string, reasons: string[], prefix = "model"): WeightFiles | null {
  const files = fs.readdirSync(dir).filter((name) => name.endsWith(".safetensors")).sort();
  if (files.length === 0) {
    const pickled = fs.readdirSync(dir).filter((name) => /\.(bin|pt|pth)$/.test(name));
    reasons.push(
      pickled.length > 0
        ? `weights are in PyTorch pickle format (${pickled.join(", ")}); convert them to safetensors, ` +
            "e.g. model.save_pretrained(folder, safe_serialization=True)"
        : `no weights: expected ${prefix}.safetensors or sharded ${prefix}-00001-of-0000N.safetensors files`,
    );
    return null;
  }

  const headers: SafetensorsHeader[] = [];
  for (const name of files) {
    try {
      headers.push(readSafetensorsHeader(path.join(dir, name)));
    } catch (error) {
      if (!(error instanceof SafetensorsError)) throw error;
      reasons.push(error.message);
    }
  }
  checkShardIndex(dir, files, headers, reasons);

  const dtypeBytes = new Map<string, number>();
  let parameters = 0;
  let weightBytes = 0;
  for (const header of headers) {
    for (const tensor of header.tensors.values()) {
      const elements = tensorElements(tensor.shape);
      parameters += elements;
      const bytes = tensor.offsets[1] - tensor.offsets[0];
      weightBytes += bytes;
      dtypeBytes.set(tensor.dtype, (dtypeBytes.get(tensor.dtype) ?? 0) + bytes);
    }
  }
  const dominant = [...dtypeBytes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  const tensorDtype = dominant ? (TORCH_DTYPE_NAMES[dominant] ?? dominant.toLowerCase()) : undefined;
  return { headers, tensorDtype, parameters, weightBytes };
}

function checkShardIndex(dir: string, files: string[], headers: SafetensorsHeader[], reasons: string[]): void {
  const indexName = fs.readdirSync(dir).find((name) => name.endsWith(".safetensors.index.json"));
  if (!indexName) {
    if (files.length > 1 && files.some((name) => /-of-\d+\.safetensors$/.test(name))) {
      reasons.push("sharded weights without a *.safetensors.index.json weight map");
    }
    return;
  }
  const index = readJson(path.join(dir, indexName), reasons);
  const weightMap = index?.weight_map;
  if (!weightMap || typeof weightMap !== "object") {
    if (index) reasons.push(`${indexName} has no "weight_map" object`);
    return;
  }
  const byFile = new Map(headers.map((header) => [path.basename(header.file), header]));
  const missingFiles = new Set<string>();
  const missingTensors: string[] = [];
  for (const [tensor, file] of Object.entries(weightMap as Record<string, string>)) {
    const header = byFile.get(file);
    if (!header) {
      if (!files.includes(file)) missingFiles.add(file);
      continue;
    }
    if (!header.tensors.has(tensor)) missingTensors.push(`${tensor} (in ${file})`);
  }
  for (const file of missingFiles) reasons.push(`${indexName} names ${file}, which is missing`);
  if (missingTensors.length > 0) {
    reasons.push(`${indexName} lists tensors missing from their shard: ${summarize(missingTensors)}`);
  }
}

export function summarize(items: string[], shown = 5): string {
  const head = items.slice(0, shown).join(", ");
  return items.length > shown ? `${head} and ${items.length - shown} more` : head;
}

function inspectFullModel(dir: string): FolderInspection {
  const reasons: string[] = [];
  const warnings: string[] = [];

  const config = readJson(path.join(dir, "config.json"), reasons);
  const configValid = config !== null && checkConfig(config, reasons);
  checkTokenizer(dir, reasons, warnings);
  const weights = readWeights(dir, reasons);
  if (configValid && weights) {
    if (config.quantization_config) {
      warnings.push("quantized weights: the tensor shape check against config.json was skipped");
    } else {
      reasons.push(...checkWeightShapes(config, weights.headers));
    }
  }
  const metadata = readGalleyMetadata(dir, reasons);
  if (reasons.length > 0 || !config || !weights) throw folderRejected(dir, reasons);

  const facts = buildFacts(config, {
    parameters: weights.parameters,
    weightBytes: weights.weightBytes,
    ...(weights.tensorDtype ? { tensorDtype: weights.tensorDtype } : {}),
  });
  const scoring = metadata?.scoring === true;
  if (scoring) facts.scoring = true;
  let kind: FolderInspection["kind"] = "base";
  if (scoring) kind = "scoring";
  else if (metadata?.kind === "full") kind = "full";
  return { kind, config, facts, baseKey: null, warnings };
}

// ---------------------------------------------------------------------------------------
// Adapters

function resolveAdapterBase(
  dir: string,
  adapterConfig: ConfigJson,
  metadata: ConfigJson | null,
  options: InspectOptions,
  reasons: string[],
  warnings: string[],
): ModelRecord | null {
  const named = typeof adapterConfig.base_model_name_or_path === "string" ? adapterConfig.base_model_name_or_path : "";
  const namedModel = named ? namedBaseModel(dir, named, options.findModel, options.listModels) : null;
  const fromMetadata = !options.baseKey && typeof metadata?.base_key === "string";
  const chosenKey = options.baseKey ?? (fromMetadata ? (metadata!.base_key as string) : null);

  if (chosenKey !== null) {
    const base = options.findModel(chosenKey);
    if (!base) {
      reasons.push(
        fromMetadata
          ? `galley.json names base model "${chosenKey}", which is not registered; register the base first`
          : `base model "${chosenKey}" is not registered; register the base first, or pass the key of a registered base`,
      );
      return null;
    }
    // A base named by registry key or folder must be the same model. A hub id that is not
    // registered cannot be compared, so the shape check decides.
    if (namedModel && namedModel.key !== base.key) {
      reasons.push(
        fromMetadata
          ? `adapter_config.json names base model "${named}" (registered as "${namedModel.key}"), but galley.json ` +
              `names "${base.key}"; correct the one that is wrong`
          : `adapter_config.json names base model "${named}" (registered as "${namedModel.key}"), but the adapter ` +
              `is being imported against "${base.key}"; pass --base ${namedModel.key}, or correct ` +
              `base_model_name_or_path if "${base.key}" is the model it was trained on`,
      );
    } else if (named !== "" && !namedModel) {
      const familyReasons = baseFamilyReasons(named, base);
      reasons.push(...familyReasons);
      if (familyReasons.length === 0) {
        warnings.push(
          `adapter_config.json names base model "${named}", which is not registered, so only the LoRA shapes ` +
            `were checked against "${base.key}"`,
        );
      }
    } else if (named === "") {
      warnings.push(
        `adapter_config.json has no base_model_name_or_path, so Galley could not check that the adapter was ` +
          `trained on "${base.key}"; only the LoRA shapes were checked`,
      );
    }
    return base;
  }
  if (named === "") {
    reasons.push("adapter_config.json has no base_model_name_or_path; pass the base's registry key (--base KEY)");
    return null;
  }
  if (namedModel) return namedModel;
  reasons.push(
    `adapter_config.json names base model "${named}", which is not registered; ` +
      "register the base first, or pass its registry key (--base KEY)",
  );
  return null;
}

function inspectAdapter(dir: string, options: InspectOptions): FolderInspection {
  const reasons: string[] = [];
  const adapterConfig = readJson(path.join(dir, "adapter_config.json"), reasons);
  const metadata = readGalleyMetadata(dir, reasons);
  const warnings: string[] = [];
  const base = adapterConfig ? resolveAdapterBase(dir, adapterConfig, metadata, options, reasons, warnings) : null;
  if (base && (base.kind === "adapter" || base.path === null)) {
    reasons.push(`base model "${base.key}" is ${base.kind === "adapter" ? "an adapter" : "architecture-only"}; an adapter needs a model with weights`);
  }
  const weights = readWeights(dir, reasons, "adapter_model");

  if (adapterConfig) reasons.push(...peftTypeReasons(adapterConfig));
  const pairs = weights ? loraPairs(weights.headers) : [];
  const tensorNames = weights ? weights.headers.flatMap((header) => [...header.tensors.keys()]) : [];
  if (adapterConfig) reasons.push(...rankReasons(adapterConfig, pairs));
  if (adapterConfig && weights) {
    reasons.push(...savedModuleReasons(adapterConfig, tensorNames, base));
    reasons.push(...doraReasons(adapterConfig, pairs, tensorNames));
    warnings.push(...untrainedTargetWarnings(adapterConfig, pairs));
  }
  if (adapterConfig && base && base.kind !== "adapter") reasons.push(...targetModuleReasons(adapterConfig, base));
  if (weights && base && base.kind !== "adapter" && base.path !== null) {
    const named = typeof adapterConfig?.base_model_name_or_path === "string" ? adapterConfig.base_model_name_or_path : null;
    reasons.push(...unknownModuleReasons(pairs, base));
    reasons.push(...shapeMismatchReasons(adapterShapeMismatches(weights.headers, base.config), base, named));
  }
  if (reasons.length > 0 || !adapterConfig || !base || !weights) throw folderRejected(dir, reasons);

  // The adapted model has its base's architecture, so it has the base's facts.
  const facts: ModelFacts = {
    ...base.facts,
    adapter_rank: intField(adapterConfig, "r")!,
    adapter_parameters: weights.parameters,
  };
  delete facts.weight_bytes;
  if (metadata?.scoring === true) facts.scoring = true;
  return { kind: "adapter", config: base.config, facts, baseKey: base.key, warnings };
}
