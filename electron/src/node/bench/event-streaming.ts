// Benchmark: events per second from a run's event pipe (GALLEY_EVENTS_FD) through the run
// manager and SQLite to a WebSocket subscriber of `galley serve`'s API.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import WebSocket from "ws";

import type { ServerMessage } from "../../common/index.js";
import { ControlPlane } from "../control-plane.js";
import { silentLogger } from "../log.js";

export interface EventStreamingResult {
  name: "event_streaming";
  events: number;
  seconds: number;
  events_per_s: number;
  setup: string;
}

// A Node child replaces the recipe runner and writes `count` metric events to fd 3 as fast
// as it can, so the benchmark measures the control plane, not Python.
const EMITTER = `
const fs = require("node:fs");
const count = Number(process.argv[1]);
let batch = "";
for (let i = 0; i < count; i++) {
  batch += JSON.stringify({ type: "metric", name: "loss", value: 1 / (i + 1), step: i }) + "\\n";
  if (batch.length > 65536) { fs.writeSync(3, batch); batch = ""; }
}
if (batch) fs.writeSync(3, batch);
`;

export async function benchEventStreaming(count = 20_000): Promise<EventStreamingResult> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "galley-bench-events-"));
  const recipe = path.join(home, "emit.py");
  fs.writeFileSync(recipe, "# stands in for a recipe; the benchmark's runner command ignores it\n");
  const plane = new ControlPlane({
    home,
    log: silentLogger(),
    externalEngine: { url: "ws://127.0.0.1:9/", token: "unused" },
    runnerCommand: () => ({ command: process.execPath, args: ["-e", EMITTER, String(count)] }),
  });
  try {
    const { url } = await plane.listen(0);
    const socket = new WebSocket(`${url.replace("http", "ws")}/api/ws?token=${plane.token}`);
    await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));

    let received = 0;
    let runId = "";
    const started = performance.now();
    const delivered = new Promise<number>((resolve) => {
      socket.on("message", (data) => {
        const message = JSON.parse(data.toString()) as ServerMessage;
        if (message.kind !== "event" || message.event.type !== "run.event") return;
        if (message.event.event.run_id !== runId || message.event.event.type !== "metric") return;
        received++;
        if (received === count) resolve(performance.now());
      });
    });
    runId = plane.runs.startRun({ recipe_path: recipe, config: {}, dry_run: false }).id;
    const finished = await delivered;
    socket.close();

    const seconds = (finished - started) / 1000;
    return {
      name: "event_streaming",
      events: count,
      seconds: Number(seconds.toFixed(3)),
      events_per_s: Math.round(count / seconds),
      setup: `${count} metric events written to fd 3 by a Node child, stored in SQLite (WAL) and received by one WebSocket client; ${os.cpus().length} CPUs, Node ${process.version}`,
    };
  } finally {
    await plane.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
}
