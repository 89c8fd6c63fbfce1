// One device: its memory as a bar stacked by spawn (train and inference colored apart), with
// a hover card that puts each spawn's plan by component beside its measurement.
import { useState } from "react";

import { gib } from "../../lib/format";
import type { DeviceMemory, SpawnSegment } from "../../lib/memory";

function HoverCard({ segment }: { segment: SpawnSegment }) {
  const { spawn } = segment;
  return (
    <div className="hover-card" data-testid="spawn-hover">
      <strong>{spawn.name}</strong> <span className={`kind kind-${spawn.kind}`}>{spawn.kind}</span>
      <div className="muted">
        {spawn.model_key} · tp {spawn.tp} · {spawn.state}
      </div>
      <table className="plan-table">
        <thead>
          <tr>
            <th>component</th>
            <th>plan (estimate)</th>
          </tr>
        </thead>
        <tbody>
          {segment.plan.map(([name, bytes]) => (
            <tr key={name}>
              <td>{name}</td>
              <td>{gib(bytes)}</td>
            </tr>
          ))}
          <tr className="total">
            <td>planned total</td>
            <td>{gib(segment.planned)}</td>
          </tr>
          <tr className="total">
            <td>measured (process)</td>
            <td>{gib(segment.measured)}</td>
          </tr>
          <tr>
            <td>torch allocated / reserved / peak</td>
            <td>
              {gib(segment.torch.allocated)} / {gib(segment.torch.reserved)} / {gib(segment.torch.peak)}
            </td>
          </tr>
        </tbody>
      </table>
      {segment.source === "planned" && <div className="muted">No measurement yet: the bar shows the plan.</div>}
    </div>
  );
}

export function DeviceCard({ memory }: { memory: DeviceMemory }) {
  const { device, segments, other, free } = memory;
  const [hovered, setHovered] = useState<string | null>(null);
  const total = Math.max(device.total_bytes, 1);
  const width = (bytes: number) => `${Math.min((bytes / total) * 100, 100)}%`;
  const hoveredSegment = segments.find((segment) => segment.spawn.id === hovered);

  return (
    <div className="device-card" data-testid="gpu-card" data-device={device.id}>
      <div className="device-head">
        <strong>{device.id}</strong> <span className="muted">{device.name}</span>
        <span className="spacer" />
        {device.utilization !== null && device.utilization !== undefined && <span>{device.utilization.toFixed(0)}% util</span>}
      </div>
      <div className="memory-bar" onMouseLeave={() => setHovered(null)}>
        {segments.map((segment) => (
          <span
            key={segment.spawn.id}
            className={`segment kind-${segment.spawn.kind} source-${segment.source}`}
            data-testid="spawn-segment"
            data-spawn={segment.spawn.name}
            data-kind={segment.spawn.kind}
            style={{ width: width(segment.bytes) }}
            onMouseEnter={() => setHovered(segment.spawn.id)}
          />
        ))}
        <span className="segment other" style={{ width: width(other) }} title={`Other processes: ${gib(other)}`} />
      </div>
      {hoveredSegment && <HoverCard segment={hoveredSegment} />}
      <div className="device-numbers">
        <span>used {gib(device.used_bytes)}</span>
        <span data-testid="device-free">free {gib(free)}</span>
        <span>total {gib(device.total_bytes)}</span>
      </div>
      <div className="legend">
        <span className="legend-item">
          <span className="swatch kind-train" />
          train
        </span>
        <span className="legend-item">
          <span className="swatch kind-inference" />
          inference
        </span>
        <span className="legend-item">
          <span className="swatch other" />
          other processes
        </span>
        <span className="legend-item">
          <span className="swatch source-planned" />
          planned, not yet measured
        </span>
      </div>
    </div>
  );
}
