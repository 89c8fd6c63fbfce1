// Runs: the history list, each run's stored events (output chunks included), and the run
// last started from each recipe, which the workbench's console follows.
import type { Run, RunDetail, RunEvent, RunStatus, ServerEvent } from "@galley/common";
import { create } from "zustand";

import { call } from "../api/client";
import { insertEvent, mergeEvents } from "../lib/run-events";

interface RunsState {
  runs: Record<string, Run>;
  // Run ids, newest first.
  order: string[];
  events: Record<string, RunEvent[]>;
  details: Record<string, RunDetail>;
  // Recipe path -> id of the run last started from it in this window.
  latestByRecipe: Record<string, string>;
  loadList(): Promise<void>;
  start(recipePath: string, config: Record<string, unknown>): Promise<Run>;
  cancel(id: string): Promise<void>;
  loadEvents(id: string): Promise<void>;
  loadDetail(id: string): Promise<void>;
  applyEvent(event: ServerEvent): void;
}

const STATUS_RANK: Record<RunStatus, number> = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2 };

/**
 * Picks the run record to keep when `incoming` arrives for a run already known as `current`.
 * Replies and live events can arrive out of order (the runs.start reply, status "queued", may
 * come after the run.status event that said "running"), so an older status never replaces a
 * newer one.
 */
export function newerRun(current: Run | undefined, incoming: Run): Run {
  if (current && STATUS_RANK[incoming.status] < STATUS_RANK[current.status]) return current;
  return incoming;
}

function withRun(state: RunsState, run: Run): Pick<RunsState, "runs" | "order"> {
  const order = state.order.includes(run.id) ? state.order : [run.id, ...state.order];
  return { runs: { ...state.runs, [run.id]: newerRun(state.runs[run.id], run) }, order };
}

export const useRuns = create<RunsState>()((set, get) => ({
  runs: {},
  order: [],
  events: {},
  details: {},
  latestByRecipe: {},

  async loadList() {
    const { runs } = await call("runs.list", { limit: 200 });
    set((state) => {
      const merged = { ...state.runs };
      for (const run of runs) merged[run.id] = newerRun(merged[run.id], run);
      const listed = runs.map((run) => run.id);
      // Runs started in this window but not yet listed stay on top.
      const extra = state.order.filter((id) => !listed.includes(id));
      return { runs: merged, order: [...extra, ...listed] };
    });
  },

  async start(recipePath, config) {
    const run = await call("runs.start", { recipe_path: recipePath, config });
    set((state) => ({
      ...withRun(state, run),
      latestByRecipe: { ...state.latestByRecipe, [recipePath]: run.id },
    }));
    // Output produced before this window learned the run id is in the stored events.
    await get().loadEvents(run.id);
    return run;
  },

  async cancel(id) {
    const run = await call("runs.cancel", { id });
    set((state) => withRun(state, run));
  },

  async loadEvents(id) {
    const { events } = await call("runs.events", { id, after_seq: -1 });
    set((state) => ({ events: { ...state.events, [id]: mergeEvents(state.events[id] ?? [], events) } }));
  },

  async loadDetail(id) {
    const detail = await call("runs.get", { id });
    set((state) => ({ details: { ...state.details, [id]: detail }, ...withRun(state, detail) }));
  },

  applyEvent(event) {
    if (event.type === "run.status") {
      set((state) => withRun(state, event.run));
      return;
    }
    let stored: RunEvent;
    if (event.type === "run.output") {
      stored = {
        run_id: event.run_id,
        seq: event.seq,
        time: event.time,
        type: event.stream,
        payload: { text: event.text },
      };
    } else if (event.type === "run.event") {
      stored = event.event;
    } else {
      return;
    }
    set((state) => ({
      events: { ...state.events, [stored.run_id]: insertEvent(state.events[stored.run_id] ?? [], stored) },
    }));
  },
}));

/**
 * Selects the run the workbench shows for a recipe: the one last started from this window,
 * else the newest run of that recipe in the history (after a reload).
 */
export function useRecipeRunId(recipePath: string | null): string | undefined {
  return useRuns((state) => {
    if (!recipePath) return undefined;
    return state.latestByRecipe[recipePath] ?? state.order.find((id) => state.runs[id]?.recipe_path === recipePath);
  });
}
