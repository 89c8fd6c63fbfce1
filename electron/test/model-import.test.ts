import fs from "node:fs";
import path from "node:path";

import { afterEach, beforeEach, describe, expect, test } from "vitest";

import type { ControlPlane } from "../src/node/control-plane.js";
import { ApiError } from "../src/node/errors.js";
import { parametersFromConfig } from "../src/node/models/facts.js";
import { encodeSafetensors } from "../src/node/models/safetensors.js";
import {
  generateTinyModel,
  openPlane,
  pythonAvailable,
  SMALL_PARAMETERS,
  smallConfig,
  smallTensors,
  tempDir,
  writeSmallModel,
} from "./helpers.js";

let plane: ControlPlane;

beforeEach(() => {
  plane = openPlane();
});

afterEach(() => {
  plane.db.close();
});

/** Imports and returns the rejection; fails the test if the import succeeds. */
async function rejection(dir: string, key = "rejected"): Promise<ApiError> {
  try {
    await plane.models.importFolder({ dir, key });
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    return error as ApiError;
  }
  throw new Error(`importing ${dir} succeeded, but it should have been rejected`);
}

function expectNothingRegistered(): void {
  expect(plane.models.store.count()).toBe(0);
  expect(fs.readdirSync(plane.paths.models)).toEqual([]);
}

describe("import validation", () => {
  test("missing config is rejected", async () => {
    const error = await rejection(writeSmallModel(tempDir("m"), { config: null }));
    expect(error.code).toBe("unprocessable");
    expect(error.details.reasons).toContain("config.json is missing");
    expectNothingRegistered();
  });

  test("config with bad JSON is rejected", async () => {
    const error = await rejection(writeSmallModel(tempDir("m"), { config: '{"hidden_size": 8,' }));
    expect(error.details.reasons?.[0]).toMatch(/^config\.json is not valid JSON/);
    expectNothingRegistered();
  });

  test("config without architecture and dims is rejected", async () => {
    const config = smallConfig();
    delete config.architectures;
    delete config.model_type;
    config.hidden_size = 0;
    delete config.vocab_size;
    const error = await rejection(writeSmallModel(tempDir("m"), { config }));
    const reasons = error.details.reasons ?? [];
    expect(reasons).toContain('config.json has no "architectures" list (e.g. ["LlamaForCausalLM"])');
    expect(reasons).toContain('config.json has no "model_type" (e.g. "llama")');
    expect(reasons).toContain('config.json: "hidden_size" must be a positive integer, got 0');
    expect(reasons).toContain('config.json: "vocab_size" must be a positive integer, got null');
    expectNothingRegistered();
  });

  test("unsupported architecture is rejected", async () => {
    const config = smallConfig({ architectures: ["GPT2LMHeadModel"], model_type: "gpt2" });
    const error = await rejection(writeSmallModel(tempDir("m"), { config }));
    expect(error.details.reasons).toContain(
      "config.json: architecture GPT2LMHeadModel is not supported; " +
        "Galley runs LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM",
    );
    expectNothingRegistered();
  });

  test("missing tokenizer is rejected", async () => {
    const error = await rejection(writeSmallModel(tempDir("m"), { tokenizer: false }));
    const reasons = error.details.reasons ?? [];
    expect(reasons.some((reason) => reason.startsWith("no tokenizer"))).toBe(true);
    expect(reasons.some((reason) => reason.startsWith("tokenizer_config.json is missing"))).toBe(true);
    expectNothingRegistered();
  });

  test("missing weights are rejected", async () => {
    const error = await rejection(writeSmallModel(tempDir("m"), { tensors: null }));
    expect(error.details.reasons?.[0]).toMatch(/^no weights: expected model\.safetensors/);
    expectNothingRegistered();
  });

  test("pickled weights are rejected with the conversion", async () => {
    const dir = writeSmallModel(tempDir("m"), { tensors: null });
    fs.writeFileSync(path.join(dir, "pytorch_model.bin"), "not really");
    const error = await rejection(dir);
    expect(error.details.reasons?.[0]).toMatch(/PyTorch pickle format \(pytorch_model\.bin\).*safe_serialization=True/);
    expectNothingRegistered();
  });

  test("embedding shape mismatch is rejected", async () => {
    const tensors = smallTensors();
    tensors["model.embed_tokens.weight"] = { dtype: "F32", shape: [32, 8] };
    const error = await rejection(writeSmallModel(tempDir("m"), { tensors }));
    expect(error.details.reasons).toContain(
      "model.embed_tokens.weight has shape [32,8], expected [16,8] from config.json",
    );
    expectNothingRegistered();
  });

  test("GQA projection mismatch is rejected", async () => {
    // config.json sets 2 KV heads, but the tensors have 1.
    const error = await rejection(writeSmallModel(tempDir("m"), { config: smallConfig({ num_key_value_heads: 2 }) }));
    const reasons = error.details.reasons ?? [];
    expect(reasons).toContain("model.layers.0.self_attn.k_proj.weight has shape [4,8], expected [8,8] from config.json");
    expect(reasons).toContain("model.layers.1.self_attn.v_proj.weight has shape [4,8], expected [8,8] from config.json");
    expectNothingRegistered();
  });

  test("layer count mismatch is rejected", async () => {
    const error = await rejection(writeSmallModel(tempDir("m"), { config: smallConfig({ num_hidden_layers: 3 }) }));
    expect(error.details.reasons).toContain("the weights have 2 layers, but config.json sets num_hidden_layers=3");
    expectNothingRegistered();
  });

  test("untied model without lm_head is rejected", async () => {
    const tensors = smallTensors();
    delete tensors["lm_head.weight"];
    const error = await rejection(writeSmallModel(tempDir("m"), { tensors }));
    expect(error.details.reasons).toContain("no lm_head.weight, but config.json sets tie_word_embeddings to false");
    expectNothingRegistered();
  });

  test("truncated safetensors is rejected", async () => {
    const dir = writeSmallModel(tempDir("m"));
    const file = path.join(dir, "model.safetensors");
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 100));
    const error = await rejection(dir);
    expect(error.details.reasons?.[0]).toMatch(/^model\.safetensors: tensor .* is truncated or corrupt$/);
    expectNothingRegistered();
  });

  test("every problem is reported at once", async () => {
    const dir = writeSmallModel(tempDir("m"), { config: "{", tokenizer: false, tensors: null });
    const error = await rejection(dir);
    expect(error.details.reasons).toHaveLength(4);
    expect(error.message).toContain("cannot be registered:");
    expectNothingRegistered();
  });

  test("missing folder is rejected", async () => {
    const error = await rejection(path.join(tempDir("m"), "nope"));
    expect(error.details.reasons?.[0]).toMatch(/does not exist$/);
    expectNothingRegistered();
  });
});

describe("import", () => {
  test("copy records facts and defaults", async () => {
    const source = writeSmallModel(tempDir("m"));
    const { model, warnings } = await plane.models.importFolder({ dir: source, key: "small" });
    expect(warnings).toEqual([]);
    expect(model.path).toBe(path.join(plane.paths.models, "small"));
    expect(fs.existsSync(path.join(model.path!, "model.safetensors"))).toBe(true);
    expect(model.storage).toBe("copy");
    expect(model.kind).toBe("base");
    expect(model.facts).toMatchObject({
      family: "llama",
      architecture: "LlamaForCausalLM",
      parameters: SMALL_PARAMETERS,
      layers: 2,
      heads: 2,
      kv_heads: 1,
      hidden: 8,
      vocab: 16,
      dtype: "float32",
    });
    expect(model.defaults).toEqual({ kv_cache_len: 2048, tokens_to_generate: 2048, tp: 1 });
    expect(parametersFromConfig(model.config)).toBe(SMALL_PARAMETERS);
  });

  test("kv_cache_len default is capped", async () => {
    const source = writeSmallModel(tempDir("m"), { config: smallConfig({ max_position_embeddings: 1_048_576 }) });
    const { model } = await plane.models.importFolder({ dir: source, key: "long" });
    expect(model.defaults.kv_cache_len).toBe(131_072);
  });

  test("missing chat template is a warning", async () => {
    const { model, warnings } = await plane.models.importFolder({
      dir: writeSmallModel(tempDir("m"), { chatTemplate: false }),
      key: "no-template",
    });
    expect(model.key).toBe("no-template");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^no chat template/);
  });

  test("link keeps the folder in place", async () => {
    const source = writeSmallModel(tempDir("m"));
    const { model } = await plane.models.importFolder({ dir: source, key: "linked", link: true });
    expect(model.path).toBe(fs.realpathSync(source));
    expect(model.storage).toBe("link");
    expect(fs.readdirSync(plane.paths.models)).toEqual([]);

    const removed = await plane.models.remove("linked");
    expect(removed.deleted_files).toBe(false);
    expect(fs.existsSync(path.join(source, "model.safetensors"))).toBe(true);
  });

  test("remove deletes an owned copy", async () => {
    const { model } = await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "owned" });
    const removed = await plane.models.remove("owned");
    expect(removed.deleted_files).toBe(true);
    expect(fs.existsSync(model.path!)).toBe(false);
    expect(plane.models.store.count()).toBe(0);
  });

  test("sharded weights with an index", async () => {
    const dir = writeSmallModel(tempDir("m"), { tensors: null });
    const all = smallTensors();
    const names = Object.keys(all);
    const first = Object.fromEntries(names.slice(0, 10).map((name) => [name, all[name]!]));
    const second = Object.fromEntries(names.slice(10).map((name) => [name, all[name]!]));
    fs.writeFileSync(path.join(dir, "model-00001-of-00002.safetensors"), encodeSafetensors(first));
    fs.writeFileSync(path.join(dir, "model-00002-of-00002.safetensors"), encodeSafetensors(second));
    const weightMap = Object.fromEntries([
      ...Object.keys(first).map((name) => [name, "model-00001-of-00002.safetensors"]),
      ...Object.keys(second).map((name) => [name, "model-00002-of-00002.safetensors"]),
    ]);
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: weightMap }));
    const { model } = await plane.models.importFolder({ dir, key: "sharded" });
    expect(model.facts.parameters).toBe(SMALL_PARAMETERS);

    weightMap["model.norm.weight"] = "model-00003-of-00002.safetensors";
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: weightMap }));
    const error = await rejection(dir, "sharded-broken");
    expect(error.details.reasons).toContain(
      "model.safetensors.index.json names model-00003-of-00002.safetensors, which is missing",
    );
  });
});

describe("keys", () => {
  test.each(["Upper", "has space", "-leading", ".hidden", "a/b", "", "x".repeat(129)])("invalid key %j", async (key) => {
    const source = writeSmallModel(tempDir("m"));
    await expect(plane.models.importFolder({ dir: source, key })).rejects.toMatchObject({ code: "invalid_request" });
    expectNothingRegistered();
  });

  test.each(["llama-3.1-8b-instruct", "qwen3_32b", "a", "0.5b"])("valid key %j", async (key) => {
    const { model } = await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key });
    expect(model.key).toBe(key);
  });

  test("taken key names the key", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "taken" });
    const again = plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "taken" });
    await expect(again).rejects.toMatchObject({
      code: "conflict",
      message: 'model key "taken" is already registered; choose another key or remove it first',
    });
    expect(plane.models.store.count()).toBe(1);
  });
});

describe("adapters", () => {
  // q_proj of SMALL maps hidden 8 to heads * head_dim = 8, so A is [4, 8] and B is [8, 4] at rank 4.
  // `overrides` replace adapter_config.json fields; an undefined value removes the field.
  function writeAdapter(
    dir: string,
    base: string,
    rank = 4,
    shapes = { a: [4, 8], b: [8, 4] },
    layer = 0,
    overrides: Record<string, unknown> = {},
  ): string {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(
      path.join(dir, "adapter_config.json"),
      JSON.stringify({
        peft_type: "LORA",
        r: rank,
        lora_alpha: 8,
        base_model_name_or_path: base,
        target_modules: ["q_proj"],
        // peft's LoraConfig saves an empty rank_pattern by default.
        rank_pattern: {},
        ...overrides,
      }),
    );
    fs.writeFileSync(
      path.join(dir, "adapter_model.safetensors"),
      encodeSafetensors({
        [`base_model.model.model.layers.${layer}.self_attn.q_proj.lora_A.weight`]: { dtype: "F32", shape: shapes.a },
        [`base_model.model.model.layers.${layer}.self_attn.q_proj.lora_B.weight`]: { dtype: "F32", shape: shapes.b },
      }),
    );
    return dir;
  }

  async function adapterRejection(dir: string, baseKey?: string): Promise<ApiError> {
    try {
      await plane.models.importFolder({ dir, key: "tuned", baseKey });
    } catch (error) {
      expect(error).toBeInstanceOf(ApiError);
      return error as ApiError;
    }
    throw new Error(`importing the adapter ${dir} succeeded, but it should have been rejected`);
  }

  test("adapter on a registered base", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const { model } = await plane.models.importFolder({ dir: writeAdapter(tempDir("a"), "base"), key: "tuned" });
    expect(model.kind).toBe("adapter");
    expect(model.base_key).toBe("base");
    expect(model.facts.adapter_rank).toBe(4);
    expect(model.facts.adapter_parameters).toBe(64);
    expect(model.facts.parameters).toBe(SMALL_PARAMETERS);
    await expect(plane.models.remove("base")).rejects.toMatchObject({ code: "conflict" });
  });

  test("adapter naming the base by path", async () => {
    const { model: base } = await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const { model } = await plane.models.importFolder({ dir: writeAdapter(tempDir("a"), base.path!), key: "by-path" });
    expect(model.base_key).toBe("base");
  });

  test("adapter on an unknown base is rejected", async () => {
    const error = await rejection(writeAdapter(tempDir("a"), "meta-llama/Llama-3.1-8B"));
    expect(error.details.reasons?.[0]).toMatch(/names base model "meta-llama\/Llama-3\.1-8B", which is not registered/);
    expectNothingRegistered();
  });

  test("adapter naming another registered base is rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "other" });
    const adapter = writeAdapter(tempDir("a"), "base");
    const error = await adapterRejection(adapter, "other");
    expect(error.message).toContain(`${adapter} cannot be registered`);
    expect(error.details.reasons).toEqual([
      'adapter_config.json names base model "base" (registered as "base"), but the adapter is being imported ' +
        'against "other"; pass --base base, or correct base_model_name_or_path if "other" is the model it was trained on',
    ]);
    expect(plane.models.store.find("tuned")).toBeNull();
  });

  test("adapter shaped for another model is rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    // Trained on a model with hidden size 16: A takes 16 inputs and B gives 16 outputs.
    const adapter = writeAdapter(tempDir("a"), "meta-llama/Llama-3.1-8B", 4, { a: [4, 16], b: [16, 4] });
    const error = await adapterRejection(adapter, "base");
    expect(error.message).toContain(`${adapter} cannot be registered`);
    expect(error.details.reasons).toEqual([
      'the adapter\'s LoRA weights do not fit base model "base" (hidden_size 8, 2 layers) (adapter_config.json names ' +
        '"meta-llama/Llama-3.1-8B"), so it was trained on another model; import it against the base it was trained ' +
        "on with --base KEY, after importing that base",
      "model.layers.0.self_attn.q_proj: lora_A is [4,16], expected [r, 8], lora_B is [16,4], expected [8, r]",
    ]);
    expect(plane.models.store.find("tuned")).toBeNull();
  });

  test("adapter for a deeper model is rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const error = await adapterRejection(writeAdapter(tempDir("a"), "base", 4, { a: [4, 8], b: [8, 4] }, 5));
    expect(error.details.reasons?.[1]).toBe("model.layers.5.self_attn.q_proj: the base has 2 layers (0 to 1)");
  });

  test("adapter with unregistered hub base fits", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const { model, warnings } = await plane.models.importFolder({
      dir: writeAdapter(tempDir("a"), "meta-llama/Llama-3.1-8B"),
      key: "tuned",
      baseKey: "base",
    });
    expect(model.base_key).toBe("base");
    expect(warnings).toEqual([
      'adapter_config.json names base model "meta-llama/Llama-3.1-8B", which is not registered, so only the LoRA ' +
        'shapes were checked against "base"',
    ]);
  });

  test("adapter rank mismatch is rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const error = await rejection(writeAdapter(tempDir("a"), "base", 8));
    expect(error.details.reasons).toEqual([
      'adapter_config.json has "r": 8, but the LoRA weights of model.layers.0.self_attn.q_proj have rank 4; ' +
        "peft cannot load them, so set the rank to 4 in adapter_config.json if the weights are the trained ones",
    ]);
  });

  test("adapter with weights of higher rank is rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const adapter = writeAdapter(tempDir("a"), "base", 8, { a: [16, 8], b: [8, 16] });
    const error = await rejection(adapter);
    expect(error.details.reasons).toHaveLength(1);
    expect(error.details.reasons?.[0]).toContain('adapter_config.json has "r": 8');
    expect(error.details.reasons?.[0]).toContain("have rank 16");
    expect(plane.models.store.find("rejected")).toBeNull();
  });

  test("adapter rank_pattern sets a module's rank", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const adapter = writeAdapter(tempDir("a"), "base", 4, { a: [2, 8], b: [8, 2] }, 0, { rank_pattern: { q_proj: 2 } });
    const { model } = await plane.models.importFolder({ dir: adapter, key: "pattern" });
    expect(model.facts.adapter_rank).toBe(4);

    const wrong = writeAdapter(tempDir("a"), "base", 2, { a: [4, 8], b: [8, 4] }, 0, { rank_pattern: { q_proj: 2 } });
    const error = await adapterRejection(wrong);
    expect(error.details.reasons?.[0]).toContain('"rank_pattern" entry "q_proj": 2, but the LoRA weights');
  });

  test("adapter of another peft type is rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const error = await rejection(writeAdapter(tempDir("a"), "base", 4, undefined, 0, { peft_type: "IA3X" }));
    expect(error.details.reasons).toEqual([
      'adapter_config.json: "peft_type" is "IA3X", but Galley loads LoRA adapters only ("peft_type": "LORA"); ' +
        "export the adapter with peft's LoraConfig",
    ]);
    expect(plane.models.store.find("rejected")).toBeNull();
  });

  test("adapter without peft type is rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const error = await rejection(writeAdapter(tempDir("a"), "base", 4, undefined, 0, { peft_type: undefined }));
    expect(error.details.reasons?.[0]).toMatch(/^adapter_config\.json: "peft_type" is missing/);
  });

  test("adapter targeting missing modules is rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const targets = ["q_proj", "model.layers.0.self_attn.nonexistent_proj", "model.layers.7.mlp.up_proj"];
    const error = await rejection(writeAdapter(tempDir("a"), "base", 4, undefined, 0, { target_modules: targets }));
    expect(error.details.reasons).toEqual([
      'adapter_config.json: target_modules names modules that base model "base" (llama, 2 layers) does not have: ' +
        '"model.layers.0.self_attn.nonexistent_proj", "model.layers.7.mlp.up_proj"; valid names are q_proj, k_proj, ' +
        "v_proj, o_proj, gate_proj, up_proj, down_proj, embed_tokens, lm_head, or a full path such as " +
        "model.layers.N.self_attn.q_proj or model.layers.N.mlp.gate_proj with N from 0 to 1",
    ]);
    expect(plane.models.store.find("rejected")).toBeNull();
  });

  test("adapter target_modules as full paths and patterns", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const fullPaths = { target_modules: ["model.layers.0.self_attn.q_proj", "self_attn.v_proj", "lm_head"] };
    await plane.models.importFolder({ dir: writeAdapter(tempDir("a"), "base", 4, undefined, 0, fullPaths), key: "paths" });
    const pattern = { target_modules: ".*\\.(q_proj|v_proj)" };
    await plane.models.importFolder({ dir: writeAdapter(tempDir("a"), "base", 4, undefined, 0, pattern), key: "pattern" });

    const unmatched = { target_modules: ".*\\.query_key_value" };
    const error = await adapterRejection(writeAdapter(tempDir("a"), "base", 4, undefined, 0, unmatched));
    expect(error.details.reasons?.[0]).toMatch(
      /^adapter_config\.json: target_modules pattern ".*\\\\.query_key_value" matches no module of base model "base"/,
    );
  });

  test("adapter weights for a missing module are rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const adapter = writeAdapter(tempDir("a"), "base");
    fs.writeFileSync(
      path.join(adapter, "adapter_model.safetensors"),
      encodeSafetensors({
        "base_model.model.model.layers.0.self_attn.nonexistent_proj.lora_A.weight": { dtype: "F32", shape: [4, 8] },
        "base_model.model.model.layers.0.self_attn.nonexistent_proj.lora_B.weight": { dtype: "F32", shape: [8, 4] },
      }),
    );
    const error = await rejection(adapter);
    expect(error.details.reasons?.[0]).toMatch(
      /^the adapter has LoRA weights for modules that base model "base" \(llama, 2 layers\) does not have: model\.layers\.0\.self_attn\.nonexistent_proj; valid names/,
    );
  });

  test("adapter whose hub base is another family is rejected", async () => {
    const qwen = smallConfig({ architectures: ["Qwen3ForCausalLM"], model_type: "qwen3" });
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m"), { config: qwen }), key: "qwen3-32b" });
    // The shapes fit, because both small models share their dimensions.
    const adapter = writeAdapter(tempDir("a"), "meta-llama/Llama-3.1-8B-Instruct");
    const error = await adapterRejection(adapter, "qwen3-32b");
    expect(error.details.reasons).toEqual([
      'adapter_config.json names base model "meta-llama/Llama-3.1-8B-Instruct", a llama model, but base model ' +
        '"qwen3-32b" is a qwen3 model (config.json model_type "qwen3"), so the adapter was trained on another ' +
        "model; import it with --base KEY of the llama model it was trained on (import that base first), or " +
        'correct base_model_name_or_path in adapter_config.json if it was trained on "qwen3-32b"',
    ]);
    expect(plane.models.store.find("tuned")).toBeNull();
  });

  test.each([
    ["Qwen/Qwen2.5-7B-Instruct", "qwen2"],
    ["Qwen/Qwen3-32B", "qwen3"],
    ["mistralai/Mistral-7B-v0.3", "mistral"],
    ["deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "llama"],
    ["/home/me/checkpoints/tinyllama-chat", "llama"],
  ])("hub base %j of family %s on a llama base", async (named, family) => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const adapter = writeAdapter(tempDir("a"), named);
    if (family === "llama") {
      const { model } = await plane.models.importFolder({ dir: adapter, key: "tuned", baseKey: "base" });
      expect(model.base_key).toBe("base");
    } else {
      const error = await adapterRejection(adapter, "base");
      expect(error.details.reasons?.[0]).toContain(`, a ${family} model, but base model "base" is a llama model`);
    }
  });

  test("hub base of no known family is only warned about", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const { warnings } = await plane.models.importFolder({
      dir: writeAdapter(tempDir("a"), "Qwen/QwQ-32B"),
      key: "tuned",
      baseKey: "base",
    });
    expect(warnings).toEqual([
      'adapter_config.json names base model "Qwen/QwQ-32B", which is not registered, so only the LoRA shapes were ' +
        'checked against "base"',
    ]);
  });

  test("adapter without base name warns", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const adapter = writeAdapter(tempDir("a"), "", 4, undefined, 0, { base_model_name_or_path: undefined });
    const { model, warnings } = await plane.models.importFolder({ dir: adapter, key: "tuned", baseKey: "base" });
    expect(model.base_key).toBe("base");
    expect(warnings).toEqual([
      "adapter_config.json has no base_model_name_or_path, so Galley could not check that the adapter was " +
        'trained on "base"; only the LoRA shapes were checked',
    ]);
  });
  // Rewrites the adapter's safetensors with layer 0's q_proj LoRA pair plus `extra` tensors.
  function writeAdapterTensors(dir: string, extra: Record<string, { dtype: string; shape: number[] }>): void {
    fs.writeFileSync(
      path.join(dir, "adapter_model.safetensors"),
      encodeSafetensors({
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": { dtype: "F32", shape: [4, 8] },
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": { dtype: "F32", shape: [8, 4] },
        ...extra,
      }),
    );
  }

  test("modules_to_save without its weights is rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const adapter = writeAdapter(tempDir("a"), "base", 4, undefined, 0, { modules_to_save: ["lm_head"] });
    const error = await rejection(adapter);
    expect(error.details.reasons).toEqual([
      'adapter_config.json: modules_to_save lists "lm_head", but the safetensors files have no ' +
        "base_model.model.lm_head.weight; peft cannot load the adapter without the module's full weights, so " +
        "save the adapter again with peft's save_pretrained, or remove the entry from modules_to_save if the " +
        "module was not trained",
    ]);
    expect(plane.models.store.find("rejected")).toBeNull();
  });

  test("modules_to_save with wrapper keys is rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const adapter = writeAdapter(tempDir("a"), "base", 4, undefined, 0, { modules_to_save: ["lm_head"] });
    writeAdapterTensors(adapter, {
      "base_model.model.lm_head.modules_to_save.default.weight": { dtype: "F32", shape: [16, 8] },
    });
    const error = await rejection(adapter);
    expect(error.details.reasons).toHaveLength(1);
    expect(error.details.reasons?.[0]).toContain("have no base_model.model.lm_head.weight");
    expect(error.details.reasons?.[0]).toContain(
      "the file has base_model.model.lm_head.modules_to_save.default.weight instead",
    );
  });

  test("modules_to_save with its weights is accepted", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const adapter = writeAdapter(tempDir("a"), "base", 4, undefined, 0, { modules_to_save: ["lm_head", "norm"] });
    writeAdapterTensors(adapter, {
      "base_model.model.lm_head.weight": { dtype: "F32", shape: [16, 8] },
      "base_model.model.model.norm.weight": { dtype: "F32", shape: [8] },
    });
    const { model, warnings } = await plane.models.importFolder({ dir: adapter, key: "saved" });
    expect(model.kind).toBe("adapter");
    expect(warnings).toEqual([]);
  });

  test("modules_to_save on every layer needs each layer", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const adapter = writeAdapter(tempDir("a"), "base", 4, undefined, 0, { modules_to_save: ["o_proj"] });
    writeAdapterTensors(adapter, {
      "base_model.model.model.layers.0.self_attn.o_proj.weight": { dtype: "F32", shape: [8, 8] },
    });
    const error = await rejection(adapter);
    expect(error.details.reasons?.[0]).toContain(
      'modules_to_save lists "o_proj", but the safetensors files have no ' +
        "base_model.model.model.layers.1.self_attn.o_proj.weight;",
    );
  });

  test("DoRA without magnitude vectors is rejected", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const adapter = writeAdapter(tempDir("a"), "base", 4, undefined, 0, { use_dora: true });
    const error = await rejection(adapter);
    expect(error.details.reasons).toEqual([
      'adapter_config.json sets "use_dora": true, but the safetensors files have no DoRA magnitude vector ' +
        "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector; without them peft recomputes " +
        "the magnitudes from the base and the adapter no longer computes what was trained, so import the " +
        'complete DoRA export, or set "use_dora": false if it was trained as plain LoRA',
    ]);
  });

  test("DoRA with magnitude vectors is accepted", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const adapter = writeAdapter(tempDir("a"), "base", 4, undefined, 0, { use_dora: true });
    writeAdapterTensors(adapter, {
      "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector": { dtype: "F32", shape: [8] },
    });
    const { model } = await plane.models.importFolder({ dir: adapter, key: "dora" });
    expect(model.kind).toBe("adapter");
  });

  test("target without LoRA weights warns", async () => {
    await plane.models.importFolder({ dir: writeSmallModel(tempDir("m")), key: "base" });
    const targets = { target_modules: ["q_proj", "k_proj"] };
    const adapter = writeAdapter(tempDir("a"), "base", 4, undefined, 0, targets);
    const { model, warnings } = await plane.models.importFolder({ dir: adapter, key: "partial" });
    expect(model.kind).toBe("adapter");
    expect(warnings).toEqual([
      'adapter_config.json: target_modules lists "k_proj", but the adapter has no LoRA weights (lora_A, lora_B) ' +
        "for them, so peft adds LoRA layers that start at zero there and the adapter behaves as if they were not " +
        "targeted; remove them from target_modules, or import the export that has their weights",
    ]);
  });
});

describe("architectures", () => {
  test("public configs count parameters exactly", () => {
    const llama = plane.models.addArchitecture("Llama-3.1-8B-Instruct");
    expect(llama.key).toBe("llama-3.1-8b-instruct");
    expect(llama.kind).toBe("architecture");
    expect(llama.path).toBeNull();
    expect(llama.facts.parameters).toBe(8_030_261_248);
    expect(llama.defaults.kv_cache_len).toBe(131_072);

    expect(plane.models.addArchitecture("qwen3-32b").facts.parameters).toBe(32_762_123_264);
    expect(plane.models.addArchitecture("Qwen2.5-0.5B-Instruct", "small-qwen").facts.parameters).toBe(494_032_768);
  });

  test("unknown architecture lists the available ones", () => {
    expect(() => plane.models.addArchitecture("gpt-5")).toThrow(/unknown architecture "gpt-5"; available: .*Qwen3-32B/);
  });
});

describe.skipIf(!pythonAvailable("tiny model import"))("tiny real model", () => {
  test("qwen3 import records correct facts", { timeout: 180_000 }, async () => {
    const { model, warnings } = await plane.models.importFolder({ dir: generateTinyModel("qwen3"), key: "tiny-qwen3" });
    expect(warnings).toEqual([]);
    expect(model.facts).toMatchObject({
      family: "qwen3",
      architecture: "Qwen3ForCausalLM",
      layers: 2,
      heads: 4,
      kv_heads: 2,
      hidden: 64,
      head_dim: 16,
      vocab: 151_680,
      dtype: "float32",
    });
    // The count comes from the safetensors headers. It is 2 x 151,680 x 64 for the embeddings
    // and lm_head, 2 layers of 37,024, and the final norm, and the config formula must agree.
    expect(model.facts.parameters).toBe(2 * 151_680 * 64 + 2 * 37_024 + 64);
    expect(parametersFromConfig(model.config)).toBe(model.facts.parameters);
    expect(model.defaults).toEqual({ kv_cache_len: 40_960, tokens_to_generate: 2048, tp: 1 });
  });
});
