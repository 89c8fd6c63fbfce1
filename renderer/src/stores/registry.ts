// The model and dataset registry as the control plane stores it.
import type { DatasetRecord, ModelDefaults, ModelRecord } from "@galley/common";
import { create } from "zustand";

import { call } from "../api/client";

interface RegistryState {
  models: ModelRecord[];
  datasets: DatasetRecord[];
  loaded: boolean;
  load(): Promise<void>;
  setDefaults(key: string, defaults: Partial<ModelDefaults>): Promise<ModelRecord>;
  importModel(dir: string, key: string, link: boolean): Promise<string[]>;
  importDataset(file: string, key: string): Promise<DatasetRecord>;
}

export const useRegistry = create<RegistryState>()((set, get) => ({
  models: [],
  datasets: [],
  loaded: false,

  async load() {
    const [models, datasets] = await Promise.all([call("models.list", {}), call("datasets.list", {})]);
    set({ models: models.models, datasets: datasets.datasets, loaded: true });
  },

  async setDefaults(key, defaults) {
    const model = await call("models.setDefaults", { key, ...defaults });
    set((state) => ({ models: state.models.map((existing) => (existing.key === key ? model : existing)) }));
    return model;
  },

  async importModel(dir, key, link) {
    const result = await call("models.import", { dir, key, link });
    await get().load();
    return result.warnings;
  },

  async importDataset(file, key) {
    const dataset = await call("datasets.import", { file, key });
    await get().load();
    return dataset;
  },
}));

/** Models a recipe can spawn: everything with weights on disk. */
export function spawnableModels(models: ModelRecord[]): ModelRecord[] {
  return models.filter((model) => model.kind !== "architecture");
}
