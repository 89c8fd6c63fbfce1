// Benchmark: how the workbench's GPU panel keeps up with telemetry. A real control plane
// serves the built renderer to Chromium (driven by Playwright) and pushes synthetic samples
// (8 virtual devices, 32 spawns, 2 Hz) through its real WebSocket transport. The page records
// animation frames and, for every sample, the time from the WebSocket message to the frame
// after the DOM shows it.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import type { SpawnTelemetry, Telemetry } from "../../common/index.js";
import { ControlPlane } from "../control-plane.js";
import type { InstallLayout } from "../layout.js";
import { silentLogger } from "../log.js";

export interface UiTelemetryOptions {
  devices?: number;
  spawns?: number;
  rateHz?: number;
  seconds?: number;
  chromium?: string;
}

export interface UiTelemetryResult {
  name: "ui_telemetry";
  devices: number;
  spawns: number;
  rate_hz: number;
  seconds: number;
  samples_sent: number;
  samples_painted: number;
  frames: number;
  // Gaps between requestAnimationFrame callbacks longer than 50 ms.
  dropped_frames: number;
  longest_frame_gap_ms: number;
  update_to_paint_ms: { p50: number; p95: number; max: number };
  goal_p95_ms: number;
  meets_goal: boolean;
  setup: string;
}

const GIB = 1024 ** 3;
const DEVICE_BYTES = 80 * GIB;
const DROPPED_FRAME_GAP_MS = 50;
const GOAL_P95_MS = 500;

function planOf(kind: SpawnTelemetry["kind"], weights: number, wave: number): Record<string, number> {
  if (kind === "inference") return { weights, kv_cache: Math.round(2 * GIB * wave) };
  return { weights, gradients: weights, optimizer_state: 2 * weights, activations: Math.round(GIB * wave) };
}

/** Builds a telemetry sample in which every spawn's memory moves a little, so every sample repaints the panel. */
export function syntheticSample(time: number, deviceCount: number, spawnCount: number): Telemetry {
  const devices = Array.from({ length: deviceCount }, (_, index) => `virtual:${index}`);
  const spawns = Array.from({ length: spawnCount }, (_, index): SpawnTelemetry => {
    const kind = index % 3 === 0 ? "train" : "inference";
    const tp = index % 8 === 7 ? 2 : 1;
    const placed = Array.from({ length: tp }, (_, rank) => devices[(index + rank) % deviceCount]!);
    const wave = 1 + 0.2 * Math.sin(time + index);
    const weights = Math.round(GIB * (1 + (index % 4)) * wave);
    return {
      id: `spawn${index}`,
      name: `${kind === "train" ? "policy" : "sampler"}-${index}`,
      session: `session${index % 5}`,
      kind,
      model_key: index % 2 === 0 ? "qwen3-8b" : "llama-3.1-8b-instruct",
      tp,
      devices: placed,
      ranks: placed.map((device, rank) => ({
        rank,
        device,
        pid: 10_000 + index * 10 + rank,
        process_bytes: null,
        plan: planOf(kind, weights, wave),
      })),
      state: index % 5 === 0 ? ("busy" as const) : ("ready" as const),
      last_op: kind === "train" ? "optim_step" : "generate",
      op_counts: { generate: Math.floor(time) },
      tokens_per_second: 100 * wave,
      created_at: 0,
      kv_cache_len: kind === "inference" ? 8192 : null,
      max_batch_size: kind === "train" ? 4096 : null,
    };
  });
  return {
    time,
    devices: devices.map((id, index) => {
      const used = spawns
        .flatMap((spawn) => spawn.ranks)
        .filter((rank) => rank.device === id)
        .reduce((total, rank) => total + Object.values(rank.plan ?? {}).reduce((sum, bytes) => sum + bytes, 0), 0);
      return { id, kind: "virtual" as const, index, name: "virtual 80.00 GiB", total_bytes: DEVICE_BYTES, used_bytes: used, free_bytes: Math.max(DEVICE_BYTES - used, 0), utilization: null, processes: [] };
    }),
    spawns,
  };
}

// Runs in the page before the app: timestamps telemetry messages as they arrive, records
// every animation frame, and watches the GPU panel's data-sample-time attribute.
const PAGE_INSTRUMENTATION = `(() => {
  const bench = { arrivals: new Map(), latencies: [], frames: [], painted: 0 };
  window.__galleyBench = bench;
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      // Registered before the app's onmessage handler, so it runs first.
      this.addEventListener("message", (event) => {
        if (typeof event.data !== "string" || !event.data.includes('"type":"telemetry"')) return;
        const match = /"telemetry":\\{"time":([-0-9.eE+]+)/.exec(event.data);
        if (match) bench.arrivals.set(Number(match[1]), performance.now());
      });
    }
  };
  const frame = (time) => {
    bench.frames.push(time);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  const observer = new MutationObserver((records) => {
    for (const record of records) {
      const arrived = bench.arrivals.get(Number(record.target.getAttribute("data-sample-time")));
      if (arrived === undefined) continue;
      bench.painted++;
      // The second callback runs after the frame that painted the change.
      requestAnimationFrame(() => requestAnimationFrame(() => bench.latencies.push(performance.now() - arrived)));
    }
  });
  document.addEventListener("DOMContentLoaded", () =>
    observer.observe(document.body, { subtree: true, attributes: true, attributeFilter: ["data-sample-time"] }),
  );
})();`;

function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

const round = (value: number) => Number(value.toFixed(1));

export async function benchUiTelemetry(layout: InstallLayout, options: UiTelemetryOptions = {}): Promise<UiTelemetryResult> {
  const devices = options.devices ?? 8;
  const spawns = options.spawns ?? 32;
  const rateHz = options.rateHz ?? 2;
  const seconds = options.seconds ?? 30;
  const chromiumPath = options.chromium ?? process.env.GALLEY_CHROMIUM ?? "/usr/bin/chromium";
  if (!fs.existsSync(path.join(layout.rendererDist, "index.html"))) {
    throw new Error(`the renderer is not built (${layout.rendererDist}/index.html is missing); run npm run build first`);
  }
  // NOTE: playwright-core comes with the root workspace's @playwright/test (a dev dependency),
  // so this benchmark runs from a checkout, not from a packaged app.
  const { chromium } = await import("playwright-core");

  const home = fs.mkdtempSync(path.join(os.tmpdir(), "galley-bench-ui-"));
  const plane = new ControlPlane({
    home,
    layout,
    log: silentLogger(),
    // No engine: the benchmark is the only telemetry source.
    externalEngine: { url: "ws://127.0.0.1:9/", token: "unused" },
  });
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await plane.listen(0);
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    await page.addInitScript({ content: PAGE_INSTRUMENTATION });
    await page.goto(plane.browserUrl());
    await page.getByTestId("connection-state").filter({ hasText: "connected" }).waitFor();
    await page.getByTestId("nav-gpus").click();

    let sent = 0;
    const start = Date.now() / 1000;
    const publish = () => {
      plane.dispatcher.publish({ type: "telemetry", telemetry: syntheticSample(start + sent / rateHz, devices, spawns) });
      sent++;
    };
    // The first sample mounts the panel; measuring starts with the second.
    publish();
    await page.getByTestId("gpus-page").waitFor();
    await page.evaluate("window.__galleyBench.frames.length = 0; window.__galleyBench.latencies.length = 0; window.__galleyBench.painted = 0;");
    const measuredFrom = sent;
    timer = setInterval(publish, 1000 / rateHz);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    clearInterval(timer);
    timer = undefined;
    // Let the last sample reach the screen.
    await new Promise((resolve) => setTimeout(resolve, 1000));

    const measured = (await page.evaluate("({ frames: window.__galleyBench.frames, latencies: window.__galleyBench.latencies, painted: window.__galleyBench.painted })")) as {
      frames: number[];
      latencies: number[];
      painted: number;
    };
    const gaps = measured.frames.slice(1).map((time, index) => time - measured.frames[index]!);
    const latencies = [...measured.latencies].sort((a, b) => a - b);
    const p95 = percentile(latencies, 0.95);
    return {
      name: "ui_telemetry",
      devices,
      spawns,
      rate_hz: rateHz,
      seconds,
      samples_sent: sent - measuredFrom,
      samples_painted: measured.painted,
      frames: measured.frames.length,
      dropped_frames: gaps.filter((gap) => gap > DROPPED_FRAME_GAP_MS).length,
      longest_frame_gap_ms: round(Math.max(0, ...gaps)),
      update_to_paint_ms: { p50: round(percentile(latencies, 0.5)), p95: round(p95), max: round(latencies.at(-1) ?? Number.NaN) },
      goal_p95_ms: GOAL_P95_MS,
      meets_goal: p95 < GOAL_P95_MS,
      setup:
        `GPU panel of the built renderer in headless Chromium (${path.basename(chromiumPath)}), fed by an in-process control plane ` +
        `over its WebSocket; latency runs from the message's arrival in the page to the animation frame after the DOM shows the sample; ` +
        `${os.cpus().length} CPUs, Node ${process.version}`,
    };
  } finally {
    if (timer) clearInterval(timer);
    await browser.close();
    await plane.close();
    fs.rmSync(home, { recursive: true, force: true });
  }
}
