// The GPU panel: one card per device with its memory by spawn and its timeline, and the
// table of every live spawn.
import { useMemo, useState } from "react";

import { plural } from "../../lib/format";
import { deviceMemory } from "../../lib/memory";
import { useTelemetry } from "../../stores/telemetry";
import { DeviceCard } from "./DeviceCard";
import { SpawnTable } from "./SpawnTable";
import { Timeline, TIMELINE_WINDOWS } from "./Timeline";

export function GpusScreen() {
  const latest = useTelemetry((state) => state.latest);
  const history = useTelemetry((state) => state.history);
  const engine = useTelemetry((state) => state.engine);
  const devices = useMemo(() => (latest ? deviceMemory(latest) : []), [latest]);
  const [windowSeconds, setWindowSeconds] = useState<number>(300);

  if (!latest) {
    return (
      <div className="page">
        <p className="muted" data-testid="gpus-waiting">
          Waiting for the engine's first telemetry sample (engine: {engine?.state ?? "unknown"}).
          {engine?.last_error && ` Last error: ${engine.last_error}. Log: ${engine.log_path}`}
        </p>
      </div>
    );
  }

  const live = latest.spawns.filter((spawn) => spawn.state !== "released");
  return (
    <div className="page gpus" data-testid="gpus-page" data-sample-time={latest.time}>
      <div className="gpus-head">
        <span className="muted">
          {plural(devices.length, "device")}
          {engine?.devices ? ` (virtual: ${engine.devices}, compute on the CPU)` : ""} · {plural(live.length, "spawn")}
        </span>
        <span className="spacer" />
        <label className="inline">
          timeline
          <select data-testid="timeline-window" value={windowSeconds} onChange={(event) => setWindowSeconds(Number(event.target.value))}>
            {TIMELINE_WINDOWS.map((seconds) => (
              <option key={seconds} value={seconds}>
                last {seconds / 60} min
              </option>
            ))}
          </select>
        </label>
      </div>
      <div className="device-grid">
        {devices.map((memory) => (
          <div key={memory.device.id}>
            <DeviceCard memory={memory} />
            <Timeline history={history} deviceId={memory.device.id} windowSeconds={windowSeconds} />
          </div>
        ))}
      </div>
      <h2>Spawns</h2>
      <SpawnTable spawns={live} />
    </div>
  );
}
