// Used memory of each device over the telemetry history (the last minutes), as a fraction of
// its total.
import type { Telemetry } from "@galley/common";

import { gib } from "../../lib/format";

const WIDTH = 600;
const HEIGHT = 60;

export function Timeline({ history, deviceId }: { history: Telemetry[]; deviceId: string }) {
  const points = history.flatMap((sample) => {
    const device = sample.devices.find((entry) => entry.id === deviceId);
    return device ? [{ time: sample.time, used: device.used_bytes, total: device.total_bytes }] : [];
  });
  if (points.length < 2) return <div className="muted timeline-empty">Collecting samples…</div>;

  const first = points[0]!.time;
  const span = Math.max(points[points.length - 1]!.time - first, 1);
  const path = points
    .map((point) => {
      const x = ((point.time - first) / span) * WIDTH;
      const y = HEIGHT - (point.used / Math.max(point.total, 1)) * HEIGHT;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
  const last = points[points.length - 1]!;

  return (
    <figure className="timeline" data-testid="gpu-timeline">
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} preserveAspectRatio="none" role="img" aria-label={`Memory used on ${deviceId}`}>
        <polyline points={path} fill="none" stroke="currentColor" strokeWidth={1.5} vectorEffect="non-scaling-stroke" />
      </svg>
      <figcaption className="muted">
        last {Math.round(span / 60)} min · now {gib(last.used)} of {gib(last.total)}
      </figcaption>
    </figure>
  );
}
