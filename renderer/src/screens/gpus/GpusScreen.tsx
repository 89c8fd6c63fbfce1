import { useMemo } from "react";

import { deviceMemory } from "../../lib/memory";
import { useTelemetry } from "../../stores/telemetry";
import { DeviceCard } from "./DeviceCard";
import { SpawnTable } from "./SpawnTable";
import { Timeline } from "./Timeline";

export function GpusScreen() {
  const latest = useTelemetry((state) => state.latest);
  const history = useTelemetry((state) => state.history);
  const engine = useTelemetry((state) => state.engine);
  const devices = useMemo(() => (latest ? deviceMemory(latest) : []), [latest]);

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
    <div className="page gpus">
      <div className="device-grid">
        {devices.map((memory) => (
          <div key={memory.device.id}>
            <DeviceCard memory={memory} />
            <Timeline history={history} deviceId={memory.device.id} />
          </div>
        ))}
      </div>
      <h2>Spawns</h2>
      <SpawnTable spawns={live} />
    </div>
  );
}
