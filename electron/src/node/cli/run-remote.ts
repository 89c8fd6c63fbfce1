// `galley run` through a running server (`galley serve` or the app). The server's engine runs
// the recipe under its memory admission, and the run appears live in the server's run history
// and GPU panel. The terminal prints its output from the server's WebSocket, and Ctrl-C
// cancels the run on the server.
import type { Run, ServerEvent } from "../../common/index.js";
import { CliError } from "./context.js";
import type { RunRequest } from "./run-local.js";
import { finishRun, runPrinter, snapshotNames } from "./run-output.js";
import { type ServerAccess, ServerError } from "./server-access.js";
import { ServerSocket } from "./server-socket.js";

const TERMINAL = new Set<Run["status"]>(["succeeded", "failed", "cancelled"]);

export async function runOnServer(request: RunRequest, server: ServerAccess): Promise<number> {
  const socket = await ServerSocket.connect(server);
  // Events of the run can arrive before the response that names it; they wait here.
  const early: ServerEvent[] = [];
  let handle: ((event: ServerEvent) => void) | null = null;
  socket.onEvent((event) => (handle ? handle(event) : early.push(event)));

  let runId: string | null = null;
  let cancelling = false;
  const onSignal = () => {
    if (!runId) return;
    if (cancelling) {
      process.stderr.write(`galley: run ${runId} may still be stopping on ${server.source}; see \`galley runs show ${runId}\`\n`);
      process.exit(130);
    }
    cancelling = true;
    socket.request("runs.cancel", { id: runId }).catch(() => {
      // It ended in the meantime; its last status arrives as usual.
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    const queued = await startRun(socket, request);
    runId = queued.id;
    const detail = await socket.request("runs.get", { id: queued.id });
    const print = runPrinter(queued.id, snapshotNames(detail.run_dir, request.recipe, request.configFile));

    const ended = new Promise<Run>((resolve, reject) => {
      handle = (event) => {
        print(event);
        if (event.type === "run.status" && event.run.id === queued.id && TERMINAL.has(event.run.status)) resolve(event.run);
      };
      socket.onClose(() =>
        reject(new CliError(`lost the connection to ${server.source} at ${server.url}; run ${queued.id} goes on there; see \`galley runs show ${queued.id}\``)),
      );
    });
    for (const event of early.splice(0)) handle!(event);
    return finishRun(await ended);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    socket.close();
  }
}

/**
 * Starts the run on the server. A rejected start (unknown file, invalid params) exits 2, as a
 * recipe that cannot load does.
 * NOTE: the server reads the recipe from its own file system, so GALLEY_URL must point at a
 * server on this machine (or one that has the same paths).
 */
async function startRun(socket: ServerSocket, request: RunRequest): Promise<Run> {
  try {
    return await socket.request("runs.start", { recipe_path: request.recipePath, config: request.config, dry_run: request.dryRun });
  } catch (error) {
    if (!(error instanceof ServerError)) throw error;
    const hint =
      error.body.code === "invalid_request" && !socket.server.local
        ? "; with GALLEY_URL the server runs only files of its workspace, unless GALLEY_TOKEN is the local token from its serve.json"
        : "";
    throw new CliError(`${socket.server.source} did not start ${request.recipe}: ${error.message}${hint}`, 2);
  }
}
