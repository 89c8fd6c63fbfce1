// Parsing what the recipe runner writes: output chunks, the JSON event lines on
// GALLEY_EVENTS_FD (which also carry the recipe's stdout and stderr as ordered "output"
// records), and the final `error: FILE:LINE: message` line on stderr.
import path from "node:path";
import { StringDecoder } from "node:string_decoder";

import type { RunError, RunEventType } from "../../common/index.js";

// Enough stderr to hold a traceback and the error line after it.
const STDERR_TAIL_CHARS = 64 * 1024;

/** Decodes output chunks as UTF-8 without splitting a character across chunks. */
export class OutputCollector {
  private readonly decoders = { stdout: new StringDecoder("utf8"), stderr: new StringDecoder("utf8") };
  private tail = "";

  constructor(private readonly sink: (stream: "stdout" | "stderr", text: string) => void) {}

  write(stream: "stdout" | "stderr", chunk: Buffer): void {
    const text = this.decoders[stream].write(chunk);
    if (text) this.emit(stream, text);
  }

  /** Accepts text that arrived already decoded, as an output record on the events pipe. */
  writeText(stream: "stdout" | "stderr", text: string): void {
    if (text) this.emit(stream, text);
  }

  flush(): void {
    for (const stream of ["stdout", "stderr"] as const) {
      const text = this.decoders[stream].end();
      if (text) this.emit(stream, text);
    }
  }

  stderrTail(): string {
    return this.tail;
  }

  private emit(stream: "stdout" | "stderr", text: string): void {
    if (stream === "stderr") this.tail = (this.tail + text).slice(-STDERR_TAIL_CHARS);
    this.sink(stream, text);
  }
}

const RUNNER_EVENT_TYPES = new Set<RunEventType>(["stages", "progress", "metric", "artifact", "error", "spawn"]);

/**
 * Turns one line of GALLEY_EVENTS_FD into a run event; unknown or malformed lines become "other".
 * An output record `{"type": "output", "stream", "text"}` becomes a "stdout" or "stderr" event
 * with payload `{text}`, as output read from the pipes is stored.
 */
export function parseRunnerEvent(line: string): { type: RunEventType; payload: Record<string, unknown> } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { type: "other", payload: { line } };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return { type: "other", payload: { line } };
  const { type, ...payload } = value as Record<string, unknown>;
  if (type === "output" && (payload.stream === "stdout" || payload.stream === "stderr") && typeof payload.text === "string") {
    return { type: payload.stream, payload: { text: payload.text } };
  }
  if (typeof type === "string" && RUNNER_EVENT_TYPES.has(type as RunEventType)) {
    return { type: type as RunEventType, payload };
  }
  return { type: "other", payload: value as Record<string, unknown> };
}

const ERROR_LINE = /^error: (.*)$/;
const LOCATED = /^(.+?):(\d+): ([\s\S]*)$/;

/**
 * Finds the runner's last `error: ...` line (and any lines after it) and splits off the file
 * and line. The snapshot path runs/<id>/recipe.py is reported as the recipe's own path, so
 * the editor can open it.
 */
export function parseRunError(stderr: string, snapshotPath: string, recipePath: string): RunError | null {
  const lines = stderr.trimEnd().split(/\r?\n/);
  let index = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (ERROR_LINE.test(lines[i]!)) {
      index = i;
      break;
    }
  }
  if (index === -1) return null;
  const text = [ERROR_LINE.exec(lines[index]!)![1]!, ...lines.slice(index + 1)].join("\n").trim();
  const located = LOCATED.exec(text);
  if (!located) return { message: text, file: null, line: null };

  const file = located[1]!;
  const isSnapshot =
    path.resolve(file) === path.resolve(snapshotPath) || (!path.isAbsolute(file) && path.basename(file) === path.basename(snapshotPath) && !file.includes("/"));
  return { message: located[3]!.trim(), file: isSnapshot ? recipePath : file, line: Number(located[2]) };
}
