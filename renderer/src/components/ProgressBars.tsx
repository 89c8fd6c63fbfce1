// One bar per stage the recipe registered (JobNotifier.register_stages), filled by its
// report_progress calls; stages not reached yet show as waiting.
import type { RunEvent } from "@galley/common";
import { useMemo } from "react";

import { stageProgress } from "../lib/run-events";

function stageState(total: number, done: number): "waiting" | "running" | "done" {
  if (total > 0 && done >= total) return "done";
  return total > 0 || done > 0 ? "running" : "waiting";
}

export function ProgressBars({ events }: { events: RunEvent[] }) {
  const stages = useMemo(() => stageProgress(events), [events]);
  if (stages.length === 0) return null;
  return (
    <div className="progress-list" data-testid="progress">
      {stages.map(({ stage, total, done }) => {
        const fraction = total > 0 ? Math.min(done / total, 1) : 0;
        const state = stageState(total, done);
        return (
          <div key={stage} className={`progress-row progress-${state}`} data-stage={stage} data-state={state}>
            <span className="progress-label" title={stage}>
              {stage}
            </span>
            <span className="progress-track" role="progressbar" aria-valuemin={0} aria-valuemax={total} aria-valuenow={done}>
              <span className="progress-fill" style={{ width: `${fraction * 100}%` }} />
            </span>
            <span className="progress-count">
              {state === "waiting" ? "waiting" : `${done}/${total || "?"}`}
            </span>
          </div>
        );
      })}
    </div>
  );
}
