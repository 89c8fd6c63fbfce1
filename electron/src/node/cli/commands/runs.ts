// `galley runs ...`: run history from the registry.
import type { Command } from "commander";

import { RunStatus } from "../../../common/index.js";
import { CliError, type GlobalOptions, openControlPlane, parsePositiveInt } from "../context.js";
import { table } from "../format.js";
import { describeRunEvent } from "./run.js";

function duration(started: string | null, ended: string | null): string {
  if (!started) return "-";
  const ms = (ended ? Date.parse(ended) : Date.now()) - Date.parse(started);
  return `${(ms / 1000).toFixed(1)} s`;
}

export function registerRunsCommands(program: Command, global: () => GlobalOptions): void {
  const runs = program.command("runs").description("inspect past runs");

  runs
    .command("list")
    .description("list runs, newest first")
    .option("--limit <n>", "number of runs", "20")
    .option("--status <status>", `only runs with this status: ${RunStatus.options.join(", ")}`)
    .action((options: { limit: string; status?: string }) => {
      const status = options.status === undefined ? undefined : RunStatus.safeParse(options.status);
      if (status && !status.success) throw new CliError(`unknown status "${options.status}"; use ${RunStatus.options.join(", ")}`, 2);
      const plane = openControlPlane(global(), "warn");
      try {
        const records = plane.runStore.list(parsePositiveInt(options.limit, "--limit"), status?.data);
        const rows = records.map((run) => [
          run.id,
          run.status,
          run.exit_code === null ? "-" : String(run.exit_code),
          duration(run.started_at, run.ended_at),
          run.recipe_path,
          run.error ? `${run.error.file ? `${run.error.file}:${run.error.line}: ` : ""}${run.error.message.split("\n")[0]}` : "",
        ]);
        process.stdout.write(`${table(["ID", "STATUS", "EXIT", "DURATION", "RECIPE", "ERROR"], rows)}\n`);
      } finally {
        plane.db.close();
      }
    });

  runs
    .command("show <id>")
    .description("print a run's record and its output and events")
    .action((id: string) => {
      const plane = openControlPlane(global(), "warn");
      try {
        const run = plane.runStore.detail(id);
        const { recipe_source: _source, ...record } = run;
        process.stdout.write(`${JSON.stringify(record, null, 2)}\n--- output and events\n`);
        for (const event of plane.runStore.events(id, -1, 1_000_000)) {
          if (event.type === "stdout" || event.type === "stderr") process.stdout.write(String(event.payload.text));
          else {
            const line = describeRunEvent(event);
            if (line) process.stdout.write(`${line}\n`);
          }
        }
      } finally {
        plane.db.close();
      }
    });
}
