// The engine's state and its telemetry: the latest sample and a rolling history that the GPU
// timeline draws.
import type { EngineStatus, ServerEvent, Telemetry } from "@galley/common";
import { create } from "zustand";

import { call } from "../api/client";

// Matches the control plane's history window, in seconds.
export const HISTORY_SECONDS = 600;

interface TelemetryState {
  engine: EngineStatus | null;
  latest: Telemetry | null;
  history: Telemetry[];
  load(): Promise<void>;
  applyEvent(event: ServerEvent): void;
}

function trim(history: Telemetry[], now: number): Telemetry[] {
  const oldest = now - HISTORY_SECONDS;
  const firstKept = history.findIndex((sample) => sample.time >= oldest);
  return firstKept <= 0 ? history : history.slice(firstKept);
}

export const useTelemetry = create<TelemetryState>()((set) => ({
  engine: null,
  latest: null,
  history: [],

  async load() {
    const [engine, history] = await Promise.all([call("engine.status", {}), call("telemetry.history", { since: 0 })]);
    const latest = history.samples[history.samples.length - 1] ?? null;
    set({ engine, history: history.samples, latest });
  },

  applyEvent(event) {
    if (event.type === "engine.status") {
      set({ engine: event.status });
    } else if (event.type === "telemetry") {
      const sample = event.telemetry;
      set((state) => ({ latest: sample, history: trim([...state.history, sample], sample.time) }));
    }
  },
}));
