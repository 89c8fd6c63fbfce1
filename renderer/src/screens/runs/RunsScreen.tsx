// Run history: every run, newest first, and the selected run's details. Side by side on wide
// windows; on narrow ones the list sits above the details (see the .runs rules in styles.css).
import { useEffect } from "react";

import { StatusBadge } from "../../components/StatusBadge";
import { clockTime, compactTime, duration } from "../../lib/format";
import { useRuns } from "../../stores/runs";
import { useUi } from "../../stores/ui";
import { RunDetail } from "./RunDetail";

export function RunsScreen() {
  const order = useRuns((state) => state.order);
  const runs = useRuns((state) => state.runs);
  const reportError = useUi((state) => state.reportError);
  const selected = useUi((state) => state.selectedRun);
  const setSelected = useUi((state) => state.selectRun);

  useEffect(() => {
    void useRuns.getState().loadList().catch((error: unknown) => reportError("Loading the run history", error));
  }, [reportError]);

  const current = selected ?? order[0] ?? null;
  return (
    <div className="page runs">
      <div className="runs-list" data-testid="runs-list">
        <table className="table runs-table" data-testid="runs-table">
          <thead>
            <tr>
              <th>status</th>
              <th>recipe</th>
              <th>started</th>
              <th>duration</th>
              <th>exit</th>
            </tr>
          </thead>
          <tbody>
            {order.map((id) => {
              const run = runs[id];
              if (!run) return null;
              const started = run.started_at ?? run.created_at;
              return (
                <tr key={id} className={id === current ? "selected" : ""} data-testid="run-row" data-run-id={id} onClick={() => setSelected(id)}>
                  <td>
                    <StatusBadge status={run.status} />
                  </td>
                  <td className="runs-recipe" title={run.recipe_path}>
                    {run.recipe_path}
                  </td>
                  <td title={clockTime(started)}>{compactTime(started)}</td>
                  <td>{duration(run.started_at, run.ended_at)}</td>
                  <td>{run.exit_code ?? "–"}</td>
                </tr>
              );
            })}
            {order.length === 0 && (
              <tr>
                <td colSpan={5} className="muted">
                  No runs yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      {current && <RunDetail key={current} id={current} onSelect={setSelected} />}
    </div>
  );
}
