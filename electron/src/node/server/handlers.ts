// The handler of every API method, on top of the control plane's services.
import path from "node:path";

import type { EngineStatus } from "../../common/index.js";
import type { ControlPlane } from "../control-plane.js";
import { ApiError } from "../errors.js";
import { recipeSchema } from "../runs/recipe-schema.js";
import type { Handlers } from "./dispatcher.js";

export function createHandlers(plane: ControlPlane): Handlers {
  const models = plane.models;
  const store = plane.models.store;

  const engineStatus = (): EngineStatus =>
    plane.engine?.status() ?? {
      state: "stopped",
      url: null,
      pid: null,
      restarts: 0,
      started_at: null,
      last_error: null,
      log_path: plane.paths.engineLog,
      devices: plane.options.devices ?? null,
    };

  return {
    "models.list": () => ({ models: store.list() }),
    "models.get": ({ key }) => store.get(key),
    "models.setDefaults": ({ key, ...changes }) => models.setDefaults(key, changes),
    "models.import": (params) =>
      models.importFolder({ dir: params.dir, key: params.key, name: params.name, link: params.link, baseKey: params.base_key }),
    "models.makeTiny": (params) =>
      models.makeTiny(params.family, params.key, {
        ...(params.name ? { name: params.name } : {}),
        ...(params.seed !== undefined ? { seed: params.seed } : {}),
      }),
    "models.addArchitecture": ({ name, key }) => models.addArchitecture(name, key),
    "models.remove": ({ key }) => models.remove(key),
    "datasets.list": () => ({ datasets: plane.datasets.store.list() }),
    "datasets.import": ({ file, key, name }) => plane.datasets.importFile(file, key, name),

    "workspace.info": () => ({ root: plane.workspace.root }),
    "workspace.list": () => ({ entries: plane.workspace.list() }),
    "workspace.read": ({ path: file }) => plane.workspace.read(file),
    "workspace.write": ({ path: file, content }) => plane.workspace.write(file, content),
    "workspace.create": ({ path: file, content }) => plane.workspace.create(file, content),
    "workspace.rename": ({ from, to }) => plane.workspace.rename(from, to),
    "workspace.delete": ({ path: file }) => plane.workspace.remove(file),
    "recipes.schema": async ({ path: file }) => {
      const absolute = plane.workspace.resolve(file);
      plane.workspace.read(file); // not_found for a missing file, before starting Python
      const schema = await recipeSchema(plane.layout, absolute, file, plane.apiAddress());
      return { path: file, schema };
    },

    "runs.start": (params, caller) => {
      // A browser runs workspace files only. The local token (serve.json, readable only by
      // the data directory's owner) may also run an absolute path anywhere, as `galley run` does.
      if (caller !== "local" || !path.isAbsolute(params.recipe_path)) plane.workspace.resolve(params.recipe_path);
      return plane.runs.startRun(params);
    },
    "runs.list": ({ limit, status }) => ({ runs: plane.runStore.list(limit, status) }),
    "runs.get": ({ id }) => plane.runStore.detail(id),
    "runs.events": ({ id, after_seq, limit }) => {
      plane.runStore.get(id);
      return { events: plane.runStore.events(id, after_seq, limit) };
    },
    "runs.cancel": ({ id, signal }) => plane.runs.cancel(id, signal),

    "engine.status": engineStatus,
    "telemetry.snapshot": () => ({ telemetry: plane.engine?.history.latest() ?? null }),
    "telemetry.history": ({ since }) => ({ samples: plane.engine?.history.since(since) ?? [] }),
    "spawns.release": ({ id }) => plane.releaseSpawn(id),

    "internal.models.list": () => ({ models: store.list() }),
    "internal.models.get": ({ key }) => store.get(key),
    "internal.models.register": (params) => {
      if (!path.isAbsolute(params.path)) throw new ApiError("invalid_request", `path "${params.path}" must be absolute`);
      return models.register(params);
    },
  };
}
