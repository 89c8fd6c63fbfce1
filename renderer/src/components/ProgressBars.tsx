import type { RunEvent } from "@galley/common";
import { useMemo } from "react";

import { stageProgress } from "../lib/run-events";

export function ProgressBars({ events }: { events: RunEvent[] }) {
  const stages = useMemo(() => stageProgress(events), [events]);
  if (stages.length === 0) return null;
  return (
    <div className="progress-list" data-testid="progress">
      {stages.map(({ stage, total, done }) => {
        const fraction = total > 0 ? Math.min(done / total, 1) : 0;
        return (
          <div key={stage} className="progress-row" data-stage={stage}>
            <span className="progress-label">{stage}</span>
            <span className="progress-track">
              <span className="progress-fill" style={{ width: `${fraction * 100}%` }} />
            </span>
            <span className="progress-count">
              {done}/{total || "?"}
            </span>
          </div>
        );
      })}
    </div>
  );
}
