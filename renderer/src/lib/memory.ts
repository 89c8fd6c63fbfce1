// Splits each device's memory into per-spawn segments from a telemetry sample: measured bytes
// where the worker has reported them, planned bytes until then (and on virtual devices).
import type { DeviceInfo, SpawnTelemetry, Telemetry } from "@galley/common";

import { planComponents, planTotal } from "./format";

export interface SpawnSegment {
  spawn: SpawnTelemetry;
  // Planned and measured bytes of this spawn's ranks on the device.
  planned: number | null;
  measured: number | null;
  // Bytes the bar draws: the measurement, or the plan while there is none.
  bytes: number;
  source: "measured" | "planned";
  plan: [string, number][];
  torch: { allocated: number | null; reserved: number | null; peak: number | null };
}

export interface DeviceMemory {
  device: DeviceInfo;
  segments: SpawnSegment[];
  // Used memory that no Galley spawn accounts for (other processes, the driver).
  other: number;
  free: number;
}

function sumOrNull(values: (number | null | undefined)[]): number | null {
  const present = values.filter((value): value is number => typeof value === "number");
  return present.length === 0 ? null : present.reduce((sum, value) => sum + value, 0);
}

function mergePlans(plans: [string, number][][]): [string, number][] {
  const merged = new Map<string, number>();
  for (const plan of plans) for (const [name, bytes] of plan) merged.set(name, (merged.get(name) ?? 0) + bytes);
  return [...merged.entries()];
}

export function deviceMemory(telemetry: Telemetry): DeviceMemory[] {
  return telemetry.devices.map((device) => {
    const segments: SpawnSegment[] = [];
    for (const spawn of telemetry.spawns) {
      if (spawn.state === "released") continue;
      const ranks = spawn.ranks.filter((rank) => rank.device === device.id);
      if (ranks.length === 0) continue;
      const planned = sumOrNull(ranks.map((rank) => planTotal(rank.plan)));
      const measured = sumOrNull(ranks.map((rank) => rank.process_bytes));
      segments.push({
        spawn,
        planned,
        measured,
        bytes: measured ?? planned ?? 0,
        source: measured !== null ? "measured" : "planned",
        plan: mergePlans(ranks.map((rank) => planComponents(rank.plan))),
        torch: {
          allocated: sumOrNull(ranks.map((rank) => rank.torch_allocated)),
          reserved: sumOrNull(ranks.map((rank) => rank.torch_reserved)),
          peak: sumOrNull(ranks.map((rank) => rank.torch_peak)),
        },
      });
    }
    // Virtual devices count admitted plans as used, so planned segments are subtracted too.
    const bySpawns = segments.reduce((sum, segment) => sum + segment.bytes, 0);
    return {
      device,
      segments,
      other: Math.max(device.used_bytes - bySpawns, 0),
      free: device.free_bytes,
    };
  });
}

/** One device's memory split by what uses it, in bytes. */
export interface DeviceUsage {
  id: string;
  total: number;
  train: number;
  inference: number;
  other: number;
  free: number;
  spawns: number;
}

// Every telemetry sample is summarized once: the timeline redraws its whole history on each
// new sample, and the samples themselves never change.
const usageCache = new WeakMap<Telemetry, DeviceUsage[]>();

/** Splits each device's used memory into train spawns, inference spawns and everything else. */
export function deviceUsage(telemetry: Telemetry): DeviceUsage[] {
  const cached = usageCache.get(telemetry);
  if (cached) return cached;
  const usage = deviceMemory(telemetry).map(({ device, segments, other, free }) => {
    let train = 0;
    let inference = 0;
    for (const segment of segments) {
      if (segment.spawn.kind === "train") train += segment.bytes;
      else inference += segment.bytes;
    }
    return { id: device.id, total: device.total_bytes, train, inference, other, free, spawns: segments.length };
  });
  usageCache.set(telemetry, usage);
  return usage;
}
