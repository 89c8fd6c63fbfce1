// Registry operations on models: import a folder, generate a tiny model, add an
// architecture-only entry, register a model a recipe saved, change defaults, remove.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

import {
  type ImportResult,
  type ModelDefaults,
  type ModelRecord,
  type ModelStorage,
  RegistryKey,
  type RegisterModelParams,
  type TinyFamily,
} from "../../common/index.js";
import { ApiError, conflict, invalidRequest } from "../errors.js";
import type { DataPaths, InstallLayout } from "../layout.js";
import type { Logger } from "../log.js";
import { runPython, tail } from "../python.js";
import type { ModelStore } from "../registry/model-store.js";
import { loadArchitecture } from "./architectures.js";
import { defaultDeployment } from "./facts.js";
import { type FolderInspection, inspectModelFolder } from "./inspect.js";

export interface ImportOptions {
  dir: string;
  key: string;
  name?: string | undefined;
  link?: boolean | undefined;
  baseKey?: string | undefined;
}

/** Placement of an imported folder: copied or moved (generated folders) into models/<key>/, or linked in place. */
type Placement = "copy" | "move" | "link";

const TINY_NAMES: Record<TinyFamily, string> = {
  "llama-3.1": "Tiny Llama 3.1 (random weights)",
  qwen3: "Tiny Qwen3 (random weights)",
};

// Generating a tiny model took about 25 s on a 2-core CPU, most of it importing torch; the
// limit leaves room for slower machines.
const MAKE_TINY_TIMEOUT_MS = 10 * 60 * 1000;

export class ModelService {
  constructor(
    readonly store: ModelStore,
    private readonly paths: DataPaths,
    private readonly layout: InstallLayout,
    private readonly log: Logger,
    private readonly onChange: (key: string) => void = () => {},
  ) {}

  /** Validates a key against the naming rules and checks that it is free. */
  checkNewKey(key: string): void {
    const parsed = RegistryKey.safeParse(key);
    if (!parsed.success) {
      throw invalidRequest(`invalid model key "${key}": ${parsed.error.issues.map((issue) => issue.message).join("; ")}`);
    }
    this.store.assertKeyFree(key);
  }

  private inspect(dir: string, baseKey?: string): FolderInspection {
    return inspectModelFolder(dir, {
      baseKey,
      findModel: (key) => this.store.find(key),
      listModels: () => this.store.list(),
    });
  }

  async importFolder(options: ImportOptions): Promise<ImportResult> {
    return this.importWith(options, options.link ? "link" : "copy", options.link ? "link" : "copy");
  }

  private async importWith(options: ImportOptions, placement: Placement, storage: ModelStorage): Promise<ImportResult> {
    const source = path.resolve(options.dir);
    this.checkNewKey(options.key);
    const inspection = this.inspect(source, options.baseKey);

    const folder = placement === "link" ? fs.realpathSync(source) : await this.placeFolder(source, options.key, placement);
    try {
      const record = this.store.insert({
        key: options.key,
        name: options.name ?? options.key,
        kind: inspection.kind,
        path: folder,
        base_key: inspection.baseKey,
        config: inspection.config,
        facts: inspection.facts,
        defaults: defaultDeployment(inspection.config),
        lineage: { parent_key: inspection.baseKey, run_id: null, recipe_hash: null, optim_step: null },
        storage,
      });
      this.log.info("registered model", { key: record.key, kind: record.kind, path: folder, storage });
      for (const warning of inspection.warnings) this.log.warn(warning, { key: record.key });
      this.onChange(record.key);
      return { model: record, warnings: inspection.warnings };
    } catch (error) {
      if (placement !== "link") await fs.promises.rm(folder, { recursive: true, force: true });
      throw error;
    }
  }

  /** Puts a folder at models/<key>/ atomically: a half-copied folder never has the final name. */
  private async placeFolder(source: string, key: string, placement: "copy" | "move"): Promise<string> {
    const target = path.join(this.paths.models, key);
    if (fs.existsSync(target)) {
      throw conflict(`${target} already exists but is not registered; delete it or choose another key`);
    }
    let staged = source;
    if (placement === "copy") {
      staged = path.join(this.paths.models, `.import-${key}-${crypto.randomBytes(4).toString("hex")}`);
      this.log.info("copying model folder", { key, from: source, to: target });
      await fs.promises.cp(source, staged, {
        recursive: true,
        dereference: true,
        errorOnExist: true,
        filter: (file) => !/[\\/](\.git|\.cache)$/.test(file),
      });
    }
    try {
      await fs.promises.rename(staged, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EXDEV" && placement === "move") {
        await fs.promises.cp(source, target, { recursive: true, errorOnExist: true });
        await fs.promises.rm(source, { recursive: true, force: true });
        return target;
      }
      if (placement === "copy") await fs.promises.rm(staged, { recursive: true, force: true });
      if (code === "ENOTEMPTY" || code === "EEXIST") throw conflict(`${target} appeared while importing "${key}"`);
      throw error;
    }
    return target;
  }

  /** Generates a small random-initialized model with `python -m galley.models.tiny` and registers it. */
  async makeTiny(family: TinyFamily, key: string, options: { name?: string; seed?: number } = {}): Promise<ImportResult> {
    this.checkNewKey(key);
    const out = path.join(this.paths.tmp, `tiny-${key}-${crypto.randomBytes(4).toString("hex")}`);
    const args = ["-m", "galley.models.tiny", "--family", family, "--out", out];
    if (options.seed !== undefined) args.push("--seed", String(options.seed));

    this.log.info("generating tiny model", { key, family });
    try {
      const result = await runPython(this.layout, args, { timeoutMs: MAKE_TINY_TIMEOUT_MS });
      if (result.code !== 0) {
        throw new ApiError(
          "internal",
          `generating the tiny ${family} model failed (exit ${result.code ?? result.signal}):\n${tail(result.stderr)}`,
        );
      }
      return await this.importWith({ dir: out, key, name: options.name ?? TINY_NAMES[family] }, "move", "generated");
    } finally {
      await fs.promises.rm(out, { recursive: true, force: true });
    }
  }

  /** Registers an architecture-only entry from resources/architectures/<name>/config.json. */
  addArchitecture(name: string, key?: string): ModelRecord {
    const architecture = loadArchitecture(this.layout.resourcesDir, name);
    const finalKey = key ?? architecture.key;
    this.checkNewKey(finalKey);
    const record = this.store.insert({
      key: finalKey,
      name: architecture.displayName,
      kind: "architecture",
      path: null,
      base_key: null,
      config: architecture.config,
      facts: architecture.facts,
      defaults: defaultDeployment(architecture.config),
      lineage: { parent_key: null, run_id: null, recipe_hash: null, optim_step: null },
      storage: "none",
    });
    this.log.info("registered architecture-only model", { key: finalKey, architecture: name });
    this.onChange(finalKey);
    return record;
  }

  /** Registers a folder that a recipe's save() wrote (POST /api/internal/models). */
  register(params: RegisterModelParams): ModelRecord {
    this.checkNewKey(params.key);
    if (!path.isAbsolute(params.path)) {
      throw invalidRequest(`path "${params.path}" must be absolute`);
    }
    const inspection = this.inspect(params.path, params.adapter_base_key ?? undefined);
    if ((params.kind === "adapter") !== (inspection.kind === "adapter")) {
      throw new ApiError(
        "unprocessable",
        `kind "${params.kind}" does not match the folder ${params.path}, which holds ${inspection.kind === "adapter" ? "an adapter" : "full weights"}`,
      );
    }
    const inside = path.resolve(params.path).startsWith(path.resolve(this.paths.models) + path.sep);
    const record = this.store.insert({
      key: params.key,
      name: params.name ?? params.key,
      kind: params.kind,
      path: path.resolve(params.path),
      base_key: inspection.baseKey,
      config: inspection.config,
      facts: inspection.facts,
      defaults: this.inheritedDefaults(params.parent_key ?? null, inspection),
      lineage: {
        parent_key: params.parent_key ?? null,
        run_id: params.run_id ?? null,
        recipe_hash: params.recipe_hash ?? null,
        optim_step: params.optim_step ?? null,
      },
      storage: inside ? "saved" : "link",
    });
    this.log.info("registered saved model", { key: record.key, kind: record.kind, parent: params.parent_key, run: params.run_id });
    this.onChange(record.key);
    return record;
  }

  /** Returns the parent's deployment defaults for a saved model (the person may have tuned them), else the config's. */
  private inheritedDefaults(parentKey: string | null, inspection: FolderInspection): ModelDefaults {
    const parent = parentKey ? this.store.find(parentKey) : null;
    return parent ? parent.defaults : defaultDeployment(inspection.config);
  }

  setDefaults(key: string, changes: Partial<ModelDefaults>): ModelRecord {
    const record = this.store.setDefaults(key, changes);
    this.log.info("changed model defaults", { key, ...changes });
    this.onChange(key);
    return record;
  }

  /** Unregisters a model; deletes its folder only when the registry owns it. */
  async remove(key: string): Promise<{ key: string; deleted_files: boolean }> {
    const record = this.store.get(key);
    const dependents = this.store.dependents(key);
    if (dependents.length > 0) {
      throw conflict(`model "${key}" is the base of ${dependents.join(", ")}; remove those first`);
    }
    this.store.delete(key);
    const owned = record.storage === "copy" || record.storage === "generated" || record.storage === "saved";
    const inside = record.path !== null && path.resolve(record.path).startsWith(path.resolve(this.paths.models) + path.sep);
    const deleteFiles = owned && inside;
    if (deleteFiles) await fs.promises.rm(record.path!, { recursive: true, force: true });
    this.log.info("removed model", { key, deleted_files: deleteFiles });
    this.onChange(key);
    return { key, deleted_files: deleteFiles };
  }
}
