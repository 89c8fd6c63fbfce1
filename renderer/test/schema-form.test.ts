import { describe, expect, it } from "vitest";

import { buildConfig, fieldsFromSchema, initialValue, type JsonSchema } from "../src/lib/schema-form";

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

  it("builds typed values from the defaults and entries", () => {
    const { config, problems } = buildConfig(fields, { max_seq_len: "2048", train_adapter: true }, MODELS);
    expect(problems).toEqual([]);
    expect(config).toEqual({
      model: "galley-tiny-qwen3",
      prompt: "Write a haiku about GPUs.",
      replies: 3,
      temperature: 0.7,
      max_seq_len: 2048,
      train_adapter: true,
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
    expect(byField.max_seq_len).toBe("is required");
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

  it("leaves out an emptied optional field", () => {
    const { config } = buildConfig(fields, { max_seq_len: "1", seed: "", prompt: "" }, MODELS);
    expect(config).not.toHaveProperty("seed");
    expect(config).not.toHaveProperty("prompt");
  });

  it("checks string length", () => {
    const strict = fieldsFromSchema({ properties: { name: { type: "string", minLength: 2, maxLength: 3 } }, required: ["name"] });
    expect(buildConfig(strict, { name: "a" }).problems).toEqual([{ field: "name", message: "needs at least 2 characters" }]);
    expect(buildConfig(strict, { name: "abcd" }).problems).toEqual([{ field: "name", message: "has 4 characters; the maximum is 3" }]);
    expect(buildConfig(strict, { name: "" }).problems).toEqual([{ field: "name", message: "needs at least 2 characters" }]);
  });
});
