// One metric series (e.g. loss per step) as a line chart.
import type { MetricPoint } from "../../lib/run-events";

const WIDTH = 320;
const HEIGHT = 120;
const PAD = 4;

export function MetricChart({ name, points }: { name: string; points: MetricPoint[] }) {
  const steps = points.map((point) => point.step);
  const values = points.map((point) => point.value);
  const [minStep, maxStep] = [Math.min(...steps), Math.max(...steps)];
  const [minValue, maxValue] = [Math.min(...values), Math.max(...values)];
  const x = (step: number) => PAD + ((step - minStep) / Math.max(maxStep - minStep, 1e-12)) * (WIDTH - 2 * PAD);
  const y = (value: number) => HEIGHT - PAD - ((value - minValue) / Math.max(maxValue - minValue, 1e-12)) * (HEIGHT - 2 * PAD);
  const last = points[points.length - 1];

  return (
    <figure className="metric-chart" data-testid="metric-chart" data-metric={name}>
      <figcaption>
        <strong>{name}</strong>{" "}
        <span className="muted">
          {points.length} points · last {last ? last.value.toPrecision(4) : "–"} · range {minValue.toPrecision(3)}…{maxValue.toPrecision(3)}
        </span>
      </figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} preserveAspectRatio="none" role="img" aria-label={`${name} by step`}>
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
      </svg>
    </figure>
  );
}
