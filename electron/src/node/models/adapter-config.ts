// Checks of a peft adapter_config.json against its weights and the base it is imported on:
// the adapter type, the modules it targets, its rank, and the model family that its
// base_model_name_or_path names. Each check returns reasons to reject the folder.
import type { ModelRecord } from "../../common/index.js";
import { type ConfigJson, dimensions, familyName, intField } from "./facts.js";
import type { LoraPair } from "./adapter-fit.js";

// The model_type values whose module names follow Llama's layout.
const LLAMA_STYLE_FAMILIES = new Set(["llama", "mistral", "qwen2", "qwen3"]);
const ATTENTION_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj"];
const MLP_PROJECTIONS = ["gate_proj", "up_proj", "down_proj"];
const NON_LAYER_MODULES = ["model.embed_tokens", "lm_head"];

// Enough examples to show the pattern; the count of the rest is given.
const MAX_LISTED_MODULES = 3;

/** Rejects adapter types other than LoRA, which is the only type the engine loads. */
export function peftTypeReasons(adapterConfig: ConfigJson): string[] {
  const peftType = adapterConfig.peft_type;
  if (peftType === "LORA") return [];
  const shown = peftType === undefined ? "missing" : JSON.stringify(peftType);
  return [
    `adapter_config.json: "peft_type" is ${shown}, but Galley loads LoRA adapters only ("peft_type": "LORA"); ` +
      "export the adapter with peft's LoraConfig",
  ];
}

/**
 * Returns the names of the modules of a Llama-style base that LoRA can adapt, as peft sees
 * them in the causal LM ("model.layers.0.self_attn.q_proj"), or null for other families.
 */
export function baseModuleNames(baseConfig: ConfigJson): string[] | null {
  if (!LLAMA_STYLE_FAMILIES.has(familyName(baseConfig))) return null;
  const { layers } = dimensions(baseConfig);
  const names = [...NON_LAYER_MODULES];
  for (let layer = 0; layer < layers; layer++) {
    names.push(...ATTENTION_PROJECTIONS.map((name) => `model.layers.${layer}.self_attn.${name}`));
    names.push(...MLP_PROJECTIONS.map((name) => `model.layers.${layer}.mlp.${name}`));
  }
  return names;
}

function validModulesHint(baseConfig: ConfigJson): string {
  const { layers } = dimensions(baseConfig);
  const names = [...ATTENTION_PROJECTIONS, ...MLP_PROJECTIONS, "embed_tokens", "lm_head"].join(", ");
  return (
    `valid names are ${names}, or a full path such as model.layers.N.self_attn.q_proj or ` +
    `model.layers.N.mlp.gate_proj with N from 0 to ${layers - 1}`
  );
}

function describeBase(base: ModelRecord): string {
  return `base model "${base.key}" (${familyName(base.config)}, ${dimensions(base.config).layers} layers)`;
}

/**
 * Rejects target_modules entries that match no module of the base, with peft's matching
 * rules: a list entry matches a module named exactly so or ending in "." plus the entry, and
 * a string is a regular expression that must match a whole module name.
 */
export function targetModuleReasons(adapterConfig: ConfigJson, base: ModelRecord): string[] {
  const names = baseModuleNames(base.config);
  const targets = adapterConfig.target_modules;
  // NOTE: only Llama-style bases are checked, and a missing target_modules (peft's default
  // per model type) is not.
  if (names === null || targets === undefined || targets === null) return [];

  if (typeof targets === "string") {
    if (targets === "all-linear") return [];
    let pattern: RegExp;
    try {
      pattern = new RegExp(`^(?:${targets})$`);
    } catch {
      // NOTE: a Python regular expression that JavaScript cannot compile is left to peft.
      return [];
    }
    if (names.some((name) => pattern.test(name))) return [];
    return [
      `adapter_config.json: target_modules pattern ${JSON.stringify(targets)} matches no module of ` +
        `${describeBase(base)}; ${validModulesHint(base.config)}`,
    ];
  }
  if (!Array.isArray(targets) || !targets.every((target) => typeof target === "string")) {
    return [
      `adapter_config.json: target_modules must be a list of module names or a regular expression, got ` +
        JSON.stringify(targets),
    ];
  }
  const missing = (targets as string[]).filter(
    (target) => !names.some((name) => name === target || name.endsWith(`.${target}`)),
  );
  if (missing.length === 0) return [];
  const listed = missing.map((target) => JSON.stringify(target)).join(", ");
  return [
    `adapter_config.json: target_modules names modules that ${describeBase(base)} does not have: ${listed}; ` +
      validModulesHint(base.config),
  ];
}

/** Rejects LoRA weights of modules that the base does not have (for Llama-style bases). */
export function unknownModuleReasons(pairs: LoraPair[], base: ModelRecord): string[] {
  const names = baseModuleNames(base.config);
  if (names === null) return [];
  const known = new Set(names);
  const { layers } = dimensions(base.config);
  const unknown = pairs
    .map((pair) => pair.module)
    .filter((module) => {
      if (known.has(module)) return false;
      // Layers past the base's depth are reported by the shape check.
      const layer = /(?:^|\.)layers\.(\d+)\./.exec(module);
      return !(layer && Number(layer[1]) >= layers);
    });
  if (unknown.length === 0) return [];
  const listed = unknown.slice(0, MAX_LISTED_MODULES).join(", ");
  const more = unknown.length > MAX_LISTED_MODULES ? ` and ${unknown.length - MAX_LISTED_MODULES} more` : "";
  return [
    `the adapter has LoRA weights for modules that ${describeBase(base)} does not have: ${listed}${more}; ` +
      validModulesHint(base.config),
  ];
}

/** Returns the rank_pattern key that applies to `module`, with peft's rule: exact name, else a suffix match. */
function rankPatternKey(rankPattern: ConfigJson, module: string): string | null {
  const keys = Object.keys(rankPattern);
  if (keys.includes(module)) return module;
  for (const key of keys) {
    try {
      if (new RegExp(`^(?:.*\\.)?(?:${key})$`).test(module)) return key;
    } catch {
      continue;
    }
  }
  return null;
}

/**
 * Rejects LoRA weights whose rank differs from the one adapter_config.json gives their
 * module ("r", or a matching "rank_pattern" entry), because peft builds the LoRA layers
 * from the config and then fails to load weights of another rank.
 */
export function rankReasons(adapterConfig: ConfigJson, pairs: LoraPair[]): string[] {
  const rank = intField(adapterConfig, "r");
  if (rank === undefined || rank <= 0) {
    return [`adapter_config.json: "r" (the LoRA rank) must be a positive integer, got ${JSON.stringify(adapterConfig.r ?? null)}`];
  }
  const rankPattern =
    typeof adapterConfig.rank_pattern === "object" && adapterConfig.rank_pattern !== null
      ? (adapterConfig.rank_pattern as ConfigJson)
      : {};

  // Grouped by the configured and the actual rank, so a wholly wrong "r" gives one reason.
  const groups = new Map<string, { source: string; expected: number; actual: number; modules: string[] }>();
  for (const pair of pairs) {
    // peft stores A as [r, in_features] and B as [out_features, r].
    let actual: number | undefined;
    if (pair.a?.length === 2) actual = pair.a[0];
    else if (pair.b?.length === 2) actual = pair.b[1];
    if (actual === undefined) continue;
    const key = rankPatternKey(rankPattern, pair.module);
    const patternRank = key === null ? undefined : intField(rankPattern, key);
    const expected = patternRank ?? rank;
    if (actual === expected) continue;
    const source = patternRank === undefined ? `"r": ${rank}` : `"rank_pattern" entry ${JSON.stringify(key)}: ${patternRank}`;
    const id = `${source}/${actual}`;
    const group = groups.get(id) ?? { source, expected, actual, modules: [] };
    group.modules.push(pair.module);
    groups.set(id, group);
  }
  return [...groups.values()].map(({ source, actual, modules }) => {
    const more = modules.length > 1 ? ` and ${modules.length - 1} more modules` : "";
    return (
      `adapter_config.json has ${source}, but the LoRA weights of ${modules[0]}${more} have rank ${actual}; ` +
      `peft cannot load them, so set the rank to ${actual} in adapter_config.json if the weights are the trained ones`
    );
  });
}

// Model families recognized in a hub id's repository name, by its lowercase alphanumeric tokens
// ("Llama-3.1-8B-Instruct" has the tokens llama, 3, 1, 8b, instruct).
const HUB_FAMILIES: [string, (token: string) => boolean][] = [
  ["qwen3", (token) => token.startsWith("qwen3")],
  ["qwen2", (token) => token.startsWith("qwen2") || token === "qwen1"],
  ["llama", (token) => token.includes("llama")],
  ["mixtral", (token) => token.startsWith("mixtral")],
  ["mistral", (token) => token.startsWith("mistral")],
  ["gemma", (token) => token.startsWith("gemma")],
  ["phi", (token) => /^phi\d*$/.test(token)],
];

/**
 * Returns the model family that a hub id or folder path names in its last component
 * ("meta-llama/Llama-3.1-8B-Instruct" is llama), or null when it names none or several.
 * The organization is ignored, because it often differs from the family ("Qwen/QwQ-32B").
 */
export function namedFamily(named: string): string | null {
  const name = (named.split(/[\\/]/).filter(Boolean).at(-1) ?? "").toLowerCase();
  const tokens = name.split(/[^a-z0-9]+/).filter(Boolean);
  const families = new Set(HUB_FAMILIES.filter(([, matches]) => tokens.some(matches)).map(([family]) => family));
  return families.size === 1 ? [...families][0]! : null;
}

/**
 * Rejects an adapter whose unregistered base_model_name_or_path names another model family
 * than the base it is imported on. The LoRA shapes can still fit when the two models share
 * their dimensions, and the adapter would then load and generate wrong text.
 */
export function baseFamilyReasons(named: string, base: ModelRecord): string[] {
  const family = namedFamily(named);
  const modelType = familyName(base.config);
  if (family === null || modelType.startsWith(family)) return [];
  return [
    `adapter_config.json names base model "${named}", a ${family} model, but base model "${base.key}" is a ` +
      `${modelType} model (config.json model_type "${modelType}"), so the adapter was trained on another model; ` +
      `import it with --base KEY of the ${family} model it was trained on (import that base first), or correct ` +
      `base_model_name_or_path in adapter_config.json if it was trained on "${base.key}"`,
  ];
}

// The prefix that peft's save_pretrained puts before every module path of the causal LM.
const PEFT_PREFIX = "base_model.model.";

/** Returns the string entries of a list field of adapter_config.json, or [] when it is absent or not a list. */
function stringList(adapterConfig: ConfigJson, field: string): string[] {
  const value = adapterConfig[field];
  return Array.isArray(value) ? value.filter((entry): entry is string => typeof entry === "string") : [];
}

/**
 * Rejects modules_to_save entries whose full weights are missing from the safetensors files.
 * peft 0.21 saves such a module as "base_model.model.<module path>.<parameter>" (for example
 * base_model.model.lm_head.weight) and fails to load the adapter with a KeyError on that name
 * when it is missing. Its modules_to_save rule is a plain suffix match on the module path.
 */
export function savedModuleReasons(adapterConfig: ConfigJson, tensorNames: string[], base: ModelRecord | null): string[] {
  const entries = stringList(adapterConfig, "modules_to_save");
  if (entries.length === 0) return [];
  const baseNames = base ? baseModuleNames(base.config) : null;
  const present = new Set(tensorNames);
  const reasons: string[] = [];
  for (const entry of entries) {
    const matched = baseNames?.filter((name) => name.endsWith(entry)) ?? [];
    let missing: string[];
    if (matched.length > 0) {
      missing = matched.map((name) => `${PEFT_PREFIX}${name}.weight`).filter((name) => !present.has(name));
    } else {
      // NOTE: for a module the base list does not cover (a norm, or a base of another family),
      // one saved parameter under a matching path passes, though peft needs every matching module.
      const saved = tensorNames.some((name) => {
        if (!name.startsWith(PEFT_PREFIX) || name.includes(".lora_")) return false;
        const module = name.slice(PEFT_PREFIX.length).replace(/\.[^.]+$/, "");
        return module.endsWith(entry);
      });
      missing = saved ? [] : [`${PEFT_PREFIX}…${entry}.weight`];
    }
    if (missing.length === 0) continue;

    // Keys copied from a live model's state_dict keep peft's wrapper path, which peft 0.21 does not load.
    const wrapped = tensorNames.filter((name) => name.includes(`${entry}.modules_to_save.`));
    const fix =
      wrapped.length > 0
        ? `the file has ${summarizeNames(wrapped)} instead, the wrapper path of a live peft model; rename each to ` +
          `${PEFT_PREFIX}<module path>.<parameter> without ".modules_to_save.<adapter name>", or save the adapter ` +
          "with save_pretrained"
        : "save the adapter again with peft's save_pretrained, or remove the entry from modules_to_save if the " +
          "module was not trained";
    reasons.push(
      `adapter_config.json: modules_to_save lists ${JSON.stringify(entry)}, but the safetensors files have no ` +
        `${summarizeNames(missing)}; peft cannot load the adapter without the module's full weights, so ${fix}`,
    );
  }
  return reasons;
}

/**
 * Warns about target_modules list entries that no LoRA weights in the file belong to. peft
 * still loads such an adapter, and with its default init_lora_weights the LoRA layers it
 * builds for those modules start with lora_B at zero, so they change no output. But the
 * config then claims modules the adapter was not trained on (or the file lost their
 * weights), which the person importing it should know. A regular-expression target_modules
 * is not checked.
 */
export function untrainedTargetWarnings(adapterConfig: ConfigJson, pairs: LoraPair[]): string[] {
  const targets = stringList(adapterConfig, "target_modules");
  if (!Array.isArray(adapterConfig.target_modules) || pairs.length === 0) return [];
  const untrained = targets.filter(
    (target) => !pairs.some((pair) => pair.module === target || pair.module.endsWith(`.${target}`)),
  );
  if (untrained.length === 0) return [];
  const listed = untrained.map((target) => JSON.stringify(target)).join(", ");
  return [
    `adapter_config.json: target_modules lists ${listed}, but the adapter has no LoRA weights (lora_A, lora_B) ` +
      "for them, so peft adds LoRA layers that start at zero there and the adapter behaves as if they were not " +
      "targeted; remove them from target_modules, or import the export that has their weights",
  ];
}

/**
 * Rejects a DoRA adapter ("use_dora": true) whose LoRA modules lack the magnitude vectors.
 * peft 0.21 saves one per module as "<module>.lora_magnitude_vector" (no ".weight" suffix).
 * Without them peft recomputes the magnitudes from the base weights with only a warning,
 * so the adapter would load and produce different outputs than the trained one.
 */
export function doraReasons(adapterConfig: ConfigJson, pairs: LoraPair[], tensorNames: string[]): string[] {
  if (adapterConfig.use_dora !== true) return [];
  const magnitudes = new Set(
    tensorNames
      .map((name) => /^(?:base_model\.model\.)?(.+)\.lora_magnitude_vector$/.exec(name)?.[1])
      .filter((module): module is string => module !== undefined),
  );
  const missing = pairs.map((pair) => pair.module).filter((module) => !magnitudes.has(module));
  if (missing.length === 0) return [];
  const keys = missing.map((module) => `${PEFT_PREFIX}${module}.lora_magnitude_vector`);
  return [
    `adapter_config.json sets "use_dora": true, but the safetensors files have no DoRA magnitude vector ` +
      `${summarizeNames(keys)}; without them peft recomputes the magnitudes from the base and the adapter no ` +
      `longer computes what was trained, so import the complete DoRA export, or set "use_dora": false if it ` +
      "was trained as plain LoRA",
  ];
}

function summarizeNames(names: string[]): string {
  const listed = names.slice(0, MAX_LISTED_MODULES).join(", ");
  return names.length > MAX_LISTED_MODULES ? `${listed} and ${names.length - MAX_LISTED_MODULES} more` : listed;
}
