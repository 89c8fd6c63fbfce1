// `galley run RECIPE`: runs one recipe and exits with the runner's exit code (see EXIT_CODES).
// Ctrl-C, SIGTERM and SIGHUP (a closed terminal) cancel the run. The run goes through a server and its
// engine when `galley serve` or the app runs on the same data directory (serve.json) or
// GALLEY_URL is set. Otherwise it gets an in-process control plane and engine.
import fs from "node:fs";
import path from "node:path";

import type { Command } from "commander";

import { resolveDataHome } from "../../layout.js";
import { CliError, EXIT_SERVER_UNREACHABLE, type GlobalOptions } from "../context.js";
import { type EngineSettings, type RunRequest, runInProcess } from "../run-local.js";
import { runOnServer } from "../run-remote.js";
import { findServer, type ServerAccess } from "../server-access.js";

export { describeRunEvent, exitCodeOf } from "../run-output.js";

interface RunOptions {
  config?: string;
  dryRun?: boolean;
  devices?: string;
  keepWarm?: string;
  standalone?: boolean;
}

function readConfig(file: string | undefined): Record<string, unknown> {
  if (!file) return {};
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    throw new CliError(`config file ${file} does not exist`, 2);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new CliError(`config file ${file} is not valid JSON: ${(error as Error).message}`, 2);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CliError(`config file ${file} must contain a JSON object of config fields`, 2);
  }
  return value as Record<string, unknown>;
}

function engineSettings(options: RunOptions): EngineSettings {
  const keepWarm = options.keepWarm === undefined ? null : Number(options.keepWarm);
  if (keepWarm !== null && !(keepWarm >= 0)) throw new CliError(`--keep-warm must be a number of seconds, got "${options.keepWarm}"`, 2);
  return { devices: options.devices ?? null, keepWarm };
}

/** Rejects engine flags for a server, whose engine was configured when it started. */
export function rejectEngineFlags(server: ServerAccess, flags: Record<string, unknown>): void {
  const conflicting = Object.entries(flags)
    .filter(([, value]) => value !== undefined)
    .map(([flag]) => flag);
  if (conflicting.length === 0) return;
  const names = conflicting.join(" and ");
  throw new CliError(
    `${names} cannot apply: this command uses ${server.source} at ${server.url}, whose engine is already configured; ` +
      `drop ${names}, restart \`galley serve\` with ${conflicting.length > 1 ? "them" : "it"}, or pass --standalone to start a separate engine`,
    2,
  );
}

/** Warns that --standalone starts a second engine next to a live server's. */
export async function warnIfServerRuns(home: string): Promise<void> {
  const server = await findServer(home, {}).catch(() => null);
  if (!server) return;
  process.stderr.write(
    `galley: warning: ${server.source} is running on this data directory; --standalone starts a second engine, ` +
      "and each engine admits spawns without counting the other's\n",
  );
}

async function runRecipe(recipe: string, options: RunOptions, global: GlobalOptions): Promise<number> {
  const recipePath = path.resolve(recipe);
  if (!fs.existsSync(recipePath)) throw new CliError(`recipe ${recipe} does not exist`, 2);
  const request: RunRequest = {
    recipe,
    recipePath,
    configFile: options.config,
    config: readConfig(options.config),
    dryRun: options.dryRun ?? false,
  };
  const engine = engineSettings(options);
  const home = global.home ?? resolveDataHome();

  if (options.standalone) {
    await warnIfServerRuns(home);
    return runInProcess(request, engine, global);
  }
  const server = await findServer(home);
  if (!server) return runInProcess(request, engine, global);
  rejectEngineFlags(server, { "--devices": options.devices, "--keep-warm": options.keepWarm });
  return runOnServer(request, server);
}

const EXIT_CODES = `Exit codes:
  0    the recipe returned
  1    the recipe raised (its traceback and an "error: FILE:LINE: message" line are printed)
  2    the recipe, its config or the command line could not be used; nothing of the recipe ran
  ${EXIT_SERVER_UNREACHABLE}    the Galley server (GALLEY_URL or serve.json) could not be reached, or the
       connection to it was lost before the run ended
  130  cancelled by Ctrl-C (SIGINT); 143 by SIGTERM; 129 by SIGHUP (the terminal closed).
       A run cancelled elsewhere (workbench, \`galley runs cancel\`) exits 143.
       The run's record stores the same exit code with status "cancelled".`;

export function registerRunCommand(program: Command, global: () => GlobalOptions): void {
  program
    .command("run <recipe>")
    .description(
      "run a recipe file and exit with its exit code (0 ok, 1 raised, 2 could not load, 3 server unreachable, 130 cancelled); " +
        "goes through `galley serve` when it runs on this data directory or GALLEY_URL is set, else starts its own engine",
    )
    .addHelpText("after", `\n${EXIT_CODES}`)
    .option("--config <file>", "JSON file with the recipe's input config")
    .option("--dry-run", "plan every spawn and stop before the first compute call")
    .option("--devices <spec>", 'virtual devices for an own engine, e.g. "4x80GiB" (not with a running server)')
    .option("--keep-warm <seconds>", "how long an own engine keeps a finished session's spawns (not with a running server)")
    .option("--standalone", "start an own control plane and engine even while `galley serve` runs")
    .action(async (recipe: string, options: RunOptions) => {
      process.exitCode = await runRecipe(recipe, options, global());
    });
}
