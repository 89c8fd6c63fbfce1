// `galley run` through a running server (`galley serve` or the app). The server's engine runs
// the recipe under its memory admission, and the run appears live in the server's run history
// and GPU panel. The terminal prints its output from the server's WebSocket, and Ctrl-C,
// SIGTERM or a closed terminal (SIGHUP) cancels the run on the server.
import os from "node:os";

import type { CancelSignal, Run, ServerEvent } from "../../common/index.js";
import { CliError, ServerUnreachableError } from "./context.js";
import type { RunRequest } from "./run-local.js";
import { finishRun, ignoreClosedTerminal, runPrinter, snapshotNames } from "./run-output.js";
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
  // The first signal received; a signal before the run has an id cancels it once it has one.
  let cancelSignal: CancelSignal | null = null;
  const requestCancel = (id: string, signal: CancelSignal) => {
    socket.request("runs.cancel", { id, signal }).catch(() => {
      // It ended in the meantime; its last status arrives as usual.
    });
  };
  const onSignal = (signal: CancelSignal) => {
    if (signal === "SIGHUP") ignoreClosedTerminal();
    if (cancelSignal) {
      if (signal === "SIGHUP") return;
      const check = runId ? `\`galley runs show ${runId}\`` : "`galley runs list`";
      process.stderr.write(`galley: the run may still be stopping on ${server.source}; check it with ${check}\n`);
      process.exit(128 + os.constants.signals[signal]);
    }
    cancelSignal = signal;
    if (runId) requestCancel(runId, signal);
  };
  const handlers = SIGNALS.map((signal) => [signal, () => onSignal(signal)] as const);
  for (const [signal, handler] of handlers) process.on(signal, handler);

  try {
    const queued = await startRun(socket, request);
    runId = queued.id;
    if (cancelSignal) requestCancel(queued.id, cancelSignal);
    const detail = await socket.request("runs.get", { id: queued.id });
    const print = runPrinter(queued.id, snapshotNames(detail.run_dir, request.recipe, request.configFile));

    const ended = new Promise<Run>((resolve, reject) => {
      handle = (event) => {
        print(event);
        if (event.type === "run.status" && event.run.id === queued.id && TERMINAL.has(event.run.status)) resolve(event.run);
      };
      socket.onClose(() => reject(lostConnection(server.source, server.url, queued.id)));
    });
    for (const event of early.splice(0)) handle!(event);
    return finishRun(await ended, cancelSignal);
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler);
    socket.close();
  }
}

const SIGNALS: CancelSignal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * Returns the error for a connection that closed before the run ended. Whether the run goes on
 * is unknown here: a server that stopped or crashed ends its runners, and the next server on
 * the data directory marks such runs failed.
 */
export function lostConnection(source: string, url: string, runId: string): ServerUnreachableError {
  return new ServerUnreachableError(
    `lost the connection to ${source} at ${url} before run ${runId} ended; the run may have stopped with the server. ` +
      `Check its status with \`galley runs show ${runId}\``,
  );
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
