import { describe, expect, it } from "vitest";

import { buildConfig, defaultText, emptyFieldNote, fieldsFromSchema, initialValue, type JsonSchema } from "../src/lib/schema-form";

// The schema `python -m galley.run resources/recipes/config_form.py --schema` prints, plus
// the shapes pydantic gives optional, enum and list fields.
const SCHEMA: JsonSchema = {
  additionalProperties: false,
  properties: {
    model: {
      default: "galley-tiny-qwen3",
      description: "Registry model to generate with",
      minLength: 1,
      title: "Model",
      type: "string",
      "x-galley-kind": "model",
    },
    prompt: { default: "Write a haiku about GPUs.", minLength: 1, title: "Prompt", type: "string" },
    replies: { default: 3, maximum: 8, minimum: 1, title: "Replies", type: "integer" },
    temperature: { default: 0.7, maximum: 2.0, minimum: 0.0, title: "Temperature", type: "number" },
    max_seq_len: { exclusiveMinimum: 0, title: "Max Seq Len", type: "integer" },
    train_adapter: { title: "Train Adapter", type: "boolean" },
    seed: { anyOf: [{ type: "integer" }, { type: "null" }], default: null, title: "Seed" },
    color: { $ref: "#/$defs/Color", default: "blue" },
    tags: { items: { type: "string" }, title: "Tags", type: "array", default: [] },
    // pydantic's default_factory: optional, but the schema carries no default.
    run_name: { title: "Run Name", type: "string" },
  },
  required: ["max_seq_len", "train_adapter"],
  $defs: { Color: { enum: ["red", "blue"], title: "Color", type: "string" } },
  title: "Config",
  type: "object",
};

const MODELS = ["galley-tiny-qwen3", "qwen3-32b"];

describe("fieldsFromSchema", () => {
  const fields = fieldsFromSchema(SCHEMA);
  const byName = Object.fromEntries(fields.map((field) => [field.name, field]));

  it("keeps the schema's property order", () => {
    expect(fields.map((field) => field.name)).toEqual([
      "model",
      "prompt",
      "replies",
      "temperature",
      "max_seq_len",
      "train_adapter",
      "seed",
      "color",
      "tags",
      "run_name",
    ]);
  });

  it("maps types to controls", () => {
    expect(byName.model?.kind).toBe("model");
    expect(byName.prompt?.kind).toBe("string");
    expect(byName.replies?.kind).toBe("integer");
    expect(byName.temperature?.kind).toBe("number");
    expect(byName.train_adapter?.kind).toBe("boolean");
    expect(byName.color?.kind).toBe("enum");
    expect(byName.tags?.kind).toBe("json");
  });

  it("unwraps optional fields and follows $ref", () => {
    expect(byName.seed?.kind).toBe("integer");
    expect(byName.seed?.nullable).toBe(true);
    expect(byName.color?.enumValues).toEqual(["red", "blue"]);
    expect(byName.color?.default).toBe("blue");
  });

  it("marks required fields and bounds", () => {
    expect(byName.max_seq_len?.required).toBe(true);
    expect(byName.max_seq_len?.exclusiveMinimum).toBe(0);
    expect(byName.replies?.required).toBe(false);
    expect(byName.replies?.maximum).toBe(8);
  });

  it("renders defaults as control values", () => {
    expect(initialValue(byName.model!)).toBe("galley-tiny-qwen3");
    expect(initialValue(byName.replies!)).toBe("3");
    expect(initialValue(byName.color!)).toBe("1");
    expect(initialValue(byName.train_adapter!)).toBe(false);
    expect(initialValue(byName.seed!)).toBe("");
    expect(initialValue(byName.tags!)).toBe("[]");
  });
});

describe("buildConfig", () => {
  const fields = fieldsFromSchema(SCHEMA);

  it("builds typed values from defaults and entries", () => {
    const { config, problems } = buildConfig(fields, { max_seq_len: "2048", train_adapter: true }, MODELS);
    expect(problems).toEqual([]);
    expect(config).toEqual({
      model: "galley-tiny-qwen3",
      prompt: "Write a haiku about GPUs.",
      replies: 3,
      temperature: 0.7,
      max_seq_len: 2048,
      train_adapter: true,
      seed: null,
      color: "blue",
      tags: [],
    });
  });

  it("lists every problem at once", () => {
    const { problems } = buildConfig(
      fields,
      { model: "llama-9000", replies: "0", temperature: "hot", max_seq_len: "", prompt: "   ", tags: "[1," },
      MODELS,
    );
    const byField = Object.fromEntries(problems.map((problem) => [problem.field, problem.message]));
    expect(Object.keys(byField).sort()).toEqual(["max_seq_len", "model", "replies", "tags", "temperature"]);
    expect(byField.model).toContain("galley-tiny-qwen3, qwen3-32b");
    expect(byField.replies).toBe("must be at least 1, got 0");
    expect(byField.temperature).toBe('must be a number, got "hot"');
    expect(byField.max_seq_len).toBe("is required; the recipe has no default, so enter a value");
    expect(byField.prompt).toBeUndefined();
    expect(byField.tags).toMatch(/^is not valid JSON/);
  });

  it("rejects fractions in integer fields and exclusive bounds", () => {
    const { problems } = buildConfig(fields, { max_seq_len: "0", replies: "2.5", train_adapter: false }, MODELS);
    expect(problems).toEqual([
      { field: "replies", message: "must be a whole number, got 2.5" },
      { field: "max_seq_len", message: "must be greater than 0, got 0" },
    ]);
  });

  it("sends the default for an emptied field", () => {
    const emptied = { max_seq_len: "1", train_adapter: false, model: "", prompt: "", replies: "", color: "", tags: "", seed: "" };
    const { config, problems } = buildConfig(fields, emptied, MODELS);
    expect(problems).toEqual([]);
    expect(config.model).toBe("galley-tiny-qwen3");
    expect(config.prompt).toBe("Write a haiku about GPUs.");
    expect(config.replies).toBe(3);
    expect(config.color).toBe("blue");
    expect(config.tags).toEqual([]);
    expect(config.seed).toBeNull();
  });

  it("leaves out an empty field the recipe computes", () => {
    const { config, problems } = buildConfig(fields, { max_seq_len: "1", train_adapter: false, run_name: "" }, MODELS);
    expect(problems).toEqual([]);
    expect(config).not.toHaveProperty("run_name");
  });

  it("rejects an empty required string", () => {
    const required = fieldsFromSchema({ properties: { prompt: { type: "string", title: "Prompt" } }, required: ["prompt"] });
    const { config, problems } = buildConfig(required, { prompt: "" });
    expect(problems).toEqual([{ field: "prompt", message: "is required; the recipe has no default, so enter a value" }]);
    expect(config).not.toHaveProperty("prompt");
  });

  it("checks an emptied field's default like a typed value", () => {
    const unknown = fieldsFromSchema({ properties: { model: { type: "string", default: "no-such-model", "x-galley-kind": "model" } } });
    const { problems } = buildConfig(unknown, { model: "" }, MODELS);
    expect(problems).toHaveLength(1);
    expect(problems[0]?.message).toContain('unknown model "no-such-model"');
  });

  it("checks string length", () => {
    const strict = fieldsFromSchema({ properties: { name: { type: "string", minLength: 2, maxLength: 3 } }, required: ["name"] });
    expect(buildConfig(strict, { name: "a" }).problems).toEqual([{ field: "name", message: "needs at least 2 characters" }]);
    expect(buildConfig(strict, { name: "abcd" }).problems).toEqual([{ field: "name", message: "has 4 characters; the maximum is 3" }]);
    expect(buildConfig(strict, { name: "" }).problems).toEqual([{ field: "name", message: "is required; the recipe has no default, so enter a value" }]);
    const short = fieldsFromSchema({ properties: { code: { type: "string", maxLength: 0, default: "" } } });
    expect(buildConfig(short, { code: "a" }).problems).toEqual([{ field: "code", message: "has 1 character; the maximum is 0" }]);
  });
});

describe("empty field text", () => {
  const byName = Object.fromEntries(fieldsFromSchema(SCHEMA).map((field) => [field.name, field]));

  it("shows each default as the run receives it", () => {
    expect(defaultText(byName.replies!)).toBe("3");
    expect(defaultText(byName.model!)).toBe("galley-tiny-qwen3");
    expect(defaultText(byName.seed!)).toBe("None");
    expect(defaultText(byName.tags!)).toBe("[]");
    expect(defaultText(byName.color!)).toBe("blue");
    expect(defaultText(byName.max_seq_len!)).toBeNull();
  });

  it("says what an empty field means", () => {
    expect(emptyFieldNote(byName.replies!)).toBe("Empty, so the run uses the default: 3");
    expect(emptyFieldNote(byName.prompt!)).toBe('Empty, so the run uses the default: "Write a haiku about GPUs."');
    expect(emptyFieldNote(byName.max_seq_len!)).toBe("Required: the recipe has no default.");
    expect(emptyFieldNote(byName.run_name!)).toBe("Empty: the recipe computes its own default.");
  });
});
