// The GPU timeline's data: each device's memory by use over the last minutes, thinned to a
// fixed number of points, and the SVG paths of its stacked areas.
import type { Telemetry } from "@galley/common";

import { deviceUsage } from "./memory";

export interface UsagePoint {
  // Seconds since the Unix epoch, as the engine stamps its samples.
  time: number;
  train: number;
  inference: number;
  other: number;
  total: number;
}

/** Layers of the stacked chart, bottom first. */
export const LAYERS = ["train", "inference", "other"] as const;
export type Layer = (typeof LAYERS)[number];

/**
 * Returns the device's usage in the samples of the last `windowSeconds` before `now`, with
 * at most `maxPoints` points: longer histories keep every k-th sample and always the newest.
 */
export function usageSeries(history: Telemetry[], deviceId: string, windowSeconds: number, now: number, maxPoints = 300): UsagePoint[] {
  const oldest = now - windowSeconds;
  let first = history.length;
  while (first > 0 && history[first - 1]!.time >= oldest) first--;
  const recent = history.slice(first);
  const stride = Math.max(1, Math.ceil(recent.length / maxPoints));

  const points: UsagePoint[] = [];
  for (let index = 0; index < recent.length; index += stride) points.push(...pointOf(recent[index]!, deviceId));
  const newest = recent[recent.length - 1];
  if (newest && (recent.length - 1) % stride !== 0) points.push(...pointOf(newest, deviceId));
  return points;
}

function pointOf(sample: Telemetry, deviceId: string): UsagePoint[] {
  const usage = deviceUsage(sample).find((entry) => entry.id === deviceId);
  if (!usage) return [];
  return [{ time: sample.time, train: usage.train, inference: usage.inference, other: usage.other, total: usage.total }];
}

export interface ChartBox {
  width: number;
  height: number;
  // Time range on the x axis, seconds since the Unix epoch.
  start: number;
  end: number;
  // Bytes at the top of the y axis.
  maxBytes: number;
}

/** Returns the SVG path of each layer's area, stacked in LAYERS order, or empty strings with fewer than 2 points. */
export function stackedPaths(points: UsagePoint[], box: ChartBox): Record<Layer, string> {
  const paths: Record<Layer, string> = { train: "", inference: "", other: "" };
  if (points.length < 2) return paths;
  const span = Math.max(box.end - box.start, 1e-9);
  const x = (time: number) => (((time - box.start) / span) * box.width).toFixed(1);
  const y = (bytes: number) => (box.height - (Math.min(bytes, box.maxBytes) / Math.max(box.maxBytes, 1)) * box.height).toFixed(1);

  let below = points.map(() => 0);
  for (const layer of LAYERS) {
    const above = points.map((point, index) => below[index]! + point[layer]);
    const top = points.map((point, index) => `${x(point.time)},${y(above[index]!)}`);
    const bottom = points.map((point, index) => `${x(point.time)},${y(below[index]!)}`).reverse();
    paths[layer] = `M${top.join("L")}L${bottom.join("L")}Z`;
    below = above;
  }
  return paths;
}
