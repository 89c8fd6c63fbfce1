// Locations of Galley's files: the data directory (docs/contracts.md) and the installed parts
// (engine Python package, resources, built renderer).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export interface DataPaths {
  home: string;
  db: string;
  models: string;
  runs: string;
  logs: string;
  engineLog: string;
  controlPlaneLog: string;
  workspace: string;
  tmp: string;
}

/** GALLEY_HOME, else the per-OS application data folder. */
export function resolveDataHome(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string {
  if (env.GALLEY_HOME) return path.resolve(env.GALLEY_HOME);
  const home = os.homedir();
  if (platform === "darwin") return path.join(home, "Library", "Application Support", "Galley");
  if (platform === "win32") return path.join(env.APPDATA ?? path.join(home, "AppData", "Roaming"), "Galley");
  return path.join(env.XDG_DATA_HOME ?? path.join(home, ".local", "share"), "galley");
}

export function dataPaths(home: string): DataPaths {
  return {
    home,
    db: path.join(home, "galley.db"),
    models: path.join(home, "models"),
    runs: path.join(home, "runs"),
    logs: path.join(home, "logs"),
    engineLog: path.join(home, "logs", "engine.log"),
    controlPlaneLog: path.join(home, "logs", "galley.log"),
    workspace: path.join(home, "workspace"),
    tmp: path.join(home, "tmp"),
  };
}

export function ensureDataDirectories(paths: DataPaths): void {
  for (const dir of [paths.home, paths.models, paths.runs, paths.logs, paths.tmp]) {
    fs.mkdirSync(dir, { recursive: true });
  }
}

export interface InstallLayout {
  /** The folder containing galley/ and adaptive_harmony/; PYTHONPATH for every Python child. */
  engineDir: string;
  /** recipes/ and architectures/. */
  resourcesDir: string;
  /** The built renderer (index.html and assets). */
  rendererDist: string;
  /** The engine's Python interpreter. */
  python: string;
}

/** Walks up from this file to the checkout root, the folder that contains engine/galley/. */
function findCheckoutRoot(start: string): string | null {
  let dir = start;
  for (;;) {
    if (fs.existsSync(path.join(dir, "engine", "galley", "__init__.py"))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

/**
 * Resolves the installed parts. In a checkout they sit beside electron/. A packaged app sets
 * GALLEY_ENGINE_DIR, GALLEY_RESOURCES_DIR and GALLEY_RENDERER_DIR; GALLEY_PYTHON overrides
 * the interpreter everywhere.
 */
export function resolveLayout(env: NodeJS.ProcessEnv = process.env): InstallLayout {
  const root = findCheckoutRoot(__dirname);
  const fromRoot = (...parts: string[]) => (root ? path.join(root, ...parts) : null);

  const engineDir = env.GALLEY_ENGINE_DIR ?? fromRoot("engine");
  const resourcesDir = env.GALLEY_RESOURCES_DIR ?? fromRoot("resources");
  const rendererDist = env.GALLEY_RENDERER_DIR ?? fromRoot("renderer", "dist");
  if (!engineDir || !resourcesDir || !rendererDist) {
    throw new Error(
      `cannot find Galley's engine/ folder above ${__dirname}; ` +
        "set GALLEY_ENGINE_DIR, GALLEY_RESOURCES_DIR and GALLEY_RENDERER_DIR",
    );
  }
  const venvPython =
    process.platform === "win32"
      ? path.join(engineDir, ".venv", "Scripts", "python.exe")
      : path.join(engineDir, ".venv", "bin", "python");
  return { engineDir, resourcesDir, rendererDist, python: env.GALLEY_PYTHON ?? venvPython };
}
