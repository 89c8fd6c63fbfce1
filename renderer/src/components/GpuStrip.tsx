// A compact row of every device's memory, shown above the workbench's editor while a run is
// going or spawns use memory, so the run's placements are visible from the editor. Clicking
// it opens the GPU panel.
import { TERMINAL_RUN_STATUSES } from "@galley/common";
import { useMemo } from "react";

import { gib, plural } from "../lib/format";
import { deviceUsage } from "../lib/memory";
import { useRuns } from "../stores/runs";
import { useTelemetry } from "../stores/telemetry";
import { useUi } from "../stores/ui";

export function GpuStrip() {
  const latest = useTelemetry((state) => state.latest);
  const runActive = useRuns((state) => Object.values(state.runs).some((run) => !TERMINAL_RUN_STATUSES.includes(run.status)));
  const show = useUi((state) => state.show);
  const usage = useMemo(() => (latest ? deviceUsage(latest) : []), [latest]);
  const spawns = usage.reduce((total, device) => total + device.spawns, 0);

  if (!latest || (!runActive && spawns === 0)) return null;
  return (
    <button className="gpu-strip" data-testid="gpu-strip" title="Open the GPU panel" onClick={() => show("gpus")}>
      {usage.map((device) => {
        const total = Math.max(device.total, 1);
        const percent = (bytes: number) => `${Math.min((bytes / total) * 100, 100)}%`;
        return (
          <span key={device.id} className="strip-device" data-testid="strip-device" data-device={device.id} data-spawns={device.spawns}>
            <span className="strip-label">{device.id}</span>
            <span className="strip-bar">
              <span className="segment kind-train" style={{ width: percent(device.train) }} />
              <span className="segment kind-inference" style={{ width: percent(device.inference) }} />
              <span className="segment other" style={{ width: percent(device.other) }} />
            </span>
            <span className="strip-numbers">
              {gib(device.total - device.free, 1)} / {gib(device.total, 0)}
              {device.spawns > 0 && ` · ${plural(device.spawns, "spawn")}`}
            </span>
          </span>
        );
      })}
    </button>
  );
}
