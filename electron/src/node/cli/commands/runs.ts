// `galley runs ...`: run history and cancelling, through the running server when there is one
// (serve.json or GALLEY_URL), else on the registry in the data directory.
import type { Command } from "commander";

import { type Run, type RunDetail, type RunEvent, RunStatus, TERMINAL_RUN_STATUSES } from "../../../common/index.js";
import { resolveDataHome } from "../../layout.js";
import { CliError, type GlobalOptions, openControlPlane, parsePositiveInt } from "../context.js";
import { table } from "../format.js";
import { describeCancelledRecord, describeRunEvent, dropRunnerCancelLine, localizer, snapshotNames } from "../run-output.js";
import { callServer, findServer, type ServerAccess } from "../server-access.js";

// Every event of a run, as far as one request returns them (the API's maximum).
const MAX_EVENTS = 100_000;
// How long `runs cancel` waits for the run to end: the run manager's SIGTERM-to-SIGKILL grace
// (5 s by default) plus time for the runner to exit.
const CANCEL_WAIT_MS = 15_000;
const CANCEL_POLL_MS = 200;

/** Reads run history from a server, or from the data directory's registry. */
interface RunHistory {
  list(limit: number, status: RunStatus | undefined): Promise<Run[]>;
  detail(id: string): Promise<RunDetail>;
  events(id: string): Promise<RunEvent[]>;
  cancel(id: string): Promise<Run>;
  close(): void;
}

function serverHistory(server: ServerAccess): RunHistory {
  return {
    list: async (limit, status) => {
      const query = new URLSearchParams({ limit: String(limit), ...(status ? { status } : {}) });
      return (await callServer<{ runs: Run[] }>(server, "GET", `/api/runs?${query.toString()}`)).runs;
    },
    detail: (id) => callServer<RunDetail>(server, "GET", `/api/runs/${encodeURIComponent(id)}`),
    events: async (id) =>
      (await callServer<{ events: RunEvent[] }>(server, "GET", `/api/runs/${encodeURIComponent(id)}/events?after_seq=-1&limit=${MAX_EVENTS}`))
        .events,
    cancel: (id) => callServer<Run>(server, "POST", `/api/runs/${encodeURIComponent(id)}/cancel`, {}),
    close: () => {},
  };
}

function registryHistory(global: GlobalOptions): RunHistory {
  const plane = openControlPlane(global, "warn");
  return {
    list: (limit, status) => Promise.resolve(plane.runStore.list(limit, status)),
    detail: (id) => Promise.resolve(plane.runStore.detail(id)),
    events: (id) => Promise.resolve(plane.runStore.events(id, -1, MAX_EVENTS)),
    // This control plane runs nothing, so its run manager rejects every cancel with the run's
    // status: ended, or active in another galley process that serves no API.
    cancel: (id) => Promise.resolve().then(() => plane.runs.cancel(id)),
    close: () => plane.db.close(),
  };
}

async function openHistory(global: GlobalOptions): Promise<RunHistory> {
  const server = await findServer(global.home ?? resolveDataHome());
  return server ? serverHistory(server) : registryHistory(global);
}

function duration(started: string | null, ended: string | null): string {
  if (!started) return "-";
  const ms = (ended ? Date.parse(ended) : Date.now()) - Date.parse(started);
  return `${(ms / 1000).toFixed(1)} s`;
}

async function listRuns(options: { limit: string; status?: string }, global: GlobalOptions): Promise<void> {
  const status = options.status === undefined ? undefined : RunStatus.safeParse(options.status);
  if (status && !status.success) throw new CliError(`unknown status "${options.status}"; use ${RunStatus.options.join(", ")}`, 2);
  const limit = parsePositiveInt(options.limit, "--limit");
  const history = await openHistory(global);
  try {
    const records = await history.list(limit, status?.data);
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
    history.close();
  }
}

async function showRun(id: string, global: GlobalOptions): Promise<void> {
  const history = await openHistory(global);
  try {
    const { recipe_source: _source, ...record } = await history.detail(id);
    process.stdout.write(`${JSON.stringify(record, null, 2)}\n--- output and events\n`);
    // Tracebacks name the run's snapshot of the recipe; show the recipe's own path instead.
    const localize = localizer(snapshotNames(record.run_dir, record.recipe_path, undefined));
    for (const event of await history.events(id)) {
      if (event.type === "stdout") process.stdout.write(localize(String(event.payload.text)));
      else if (event.type === "stderr") {
        const text = String(event.payload.text);
        process.stdout.write(localize(record.status === "cancelled" ? dropRunnerCancelLine(text) : text));
      } else {
        const line = describeRunEvent(event);
        if (line) process.stdout.write(`${localize(line)}\n`);
      }
    }
    if (record.status === "cancelled") process.stdout.write(`--- run ${id} ${describeCancelledRecord(record)}\n`);
  } finally {
    history.close();
  }
}

/** Cancels a run and waits until it has ended, or until CANCEL_WAIT_MS have passed. */
async function cancelRun(id: string, global: GlobalOptions): Promise<void> {
  const history = await openHistory(global);
  try {
    await history.cancel(id);
    const deadline = Date.now() + CANCEL_WAIT_MS;
    for (;;) {
      const run = await history.detail(id);
      if (TERMINAL_RUN_STATUSES.includes(run.status)) {
        process.stdout.write(`run ${id} ${run.status}${run.exit_code === null ? "" : ` (exit code ${run.exit_code})`}\n`);
        return;
      }
      if (Date.now() > deadline) {
        process.stdout.write(`run ${id} is still ${run.status} after ${CANCEL_WAIT_MS / 1000} s; check it with \`galley runs show ${id}\`\n`);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, CANCEL_POLL_MS));
    }
  } finally {
    history.close();
  }
}

export function registerRunsCommands(program: Command, global: () => GlobalOptions): void {
  const runs = program.command("runs").description("inspect and cancel runs");

  runs
    .command("list")
    .description("list runs, newest first")
    .option("--limit <n>", "number of runs", "20")
    .option("--status <status>", `only runs with this status: ${RunStatus.options.join(", ")}`)
    .action((options: { limit: string; status?: string }) => listRuns(options, global()));

  runs
    .command("show <id>")
    .description("print a run's record and its output and events")
    .action((id: string) => showRun(id, global()));

  runs
    .command("cancel <id>")
    .description("cancel a queued or running run of `galley serve` or the app, and wait until it has ended")
    .action((id: string) => cancelRun(id, global()));
}
