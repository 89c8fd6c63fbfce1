// `galley serve`: the control plane over HTTP + WebSocket for a browser, until Ctrl-C.
import fs from "node:fs";
import path from "node:path";

import type { Command } from "commander";

import { resolveDataHome } from "../../layout.js";
import { tryLock } from "../../server/home-lock.js";
import { serveFilePath } from "../../server/local-access.js";
import { CliError, type GlobalOptions, openControlPlane, parsePositiveInt } from "../context.js";
import { findServer } from "../server-access.js";

interface ServeOptions {
  port: string;
  host: string;
  workspace?: string;
  devices?: string;
  keepWarm?: string;
}

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "::1"]);

async function serve(options: ServeOptions, global: GlobalOptions): Promise<void> {
  const port = options.port === "0" ? 0 : parsePositiveInt(options.port, "--port");
  const keepWarm = options.keepWarm === undefined ? null : Number(options.keepWarm);
  if (keepWarm !== null && !(keepWarm >= 0)) throw new CliError(`--keep-warm must be a number of seconds, got "${options.keepWarm}"`, 2);

  // One control plane per data directory, so that one engine admits every spawn on these GPUs.
  // serve.lock, held from here until shutdown, makes a second `galley serve` that starts at the
  // same moment fail here instead of racing this one through the default model's creation.
  const home = global.home ?? resolveDataHome();
  fs.mkdirSync(home, { recursive: true });
  const lockFile = path.join(home, "serve.lock");
  const lock = tryLock(lockFile);
  if (!lock.acquired) {
    throw new CliError(
      `galley serve (pid ${lock.holder}) is already serving ${home}, or still starting (see ${lockFile}); ` +
        "use that one once it prints its URL, stop it first, or pass --home for another data directory",
    );
  }
  try {
    await serveHome(home, options, global, port, keepWarm);
  } finally {
    lock.release();
  }
}

async function serveHome(
  home: string,
  options: ServeOptions,
  global: GlobalOptions,
  port: number,
  keepWarm: number | null,
): Promise<void> {
  // The workbench app writes serve.json without taking serve.lock.
  const running = await findServer(home, {});
  if (running) {
    throw new CliError(
      `${running.source} is already serving ${home} at ${running.url} (see ${serveFilePath(home)}); ` +
        "use that one, stop it first, or pass --home for another data directory",
    );
  }

  const plane = openControlPlane(global, "info", {
    devices: options.devices ?? null,
    keepWarm,
    ...(options.workspace ? { workspace: options.workspace } : {}),
  });
  if (!LOOPBACK_HOSTS.has(options.host)) {
    plane.log.warn("serving on a non-loopback address: anyone who can reach it and has the token controls this machine's GPUs and files", {
      host: options.host,
    });
  }
  await plane.ensureDefaults();
  await plane.listen(port, options.host);
  plane.advertise();
  process.stdout.write(`Galley is serving the workbench at ${plane.browserUrl()}\n`);
  plane.log.info("workspace", { root: plane.workspace.root });

  // The engine starts in the background; runs wait for it, and the UI shows its state.
  plane.startEngine().catch((error: Error) => plane.log.error("the engine failed to start", { error: error.message }));

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      plane.log.info("shutting down", { signal });
      plane.close().then(resolve, (error: Error) => {
        plane.log.error("shutdown failed", { error: error.message });
        resolve();
      });
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
}

export function registerServeCommand(program: Command, global: () => GlobalOptions): void {
  program
    .command("serve")
    .description("serve the workbench and its API on 127.0.0.1 with a bearer token, for a browser")
    .option("--port <n>", "TCP port (0 picks a free one)", "0")
    .option("--host <address>", "address to bind; keep the loopback default unless you tunnel to it", "127.0.0.1")
    .option("--workspace <dir>", "recipe workspace folder (default: <data dir>/workspace)")
    .option("--devices <spec>", 'virtual devices for the engine, e.g. "4x80GiB"')
    .option("--keep-warm <seconds>", "how long the engine keeps a closed session's spawns")
    .action((options: ServeOptions) => serve(options, global()));
}
