// `galley gpus`: the device and spawn tables from the engine's telemetry, from a running
// `galley serve` (its serve.json, or GALLEY_URL and GALLEY_TOKEN) or from an engine started
// for the purpose.
import type { Command } from "commander";

import { Telemetry } from "../../../common/index.js";
import { resolveDataHome } from "../../layout.js";
import { CliError, type GlobalOptions, openControlPlane } from "../context.js";
import { telemetryTables } from "../format.js";
import { callServer, findServer, type ServerAccess } from "../server-access.js";
import { rejectEngineFlags, warnIfServerRuns } from "./run.js";

interface GpusOptions {
  watch?: boolean;
  devices?: string;
  standalone?: boolean;
}

const WATCH_INTERVAL_MS = 1000;
const FIRST_SAMPLE_TIMEOUT_MS = 15_000;

async function fetchTelemetry(server: ServerAccess): Promise<Telemetry | null> {
  const body = await callServer<{ telemetry: unknown }>(server, "GET", "/api/telemetry");
  return body.telemetry === null ? null : Telemetry.parse(body.telemetry);
}

function print(telemetry: Telemetry | null, clear: boolean): void {
  const text = telemetry ? telemetryTables(telemetry) : "no telemetry yet: the engine has not reported";
  process.stdout.write(`${clear ? "\x1b[2J\x1b[H" : ""}${text}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function watchUntilInterrupted(read: () => Promise<Telemetry | null> | Telemetry | null): Promise<void> {
  let stopped = false;
  process.once("SIGINT", () => {
    stopped = true;
  });
  while (!stopped) {
    print(await read(), true);
    await sleep(WATCH_INTERVAL_MS);
  }
}

async function fromServer(server: ServerAccess, options: GpusOptions): Promise<void> {
  if (options.watch) await watchUntilInterrupted(() => fetchTelemetry(server));
  else print(await fetchTelemetry(server), false);
}

async function fromOwnEngine(options: GpusOptions, global: GlobalOptions): Promise<void> {
  const plane = openControlPlane(global, "warn", { devices: options.devices ?? null });
  try {
    await plane.listen(0);
    await plane.startEngine();
    const engine = plane.engine!;
    const deadline = Date.now() + FIRST_SAMPLE_TIMEOUT_MS;
    while (!engine.history.latest() && Date.now() < deadline) await sleep(100);
    if (!engine.history.latest()) throw new CliError(`the engine sent no telemetry within ${FIRST_SAMPLE_TIMEOUT_MS / 1000} s; see ${plane.paths.engineLog}`);
    if (options.watch) await watchUntilInterrupted(() => engine.history.latest());
    else print(engine.history.latest(), false);
  } finally {
    await plane.close();
  }
}

export function registerGpusCommand(program: Command, global: () => GlobalOptions): void {
  program
    .command("gpus")
    .description(
      "print devices and spawns with planned and measured memory, from `galley serve` on this data directory " +
        "or GALLEY_URL, else from a short-lived engine",
    )
    .option("--watch", "refresh every second until Ctrl-C")
    .option("--devices <spec>", 'virtual devices for a short-lived engine, e.g. "4x80GiB" (not with a running server)')
    .option("--standalone", "start a short-lived engine even while `galley serve` runs")
    .action(async (options: GpusOptions) => {
      const home = global().home ?? resolveDataHome();
      if (options.standalone) {
        await warnIfServerRuns(home);
        await fromOwnEngine(options, global());
        return;
      }
      const server = await findServer(home);
      if (!server) {
        await fromOwnEngine(options, global());
        return;
      }
      rejectEngineFlags(server, { "--devices": options.devices });
      await fromServer(server, options);
    });
}
