// Checks that a LoRA adapter belongs on the base model it is registered against. When
// adapter_config.json names its base by a registered key or folder, that must be the same
// model, and the LoRA A/B tensors must fit the base's projections. peft stores A as
// [r, in_features] and B as [out_features, r] for each adapted Linear.
import path from "node:path";

import type { ModelRecord } from "../../common/index.js";
import { type ConfigJson, dimensions } from "./facts.js";
import type { SafetensorsHeader } from "./safetensors.js";
import { expectedShapes } from "./shapes.js";

// Enough examples to show the pattern; the count of the rest is given.
const MAX_LISTED_MISMATCHES = 3;

// "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", optionally with the
// adapter's name before ".weight" (peft's multi-adapter format).
const LORA_TENSOR = /^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$/;

/** Returns the registered model that adapter_config.json's base_model_name_or_path names, by key or folder. */
export function namedBaseModel(
  adapterDir: string,
  named: string,
  find: (key: string) => ModelRecord | null,
  list: () => ModelRecord[],
): ModelRecord | null {
  const byKey = find(named.replace(/^model_registry:\/\//, ""));
  if (byKey) return byKey;
  const resolved = path.resolve(adapterDir, named);
  return list().find((model) => model.path !== null && path.resolve(model.path) === resolved) ?? null;
}

/** The LoRA A and B shapes of one adapted module, named as in the base ("model.layers.0.self_attn.q_proj"). */
export interface LoraPair {
  module: string;
  a?: number[];
  b?: number[];
}

export function loraPairs(headers: SafetensorsHeader[]): LoraPair[] {
  const pairs = new Map<string, LoraPair>();
  for (const header of headers) {
    for (const [name, tensor] of header.tensors) {
      const match = LORA_TENSOR.exec(name);
      if (!match) continue;
      const module = match[1]!;
      const pair = pairs.get(module) ?? { module };
      if (match[2] === "A") pair.a = tensor.shape;
      else pair.b = tensor.shape;
      pairs.set(module, pair);
    }
  }
  return [...pairs.values()];
}

/** Returns why one A/B pair does not fit a projection of shape [out, in], or null when it fits. */
function pairMismatch(pair: LoraPair, out: number, inFeatures: number): string | null {
  const problems: string[] = [];
  if (pair.a && (pair.a.length !== 2 || pair.a[1] !== inFeatures)) {
    problems.push(`lora_A is ${JSON.stringify(pair.a)}, expected [r, ${inFeatures}]`);
  }
  if (pair.b && (pair.b.length !== 2 || pair.b[0] !== out)) {
    problems.push(`lora_B is ${JSON.stringify(pair.b)}, expected [${out}, r]`);
  }
  if (pair.a && pair.b && pair.a.length === 2 && pair.b.length === 2 && pair.a[0] !== pair.b[1]) {
    problems.push(`lora_A's rank ${pair.a[0]} differs from lora_B's rank ${pair.b[1]}`);
  }
  return problems.length > 0 ? `${pair.module}: ${problems.join(", ")}` : null;
}

/**
 * Returns the LoRA tensors that do not fit the base's projections (by the shapes its
 * config.json implies), and layers the base does not have. Modules the shape rules do not
 * cover (embeddings, custom names) are not checked.
 */
export function adapterShapeMismatches(headers: SafetensorsHeader[], baseConfig: ConfigJson): string[] {
  const rules = expectedShapes(baseConfig);
  const { layers } = dimensions(baseConfig);
  const mismatches: string[] = [];
  for (const pair of loraPairs(headers)) {
    const layer = /(?:^|\.)layers\.(\d+)\./.exec(pair.module);
    if (layer && Number(layer[1]) >= layers) {
      mismatches.push(`${pair.module}: the base has ${layers} layers (0 to ${layers - 1})`);
      continue;
    }
    const weight = `${pair.module}.weight`;
    const rule = rules.find(([pattern]) => pattern.test(weight));
    const shape = rule?.[1](weight);
    if (!shape) continue;
    const mismatch = pairMismatch(pair, shape[0]!, shape[1]!);
    if (mismatch) mismatches.push(mismatch);
  }
  return mismatches;
}

/** Builds the reasons for an adapter whose tensors do not fit `base`, naming the base and the fix. */
export function shapeMismatchReasons(mismatches: string[], base: ModelRecord, named: string | null): string[] {
  if (mismatches.length === 0) return [];
  const dims = dimensions(base.config);
  const trainedOn = named ? ` (adapter_config.json names "${named}")` : "";
  const listed = mismatches.slice(0, MAX_LISTED_MISMATCHES);
  const more = mismatches.length - listed.length;
  return [
    `the adapter's LoRA weights do not fit base model "${base.key}" (hidden_size ${dims.hidden}, ` +
      `${dims.layers} layers)${trainedOn}, so it was trained on another model; import it against the base ` +
      `it was trained on with --base KEY, after importing that base`,
    ...listed,
    ...(more > 0 ? [`and ${more} more LoRA modules that do not fit "${base.key}"`] : []),
  ];
}
