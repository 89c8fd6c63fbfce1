// Memory of one device over the last minutes, stacked by use (training spawns, inference
// spawns, other processes) against the device's total, from the telemetry history.
import type { Telemetry } from "@galley/common";
import { useMemo, useState } from "react";

import { gib } from "../../lib/format";
import { LAYERS, stackedPaths, usageSeries, type UsagePoint } from "../../lib/timeline";

const WIDTH = 600;
const HEIGHT = 80;
export const TIMELINE_WINDOWS = [60, 300, 600] as const;

function Readout({ point }: { point: UsagePoint }) {
  const used = point.train + point.inference + point.other;
  return (
    <span data-testid="timeline-readout">
      {new Date(point.time * 1000).toLocaleTimeString()}: train {gib(point.train)} · inference {gib(point.inference)} · other {gib(point.other)} ·
      used {gib(used)} of {gib(point.total)}
    </span>
  );
}

export function Timeline({ history, deviceId, windowSeconds }: { history: Telemetry[]; deviceId: string; windowSeconds: number }) {
  const [hovered, setHovered] = useState<number | null>(null);
  const now = history[history.length - 1]?.time ?? 0;
  const points = useMemo(() => usageSeries(history, deviceId, windowSeconds, now), [history, deviceId, windowSeconds, now]);

  if (points.length < 2) return <div className="muted timeline-empty">Collecting samples…</div>;
  const last = points[points.length - 1]!;
  const box = { width: WIDTH, height: HEIGHT, start: now - windowSeconds, end: now, maxBytes: Math.max(last.total, 1) };
  const paths = stackedPaths(points, box);
  const shown = hovered !== null ? points[hovered] : undefined;

  function onMove(event: React.MouseEvent<SVGSVGElement>) {
    const bounds = event.currentTarget.getBoundingClientRect();
    const time = box.start + ((event.clientX - bounds.left) / Math.max(bounds.width, 1)) * windowSeconds;
    let nearest = 0;
    points.forEach((point, index) => {
      if (Math.abs(point.time - time) < Math.abs(points[nearest]!.time - time)) nearest = index;
    });
    setHovered(nearest);
  }

  return (
    <figure className="timeline" data-testid="gpu-timeline" data-device={deviceId} data-points={points.length}>
      <div className="timeline-axis">
        <span>{gib(last.total, 0)}</span>
        <span>0</span>
      </div>
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        preserveAspectRatio="none"
        role="img"
        aria-label={`Memory used on ${deviceId} over the last ${windowSeconds / 60} min`}
        onMouseMove={onMove}
        onMouseLeave={() => setHovered(null)}
      >
        {LAYERS.map((layer) => (
          <path key={layer} className={`area area-${layer}`} d={paths[layer]} />
        ))}
        {shown && (
          <line
            className="cursor"
            x1={((shown.time - box.start) / windowSeconds) * WIDTH}
            x2={((shown.time - box.start) / windowSeconds) * WIDTH}
            y1={0}
            y2={HEIGHT}
            vectorEffect="non-scaling-stroke"
          />
        )}
      </svg>
      <figcaption className="muted">
        {shown ? (
          <Readout point={shown} />
        ) : (
          <span>
            −{windowSeconds / 60} min … now · used {gib(last.train + last.inference + last.other)} of {gib(last.total)}
          </span>
        )}
      </figcaption>
    </figure>
  );
}
