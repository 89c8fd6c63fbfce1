// serve.json in the data directory, which lets a `galley` command on this machine find a
// running control plane (`galley serve` or the app) and authenticate to it. The file contains
// a second, local token and is readable only by its owner (mode 0600). Holding that token
// proves the same user on the same machine, so the server lets it run recipes from any folder.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

import { z } from "zod";

export const SERVE_FILE_NAME = "serve.json";

export const ServeFile = z.object({
  /** Origin of the HTTP API, e.g. http://127.0.0.1:41761. */
  url: z.string().url(),
  pid: z.number().int().positive(),
  /** The local token; never printed. */
  token: z.string().min(1),
  workspace: z.string(),
  started_at: z.string(),
});
export type ServeFile = z.infer<typeof ServeFile>;

export type ServeFileRead = { state: "missing" } | { state: "invalid"; reason: string } | { state: "present"; record: ServeFile };

export function serveFilePath(home: string): string {
  return path.join(home, SERVE_FILE_NAME);
}

export function newLocalToken(): string {
  return crypto.randomBytes(32).toString("base64url");
}

/**
 * Writes serve.json with mode 0600 through a temporary file and a rename, so a reader never
 * sees half a file.
 * NOTE: on Windows the mode is ignored; the file inherits the data directory's ACL.
 */
export function writeServeFile(home: string, record: ServeFile): void {
  const file = serveFilePath(home);
  const temporary = `${file}.${process.pid}.tmp`;
  fs.rmSync(temporary, { force: true });
  fs.writeFileSync(temporary, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  fs.renameSync(temporary, file);
}

export function readServeFile(home: string): ServeFileRead {
  let text: string;
  try {
    text = fs.readFileSync(serveFilePath(home), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { state: "missing" };
    return { state: "invalid", reason: (error as Error).message };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { state: "invalid", reason: `not valid JSON: ${(error as Error).message}` };
  }
  const parsed = ServeFile.safeParse(value);
  if (!parsed.success) return { state: "invalid", reason: parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ") };
  return { state: "present", record: parsed.data };
}

/** Removes serve.json when it still belongs to the process `pid`; a newer server may have replaced it. */
export function removeServeFile(home: string, pid = process.pid): void {
  const current = readServeFile(home);
  if (current.state === "present" && current.record.pid !== pid) return;
  fs.rmSync(serveFilePath(home), { force: true });
}
