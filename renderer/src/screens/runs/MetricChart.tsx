// One metric series (e.g. loss per step) as a line chart with its value range and step
// range on the axes; hovering shows the nearest point.
import { useState } from "react";

import { plural } from "../../lib/format";
import type { MetricPoint } from "../../lib/run-events";

const WIDTH = 320;
const HEIGHT = 120;
const PAD = 4;

function format(value: number): string {
  return Math.abs(value) >= 1e4 || (value !== 0 && Math.abs(value) < 1e-3) ? value.toExponential(2) : value.toPrecision(4);
}

export function MetricChart({ name, points }: { name: string; points: MetricPoint[] }) {
  const [hovered, setHovered] = useState<MetricPoint | null>(null);
  const steps = points.map((point) => point.step);
  const values = points.map((point) => point.value);
  const [minStep, maxStep] = [Math.min(...steps), Math.max(...steps)];
  const [minValue, maxValue] = [Math.min(...values), Math.max(...values)];
  const x = (step: number) => PAD + ((step - minStep) / Math.max(maxStep - minStep, 1e-12)) * (WIDTH - 2 * PAD);
  const y = (value: number) => HEIGHT - PAD - ((value - minValue) / Math.max(maxValue - minValue, 1e-12)) * (HEIGHT - 2 * PAD);
  const last = points[points.length - 1];

  function onMove(event: React.MouseEvent<SVGSVGElement>) {
    const bounds = event.currentTarget.getBoundingClientRect();
    const step = minStep + ((event.clientX - bounds.left) / Math.max(bounds.width, 1)) * (maxStep - minStep);
    let nearest = points[0] ?? null;
    for (const point of points) if (nearest && Math.abs(point.step - step) < Math.abs(nearest.step - step)) nearest = point;
    setHovered(nearest);
  }

  return (
    <figure className="metric-chart" data-testid="metric-chart" data-metric={name}>
      <figcaption>
        <strong>{name}</strong>{" "}
        <span className="muted">
          {plural(points.length, "point")} · last {last ? format(last.value) : "–"}
        </span>
      </figcaption>
      <div className="chart-body">
        <div className="chart-y">
          <span>{format(maxValue)}</span>
          <span>{format(minValue)}</span>
        </div>
        <svg
          viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
          preserveAspectRatio="none"
          role="img"
          aria-label={`${name} by step`}
          onMouseMove={onMove}
          onMouseLeave={() => setHovered(null)}
        >
          {points.length === 1 && last ? (
            <circle cx={WIDTH / 2} cy={HEIGHT / 2} r={3} fill="currentColor" />
          ) : (
            <polyline
              fill="none"
              stroke="currentColor"
              strokeWidth={1.5}
              vectorEffect="non-scaling-stroke"
              points={points.map((point) => `${x(point.step).toFixed(1)},${y(point.value).toFixed(1)}`).join(" ")}
            />
          )}
          {hovered && points.length > 1 && <circle className="chart-dot" cx={x(hovered.step)} cy={y(hovered.value)} r={3} vectorEffect="non-scaling-stroke" />}
        </svg>
      </div>
      <div className="chart-x muted">
        <span>step {minStep}</span>
        {hovered ? (
          <span data-testid="metric-readout">
            step {hovered.step}: {format(hovered.value)}
          </span>
        ) : null}
        <span>step {maxStep}</span>
      </div>
    </figure>
  );
}
