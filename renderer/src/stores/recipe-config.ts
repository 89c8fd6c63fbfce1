// Each recipe's input-config schema (from `galley.run --schema`, through recipes.schema) and
// the values typed into its generated form.
import type { ApiErrorBody } from "@galley/common";
import { create } from "zustand";

import { ApiError, call, describeError } from "../api/client";
import { fieldsFromSchema, type FormField, type FormValue, type JsonSchema } from "../lib/schema-form";

export type SchemaState =
  | { status: "loading" }
  | { status: "ready"; schema: JsonSchema; fields: FormField[] }
  // The recipe could not be loaded; `body` carries the file and line when the runner gave them.
  | { status: "error"; message: string; body: ApiErrorBody | null };

interface RecipeConfigState {
  schemas: Record<string, SchemaState>;
  values: Record<string, Record<string, FormValue>>;
  loadSchema(path: string): Promise<SchemaState>;
  setValue(path: string, field: string, value: FormValue): void;
  setValues(path: string, values: Record<string, FormValue>): void;
}

export const useRecipeConfig = create<RecipeConfigState>()((set) => ({
  schemas: {},
  values: {},

  async loadSchema(path) {
    set((state) => ({ schemas: { ...state.schemas, [path]: { status: "loading" } } }));
    let next: SchemaState;
    try {
      const { schema } = await call("recipes.schema", { path });
      next = { status: "ready", schema, fields: fieldsFromSchema(schema) };
    } catch (error) {
      next = { status: "error", message: describeError(error), body: error instanceof ApiError ? error.body : null };
    }
    set((state) => ({ schemas: { ...state.schemas, [path]: next } }));
    return next;
  },

  setValue(path, field, value) {
    set((state) => ({ values: { ...state.values, [path]: { ...state.values[path], [field]: value } } }));
  },

  setValues(path, values) {
    set((state) => ({ values: { ...state.values, [path]: values } }));
  },
}));
