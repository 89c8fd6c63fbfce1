// The recipe check that runs before the engine is ready: `python -m galley.run RECIPE
// --config FILE --check` imports the recipe and validates its config (model keys included,
// through the registry API) without contacting the engine. It takes about a second, against
// the engine's ten or more, so a recipe that cannot load fails before any engine starts.
import { type ChildProcess, spawn } from "node:child_process";

export interface OutputChunk {
  stream: "stdout" | "stderr";
  chunk: Buffer;
}

export interface RecipeCheckResult {
  /** 0: the recipe loads and its config is valid; 2: it does not (docs/contracts.md); null: a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Error that kept the check from starting, or null. */
  spawnError: Error | null;
  /** stdout and stderr in the order they arrived, kept so that a passing check adds nothing to the run's output. */
  output: OutputChunk[];
}

export interface RecipeCheck {
  child: ChildProcess;
  done: Promise<RecipeCheckResult>;
}

export function startRecipeCheck(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): RecipeCheck {
  const child = spawn(command, [...args, "--check"], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  const output: OutputChunk[] = [];
  child.stdout!.on("data", (chunk: Buffer) => output.push({ stream: "stdout", chunk }));
  child.stderr!.on("data", (chunk: Buffer) => output.push({ stream: "stderr", chunk }));
  const done = new Promise<RecipeCheckResult>((resolve) => {
    let spawnError: Error | null = null;
    child.on("error", (error) => {
      spawnError = error;
    });
    child.on("close", (code, signal) => resolve({ code, signal, spawnError, output }));
  });
  return { child, done };
}
