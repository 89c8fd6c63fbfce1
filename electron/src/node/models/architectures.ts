// Architecture-only entries: config.json files of public models shipped in
// resources/architectures/, listed in its index.json with their default registry key.
import fs from "node:fs";
import path from "node:path";

import type { ModelFacts } from "../../common/index.js";
import { ApiError, notFound } from "../errors.js";
import { buildFacts, type ConfigJson, parametersFromConfig } from "./facts.js";

interface IndexEntry {
  key: string;
  display_name?: string;
  config?: string;
}

export interface Architecture {
  name: string;
  key: string;
  displayName: string;
  config: ConfigJson;
  facts: ModelFacts;
}

function readIndex(resourcesDir: string): Record<string, IndexEntry> {
  const file = path.join(resourcesDir, "architectures", "index.json");
  let parsed: { architectures?: Record<string, IndexEntry> };
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8")) as typeof parsed;
  } catch (error) {
    throw new ApiError("internal", `cannot read ${file}: ${(error as Error).message}`);
  }
  return parsed.architectures ?? {};
}

export function listArchitectures(resourcesDir: string): string[] {
  return Object.keys(readIndex(resourcesDir)).sort();
}

/** Finds an architecture by its folder name (any case) or by its default registry key. */
export function loadArchitecture(resourcesDir: string, name: string): Architecture {
  const index = readIndex(resourcesDir);
  const wanted = name.toLowerCase();
  const match = Object.entries(index).find(
    ([folder, entry]) => folder.toLowerCase() === wanted || entry.key === wanted,
  );
  if (!match) {
    throw notFound(`unknown architecture "${name}"; available: ${Object.keys(index).sort().join(", ")}`);
  }
  const [folder, entry] = match;
  const configFile = path.join(resourcesDir, "architectures", entry.config ?? path.join(folder, "config.json"));
  const config = JSON.parse(fs.readFileSync(configFile, "utf8")) as ConfigJson;

  const parameters = parametersFromConfig(config);
  if (parameters === null) {
    throw new ApiError(
      "unprocessable",
      `cannot count the parameters of ${folder} (model_type ${String(config.model_type)}) from its config; ` +
        "architecture-only entries support the llama, mistral, qwen2 and qwen3 families",
    );
  }
  return {
    name: folder,
    key: entry.key,
    displayName: entry.display_name ?? folder,
    config,
    facts: buildFacts(config, { parameters }),
  };
}
