// A recipe's input config as JSON Schema, from `python -m galley.run FILE --schema`, which
// loads the recipe without running it or contacting the engine.
import path from "node:path";

import { ApiError } from "../errors.js";
import type { InstallLayout } from "../layout.js";
import { pythonEnv, runPython, tail } from "../python.js";
import { parseRunError } from "./runner-output.js";

const SCHEMA_TIMEOUT_MS = 60_000;

/** Returns the schema; a recipe that cannot load is unprocessable, with the file and line. */
export async function recipeSchema(
  layout: InstallLayout,
  recipeFile: string,
  displayPath: string,
  api: { url: string; token: string } | null,
): Promise<Record<string, unknown>> {
  const env = pythonEnv(layout, api ? { GALLEY_API_URL: api.url, GALLEY_API_TOKEN: api.token } : {});
  const result = await runPython(layout, ["-m", "galley.run", recipeFile, "--schema"], {
    cwd: path.dirname(recipeFile),
    env,
    timeoutMs: SCHEMA_TIMEOUT_MS,
  });
  if (result.code === 0) {
    try {
      return JSON.parse(result.stdout) as Record<string, unknown>;
    } catch (error) {
      throw new ApiError("internal", `the runner printed a schema that is not valid JSON: ${(error as Error).message}`);
    }
  }
  const error = parseRunError(result.stderr, recipeFile, displayPath);
  if (result.code === 2 && error) {
    const where = error.file ? `${error.file}${error.line ? `:${error.line}` : ""}: ` : "";
    throw new ApiError("unprocessable", `${where}${error.message}`, { file: error.file, line: error.line });
  }
  const ending = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.code}`;
  throw new ApiError("internal", `reading the schema of ${displayPath} failed: the runner ${ending}\n${tail(result.stderr)}`);
}
