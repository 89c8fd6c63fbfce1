// Pure views of a run's stored events (runs.events and the live run.* messages): the console
// text, stage progress, metric series, artifacts and spawns.
import {
  ArtifactPayload,
  MetricPayload,
  OutputPayload,
  ProgressPayload,
  SpawnPayload,
  StagesPayload,
  type RunEvent,
} from "@galley/common";

/** Inserts `event` in seq order; an event whose seq is already present is ignored. */
export function insertEvent(events: RunEvent[], event: RunEvent): RunEvent[] {
  const last = events[events.length - 1];
  if (!last || last.seq < event.seq) return [...events, event];
  if (events.some((existing) => existing.seq === event.seq)) return events;
  return [...events, event].sort((a, b) => a.seq - b.seq);
}

export function mergeEvents(current: RunEvent[], incoming: RunEvent[]): RunEvent[] {
  const bySeq = new Map<number, RunEvent>();
  for (const event of current) bySeq.set(event.seq, event);
  for (const event of incoming) bySeq.set(event.seq, event);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

export interface OutputChunk {
  seq: number;
  stream: "stdout" | "stderr";
  text: string;
}

export function outputChunks(events: RunEvent[]): OutputChunk[] {
  const chunks: OutputChunk[] = [];
  for (const event of events) {
    if (event.type !== "stdout" && event.type !== "stderr") continue;
    const payload = OutputPayload.safeParse(event.payload);
    if (payload.success) chunks.push({ seq: event.seq, stream: event.type, text: payload.data.text });
  }
  return chunks;
}

export interface StageProgress {
  stage: string;
  total: number;
  done: number;
}

/** Stages in the order the recipe registered them, each with its latest progress. */
export function stageProgress(events: RunEvent[]): StageProgress[] {
  const stages = new Map<string, StageProgress>();
  for (const event of events) {
    if (event.type === "stages") {
      const payload = StagesPayload.safeParse(event.payload);
      if (!payload.success) continue;
      for (const stage of payload.data.stages) {
        if (!stages.has(stage)) stages.set(stage, { stage, total: 0, done: 0 });
      }
    } else if (event.type === "progress") {
      const payload = ProgressPayload.safeParse(event.payload);
      if (payload.success) stages.set(payload.data.stage, { ...payload.data });
    }
  }
  return [...stages.values()];
}

export interface MetricPoint {
  step: number;
  value: number;
}

/** Metric series by name. A metric logged without a step gets its index in the series. */
export function metricSeries(events: RunEvent[]): Map<string, MetricPoint[]> {
  const series = new Map<string, MetricPoint[]>();
  for (const event of events) {
    if (event.type !== "metric") continue;
    const payload = MetricPayload.safeParse(event.payload);
    if (!payload.success) continue;
    const points = series.get(payload.data.name) ?? [];
    points.push({ step: payload.data.step ?? points.length, value: payload.data.value });
    series.set(payload.data.name, points);
  }
  return series;
}

export function artifacts(events: RunEvent[]) {
  return events.flatMap((event) => {
    if (event.type !== "artifact") return [];
    const payload = ArtifactPayload.safeParse(event.payload);
    return payload.success ? [payload.data] : [];
  });
}

export function spawns(events: RunEvent[]) {
  return events.flatMap((event) => {
    if (event.type !== "spawn") return [];
    const payload = SpawnPayload.safeParse(event.payload);
    return payload.success ? [payload.data] : [];
  });
}
