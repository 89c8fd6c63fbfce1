// The `galley` command line.
import { Command } from "commander";

import { registerBenchCommand } from "./commands/bench.js";
import { registerGpusCommand } from "./commands/gpus.js";
import { registerModelCommands } from "./commands/models.js";
import { registerRunCommand } from "./commands/run.js";
import { registerRunsCommands } from "./commands/runs.js";
import { registerServeCommand } from "./commands/serve.js";
import { type GlobalOptions, reportError } from "./context.js";

export function buildProgram(): Command {
  const program = new Command("galley")
    .description("Galley: write and run LLM training and inference recipes on local GPUs")
    .option("--home <dir>", "data directory (default: GALLEY_HOME, else the per-OS application data folder)")
    .option("--verbose", "print debug logs")
    .showHelpAfterError("(run `galley --help` for the commands and options)")
    .exitOverride();
  const global = () => program.opts<GlobalOptions>();

  registerServeCommand(program, global);
  registerRunCommand(program, global);
  registerModelCommands(program, global);
  registerRunsCommands(program, global);
  registerGpusCommand(program, global);
  registerBenchCommand(program);
  return program;
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    const commanderCode = (error as { code?: string }).code;
    if (typeof commanderCode === "string" && commanderCode.startsWith("commander.")) {
      // Commander has printed the usage error or the help text already.
      const helpCodes = ["commander.helpDisplayed", "commander.version", "commander.help"];
      return helpCodes.includes(commanderCode) ? 0 : 2;
    }
    return reportError(error);
  }
}
