// A rolling window of the engine's telemetry samples, for the GPU panel's timeline.
import type { Telemetry } from "../../common/index.js";

export const HISTORY_WINDOW_SECONDS = 10 * 60;

export class TelemetryHistory {
  private samples: Telemetry[] = [];

  constructor(private readonly windowSeconds = HISTORY_WINDOW_SECONDS) {}

  push(sample: Telemetry): void {
    this.samples.push(sample);
    const oldest = sample.time - this.windowSeconds;
    // Samples arrive in time order, so the expired ones are a prefix.
    let expired = 0;
    while (expired < this.samples.length && this.samples[expired]!.time < oldest) expired++;
    if (expired > 0) this.samples = this.samples.slice(expired);
  }

  latest(): Telemetry | null {
    return this.samples.at(-1) ?? null;
  }

  /** Samples newer than `since` (seconds since the Unix epoch), oldest first. */
  since(since: number): Telemetry[] {
    return this.samples.filter((sample) => sample.time > since);
  }

  clear(): void {
    this.samples = [];
  }
}
