// Checks that the weight tensors of a Llama-style checkpoint have the shapes its config.json
// implies: embeddings and lm_head [vocab, hidden], attention projections with GQA and
// head_dim, the gated MLP, and one set of tensors per layer.
import { type ConfigJson, dimensions } from "./facts.js";
import type { SafetensorsHeader, TensorInfo } from "./safetensors.js";

// Reported mismatches are capped so a wholly wrong checkpoint gives a readable error.
const MAX_SHAPE_REASONS = 8;

type ExpectedShape = (name: string) => number[] | null;

/** Returns, per weight-name pattern, the [out, in] shape that config.json implies. */
export function expectedShapes(config: ConfigJson): [RegExp, ExpectedShape][] {
  const dims = dimensions(config);
  const { hidden, heads, kvHeads, headDim, vocab, intermediate } = dims;
  const rules: [RegExp, ExpectedShape][] = [
    [/(^|\.)embed_tokens\.weight$/, () => [vocab, hidden]],
    [/(^|\.)lm_head\.weight$/, () => [vocab, hidden]],
    [/\.self_attn\.q_proj\.weight$/, () => [heads * headDim, hidden]],
    [/\.self_attn\.k_proj\.weight$/, () => [kvHeads * headDim, hidden]],
    [/\.self_attn\.v_proj\.weight$/, () => [kvHeads * headDim, hidden]],
    [/\.self_attn\.o_proj\.weight$/, () => [hidden, heads * headDim]],
  ];
  if (intermediate !== undefined) {
    rules.push(
      [/\.mlp\.gate_proj\.weight$/, () => [intermediate, hidden]],
      [/\.mlp\.up_proj\.weight$/, () => [intermediate, hidden]],
      [/\.mlp\.down_proj\.weight$/, () => [hidden, intermediate]],
    );
  }
  return rules;
}

function sameShape(actual: readonly number[], expected: readonly number[]): boolean {
  return actual.length === expected.length && actual.every((dim, index) => dim === expected[index]);
}

/** Returns one reason per problem found, empty when the weights match the config. */
export function checkWeightShapes(config: ConfigJson, headers: SafetensorsHeader[]): string[] {
  const tensors = new Map<string, TensorInfo>();
  for (const header of headers) for (const [name, tensor] of header.tensors) tensors.set(name, tensor);

  const reasons: string[] = [];
  const mismatches: string[] = [];
  const rules = expectedShapes(config);
  for (const [name, tensor] of tensors) {
    for (const [pattern, expected] of rules) {
      if (!pattern.test(name)) continue;
      const shape = expected(name);
      if (shape && !sameShape(tensor.shape, shape)) {
        mismatches.push(`${name} has shape ${JSON.stringify(tensor.shape)}, expected ${JSON.stringify(shape)} from config.json`);
      }
    }
  }
  reasons.push(...mismatches.slice(0, MAX_SHAPE_REASONS));
  if (mismatches.length > MAX_SHAPE_REASONS) {
    reasons.push(`and ${mismatches.length - MAX_SHAPE_REASONS} more tensors with shapes that do not match config.json`);
  }

  const dims = dimensions(config);
  const names = [...tensors.keys()];
  if (!names.some((name) => /(^|\.)embed_tokens\.weight$/.test(name))) {
    reasons.push("no embedding tensor (…embed_tokens.weight) in the safetensors files");
  }
  if (!dims.tied && !names.some((name) => /(^|\.)lm_head\.weight$/.test(name))) {
    reasons.push("no lm_head.weight, but config.json sets tie_word_embeddings to false");
  }

  const layerIndices = new Set<number>();
  for (const name of names) {
    const match = /\.layers\.(\d+)\./.exec(name);
    if (match) layerIndices.add(Number(match[1]));
  }
  if (layerIndices.size !== dims.layers) {
    reasons.push(
      `the weights have ${layerIndices.size} layers, but config.json sets num_hidden_layers=${dims.layers}`,
    );
  }
  return reasons;
}
