// A small structured logger: one line per record, to stderr (filtered by level) and to an
// optional log file (every record at info and above).
import fs from "node:fs";
import path from "node:path";

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(scope: string): Logger;
  /** The log file, when there is one; error messages point users at it. */
  readonly filePath: string | null;
}

export interface LoggerOptions {
  /** Minimum level written to stderr. GALLEY_LOG_LEVEL (debug, info, warning, error) overrides it. */
  consoleLevel?: LogLevel;
  filePath?: string | null;
  scope?: string;
}

function formatFields(fields: LogFields | undefined): string {
  if (!fields) return "";
  const parts: string[] = [];
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const text = String(value);
    parts.push(/[\s"=]/.test(text) ? `${name}=${JSON.stringify(text)}` : `${name}=${text}`);
  }
  return parts.length > 0 ? ` ${parts.join(" ")}` : "";
}

class LineLogger implements Logger {
  constructor(
    private readonly consoleRank: number,
    private readonly file: fs.WriteStream | null,
    readonly filePath: string | null,
    private readonly scope: string,
  ) {}

  private write(level: Exclude<LogLevel, "silent">, message: string, fields?: LogFields): void {
    const line = `${new Date().toISOString()} ${level.padEnd(5)} [${this.scope}] ${message}${formatFields(fields)}\n`;
    if (LEVEL_RANK[level] >= this.consoleRank) process.stderr.write(line);
    if (this.file && LEVEL_RANK[level] >= LEVEL_RANK.info) this.file.write(line);
  }

  debug(message: string, fields?: LogFields): void {
    this.write("debug", message, fields);
  }
  info(message: string, fields?: LogFields): void {
    this.write("info", message, fields);
  }
  warn(message: string, fields?: LogFields): void {
    this.write("warn", message, fields);
  }
  error(message: string, fields?: LogFields): void {
    this.write("error", message, fields);
  }
  child(scope: string): Logger {
    return new LineLogger(this.consoleRank, this.file, this.filePath, scope);
  }
}

// GALLEY_LOG_LEVEL also sets the engine's and the runner's Python logging level, so Python's
// names are accepted too.
const ENV_LEVELS: Record<string, LogLevel> = {
  debug: "debug",
  info: "info",
  warn: "warn",
  warning: "warn",
  error: "error",
  critical: "error",
};

export function createLogger(options: LoggerOptions = {}): Logger {
  const envLevel = ENV_LEVELS[(process.env.GALLEY_LOG_LEVEL ?? "").toLowerCase()];
  const level = envLevel ?? options.consoleLevel ?? "info";
  let file: fs.WriteStream | null = null;
  if (options.filePath) {
    fs.mkdirSync(path.dirname(options.filePath), { recursive: true });
    file = fs.createWriteStream(options.filePath, { flags: "a" });
  }
  return new LineLogger(LEVEL_RANK[level], file, options.filePath ?? null, options.scope ?? "galley");
}

/** Returns a logger that drops every record, for tests of components that need one. */
export function silentLogger(): Logger {
  return new LineLogger(LEVEL_RANK.silent, null, null, "silent");
}
