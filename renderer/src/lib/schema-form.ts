// Turns a recipe's input-config JSON Schema (pydantic's output of `galley.run --schema`)
// into form fields, and the form's values back into a config, listing every problem at once.

import { plural } from "./format";

export type JsonSchema = { [key: string]: unknown };

export type FieldKind = "model" | "string" | "integer" | "number" | "boolean" | "enum" | "json";

export interface FormField {
  name: string;
  title: string;
  description: string | null;
  kind: FieldKind;
  required: boolean;
  // null is an accepted value (pydantic's `T | None`).
  nullable: boolean;
  hasDefault: boolean;
  default: unknown;
  enumValues: unknown[];
  minimum: number | null;
  maximum: number | null;
  exclusiveMinimum: number | null;
  exclusiveMaximum: number | null;
  minLength: number | null;
  maxLength: number | null;
  pattern: string | null;
}

/** Value of a form control: text for typed inputs, a flag for checkboxes. */
export type FormValue = string | boolean;

export interface ConfigProblem {
  field: string;
  message: string;
}

// Marks a field whose value is a registry model key; the form shows a model picker for it.
export const MODEL_KIND_MARKER = "x-galley-kind";

function isObject(value: unknown): value is JsonSchema {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function numberOrNull(value: unknown): number | null {
  return typeof value === "number" ? value : null;
}

/** Follows `$ref: "#/$defs/Name"` (also inside a one-element allOf) to the definition. */
function resolve(schema: JsonSchema, root: JsonSchema): JsonSchema {
  const allOf = schema.allOf;
  if (Array.isArray(allOf) && allOf.length === 1 && isObject(allOf[0])) {
    const { allOf: _ignored, ...rest } = schema;
    return { ...resolve(allOf[0], root), ...rest };
  }
  const ref = schema.$ref;
  if (typeof ref !== "string") return schema;
  const target = ref
    .replace(/^#\//, "")
    .split("/")
    .reduce<unknown>((node, part) => (isObject(node) ? node[part] : undefined), root);
  if (!isObject(target)) return schema;
  const { $ref: _ref, ...rest } = schema;
  return { ...resolve(target, root), ...rest };
}

/** Splits `anyOf: [T, {type: "null"}]` into T and a nullable flag. */
function unwrapNullable(schema: JsonSchema, root: JsonSchema): { schema: JsonSchema; nullable: boolean } {
  const anyOf = schema.anyOf;
  if (!Array.isArray(anyOf)) return { schema: resolve(schema, root), nullable: schema.type === "null" };
  const options = anyOf.filter(isObject);
  const nonNull = options.filter((option) => option.type !== "null");
  const nullable = nonNull.length < options.length;
  if (nonNull.length !== 1 || !nonNull[0]) return { schema, nullable };
  const { anyOf: _ignored, ...rest } = schema;
  return { schema: { ...resolve(nonNull[0], root), ...rest }, nullable };
}

/** Returns the choices of an `enum` (or a single `const`), else an empty list. */
function enumValues(schema: JsonSchema): unknown[] {
  if (Array.isArray(schema.enum)) return schema.enum;
  if ("const" in schema) return [schema.const];
  return [];
}

function fieldKind(schema: JsonSchema): FieldKind {
  if (schema[MODEL_KIND_MARKER] === "model") return "model";
  if (Array.isArray(schema.enum)) return "enum";
  if ("const" in schema) return "enum";
  switch (schema.type) {
    case "string":
      return "string";
    case "integer":
      return "integer";
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    default:
      return "json";
  }
}

export function fieldsFromSchema(root: JsonSchema): FormField[] {
  const properties = isObject(root.properties) ? root.properties : {};
  const required = new Set(Array.isArray(root.required) ? root.required.filter((name) => typeof name === "string") : []);

  return Object.entries(properties).map(([name, raw]) => {
    const { schema, nullable } = unwrapNullable(isObject(raw) ? raw : {}, root);
    const kind = fieldKind(schema);
    return {
      name,
      title: typeof schema.title === "string" ? schema.title : name,
      description: typeof schema.description === "string" ? schema.description : null,
      kind,
      required: required.has(name),
      nullable,
      hasDefault: "default" in schema,
      default: schema.default,
      enumValues: enumValues(schema),
      minimum: numberOrNull(schema.minimum),
      maximum: numberOrNull(schema.maximum),
      exclusiveMinimum: numberOrNull(schema.exclusiveMinimum),
      exclusiveMaximum: numberOrNull(schema.exclusiveMaximum),
      minLength: numberOrNull(schema.minLength),
      maxLength: numberOrNull(schema.maxLength),
      pattern: typeof schema.pattern === "string" ? schema.pattern : null,
    };
  });
}

/** Extracts a registry key from a model field's default: a key, a `model_registry://` path or `{key}`. */
export function modelKeyOf(value: unknown): string {
  if (isObject(value) && typeof value.key === "string") return value.key;
  if (typeof value !== "string") return "";
  return value.replace(/^model_registry:\/\//, "");
}

/** Renders the field's default as its control's starting value, or returns empty without one. */
export function initialValue(field: FormField): FormValue {
  if (field.kind === "boolean") return field.default === true;
  if (!field.hasDefault || field.default === null || field.default === undefined) return "";
  switch (field.kind) {
    case "model":
      return modelKeyOf(field.default);
    case "enum":
      return String(field.enumValues.findIndex((option) => option === field.default));
    case "json":
      return JSON.stringify(field.default, null, 2);
    default:
      return String(field.default);
  }
}

/** Renders the recipe's default for display: "3", "galley-tiny-qwen3", "None"; null without one. */
export function defaultText(field: FormField): string | null {
  if (!field.hasDefault) return null;
  if (field.default === null || field.default === undefined) return "None";
  switch (field.kind) {
    case "model":
      return modelKeyOf(field.default);
    case "json":
      return JSON.stringify(field.default);
    case "string":
      // An empty default would read as nothing at all.
      return field.default === "" ? '""' : String(field.default);
    default:
      return String(field.default);
  }
}

/**
 * Describes what the run receives while the field is empty. Only an optional field whose schema
 * gives no default (pydantic's `default_factory`) is left out of the config, so the recipe
 * computes that value itself.
 */
export function emptyFieldNote(field: FormField): string {
  // Quotes show where a text default starts and ends.
  const display = typeof field.default === "string" && field.kind === "string" ? JSON.stringify(field.default) : defaultText(field);
  if (display !== null) return `Empty, so the run uses the default: ${display}`;
  if (field.required) return "Required: the recipe has no default.";
  return "Empty: the recipe computes its own default.";
}

function checkNumber(field: FormField, value: number): string | null {
  if (field.kind === "integer" && !Number.isInteger(value)) return `must be a whole number, got ${value}`;
  if (field.minimum !== null && value < field.minimum) return `must be at least ${field.minimum}, got ${value}`;
  if (field.maximum !== null && value > field.maximum) return `must be at most ${field.maximum}, got ${value}`;
  if (field.exclusiveMinimum !== null && value <= field.exclusiveMinimum) {
    return `must be greater than ${field.exclusiveMinimum}, got ${value}`;
  }
  if (field.exclusiveMaximum !== null && value >= field.exclusiveMaximum) {
    return `must be less than ${field.exclusiveMaximum}, got ${value}`;
  }
  return null;
}

function checkString(field: FormField, value: string): string | null {
  if (field.minLength !== null && value.length < field.minLength) {
    return `needs at least ${plural(field.minLength, "character")}`;
  }
  if (field.maxLength !== null && value.length > field.maxLength) {
    return `has ${plural(value.length, "character")}; the maximum is ${field.maxLength}`;
  }
  if (field.pattern !== null && !new RegExp(field.pattern, "u").test(value)) {
    return `must match the pattern ${field.pattern}`;
  }
  return null;
}

type Parsed = { value: unknown } | { problem: string };

type EmptyValue = { raw: string } | { none: true } | { omit: true } | { problem: string };

/** Returns what an empty control means for the config. emptyFieldNote states the same rules in words. */
function emptyValue(field: FormField): EmptyValue {
  if (field.hasDefault) {
    // NOTE: a nullable field with a non-null default cannot be set to None from the form.
    if (field.default === null || field.default === undefined) return { none: true };
    // The default goes through the same checks as a typed value.
    return { raw: String(initialValue(field)) };
  }
  if (field.required) return { problem: "is required; the recipe has no default, so enter a value" };
  return { omit: true };
}

function parseValue(field: FormField, raw: string, knownModels: readonly string[]): Parsed {
  switch (field.kind) {
    case "model":
      if (knownModels.length > 0 && !knownModels.includes(raw)) {
        return { problem: `unknown model "${raw}"; pick one of ${knownModels.join(", ")}` };
      }
      return { value: raw };
    case "integer":
    case "number": {
      const value = Number(raw);
      if (raw.trim() === "" || Number.isNaN(value)) return { problem: `must be a number, got "${raw}"` };
      const problem = checkNumber(field, value);
      return problem ? { problem } : { value };
    }
    case "enum": {
      const index = Number(raw);
      if (!Number.isInteger(index) || index < 0 || index >= field.enumValues.length) {
        return { problem: `pick one of ${field.enumValues.map((option) => JSON.stringify(option)).join(", ")}` };
      }
      return { value: field.enumValues[index] };
    }
    case "json":
      try {
        return { value: JSON.parse(raw) };
      } catch (error) {
        return { problem: `is not valid JSON: ${error instanceof Error ? error.message : String(error)}` };
      }
    default: {
      const problem = checkString(field, raw);
      return problem ? { problem } : { value: raw };
    }
  }
}

/**
 * Builds the config a run receives from the form's values. An empty field with a default gets
 * that default written into the config, so the run records every value it used. An empty
 * required field is a problem. Returns every problem, not only the first.
 */
export function buildConfig(
  fields: readonly FormField[],
  values: Readonly<Record<string, FormValue>>,
  knownModels: readonly string[] = [],
): { config: Record<string, unknown>; problems: ConfigProblem[] } {
  const config: Record<string, unknown> = {};
  const problems: ConfigProblem[] = [];

  for (const field of fields) {
    const raw = values[field.name] ?? initialValue(field);
    if (typeof raw === "boolean") {
      config[field.name] = raw;
      continue;
    }
    const filled = raw === "" ? emptyValue(field) : { raw };
    if ("problem" in filled) {
      problems.push({ field: field.name, message: filled.problem });
      continue;
    }
    if ("none" in filled) {
      config[field.name] = null;
      continue;
    }
    if ("omit" in filled) continue;

    const parsed = parseValue(field, filled.raw, knownModels);
    if ("problem" in parsed) problems.push({ field: field.name, message: parsed.problem });
    else config[field.name] = parsed.value;
  }
  return { config, problems };
}
