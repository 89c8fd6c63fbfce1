import type { RunEvent } from "@galley/common";
import { useEffect, useMemo } from "react";

import { Console } from "../../components/Console";
import { GpuStrip } from "../../components/GpuStrip";
import { toWorkspacePath } from "../../lib/locations";
import { isRecipe } from "../../lib/workspace-files";
import { useRecipeRunId, useRuns } from "../../stores/runs";
import { useUi } from "../../stores/ui";
import { useWorkspace } from "../../stores/workspace";
import { EditorPane, type LineMarker } from "./EditorPane";
import { Explorer } from "./Explorer";
import { RunPanel } from "./RunPanel";

const NO_EVENTS: RunEvent[] = [];

export function WorkbenchScreen() {
  const active = useWorkspace((state) => state.active);
  const root = useWorkspace((state) => state.root);
  const runId = useRecipeRunId(active);
  const run = useRuns((state) => (runId ? state.runs[runId] : undefined));
  const loaded = useRuns((state) => (runId ? state.events[runId] : undefined));
  const events = loaded ?? NO_EVENTS;

  // A run from the history (after a reload) has its output in the stored events.
  useEffect(() => {
    if (!runId || loaded) return;
    void useRuns
      .getState()
      .loadEvents(runId)
      .catch((error: unknown) => useUi.getState().reportError(`Loading the output of run ${runId}`, error));
  }, [runId, loaded]);

  // The failed run's error line is marked in the editor of the file it names.
  const marker = useMemo<LineMarker | null>(() => {
    const error = run?.error;
    if (!error?.file || !error.line || !run) return null;
    const path = toWorkspacePath(error.file, root, run.recipe_path);
    return path ? { path, line: error.line, message: error.message } : null;
  }, [run, root]);

  return (
    <div className="workbench">
      <Explorer />
      <div className="workbench-center">
        <div className="strip-slot">
          <GpuStrip />
        </div>
        <EditorPane marker={marker} />
        <section className="console-pane">
          <div className="panel-title">
            <span>Console</span>
            {run && <span className="muted run-id">run {run.id}</span>}
          </div>
          <Console events={events} recipePath={active} />
        </section>
      </div>
      {active && isRecipe(active) ? (
        <RunPanel path={active} />
      ) : (
        <section className="run-panel" data-testid="run-panel-idle">
          <p className="muted">{active ? `${active} is not a recipe. Open a .py file to run it.` : "Open a recipe to run it."}</p>
        </section>
      )}
    </div>
  );
}
