// The models table: typed access to registry records.
import type { ModelDefaults, ModelFacts, ModelKind, ModelRecord, ModelStorage } from "../../common/index.js";
import type { Db } from "../db/database.js";
import { conflict, notFound } from "../errors.js";

interface ModelRow {
  key: string;
  name: string;
  kind: ModelKind;
  path: string | null;
  storage: ModelStorage;
  base_key: string | null;
  config_json: string;
  facts_json: string;
  kv_cache_len: number;
  tokens_to_generate: number;
  tp: number;
  parent_key: string | null;
  run_id: string | null;
  recipe_hash: string | null;
  optim_step: number | null;
  created_at: string;
}

function toRecord(row: ModelRow): ModelRecord {
  return {
    key: row.key,
    name: row.name,
    kind: row.kind,
    path: row.path,
    base_key: row.base_key,
    config: JSON.parse(row.config_json) as Record<string, unknown>,
    facts: JSON.parse(row.facts_json) as ModelFacts,
    defaults: { kv_cache_len: row.kv_cache_len, tokens_to_generate: row.tokens_to_generate, tp: row.tp },
    lineage: {
      parent_key: row.parent_key,
      run_id: row.run_id,
      recipe_hash: row.recipe_hash,
      optim_step: row.optim_step,
    },
    storage: row.storage,
    created_at: row.created_at,
  };
}

export type NewModel = Omit<ModelRecord, "created_at">;

export class ModelStore {
  constructor(private readonly db: Db) {}

  list(): ModelRecord[] {
    const rows = this.db.prepare("SELECT * FROM models ORDER BY created_at DESC, key").all() as ModelRow[];
    return rows.map(toRecord);
  }

  keys(): string[] {
    const rows = this.db.prepare("SELECT key FROM models ORDER BY key").all() as { key: string }[];
    return rows.map((row) => row.key);
  }

  count(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM models").get() as { n: number }).n;
  }

  find(key: string): ModelRecord | null {
    const row = this.db.prepare("SELECT * FROM models WHERE key = ?").get(key) as ModelRow | undefined;
    return row ? toRecord(row) : null;
  }

  /** Returns the model, or throws not_found listing the known keys. */
  get(key: string): ModelRecord {
    const record = this.find(key);
    if (!record) throw this.unknownKey(key);
    return record;
  }

  unknownKey(key: string) {
    const known = this.keys();
    const listing = known.length > 0 ? known.join(", ") : "none; import one with `galley models import`";
    return notFound(`unknown model key "${key}"; known keys: ${listing}`, { known_keys: known });
  }

  /** Throws conflict if the key is taken. */
  assertKeyFree(key: string): void {
    if (this.find(key)) {
      throw conflict(`model key "${key}" is already registered; choose another key or remove it first`);
    }
  }

  insert(model: NewModel): ModelRecord {
    this.assertKeyFree(model.key);
    this.db
      .prepare(
        `INSERT INTO models (key, name, kind, path, storage, base_key, config_json, facts_json,
           kv_cache_len, tokens_to_generate, tp, parent_key, run_id, recipe_hash, optim_step, created_at)
         VALUES (@key, @name, @kind, @path, @storage, @base_key, @config_json, @facts_json,
           @kv_cache_len, @tokens_to_generate, @tp, @parent_key, @run_id, @recipe_hash, @optim_step, @created_at)`,
      )
      .run({
        key: model.key,
        name: model.name,
        kind: model.kind,
        path: model.path,
        storage: model.storage,
        base_key: model.base_key,
        config_json: JSON.stringify(model.config),
        facts_json: JSON.stringify(model.facts),
        ...model.defaults,
        ...model.lineage,
        created_at: new Date().toISOString(),
      });
    return this.get(model.key);
  }

  setDefaults(key: string, changes: Partial<ModelDefaults>): ModelRecord {
    const current = this.get(key);
    const next = { ...current.defaults, ...changes };
    this.db
      .prepare("UPDATE models SET kv_cache_len = ?, tokens_to_generate = ?, tp = ? WHERE key = ?")
      .run(next.kv_cache_len, next.tokens_to_generate, next.tp, key);
    return this.get(key);
  }

  /** Keys of the models that name this one as their base. */
  dependents(key: string): string[] {
    const rows = this.db.prepare("SELECT key FROM models WHERE base_key = ? ORDER BY key").all(key) as {
      key: string;
    }[];
    return rows.map((row) => row.key);
  }

  delete(key: string): void {
    this.db.prepare("DELETE FROM models WHERE key = ?").run(key);
  }
}
