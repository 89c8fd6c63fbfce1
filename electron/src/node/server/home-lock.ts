// Lock files in the data directory that one process holds at a time: serve.lock while a
// `galley serve` starts and runs, defaults.lock while the default model is generated. A lock
// file contains its holder's pid, so a lock left by a process that died is taken over.
import fs from "node:fs";

import { processExists } from "../processes.js";

export type LockAttempt = { acquired: true; release(): void } | { acquired: false; holder: number };

const POLL_MS = 200;

function readHolder(file: string): number | null {
  try {
    const pid = Number(fs.readFileSync(file, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Creates `file` with this process's pid unless another live process holds it. The pid is
 * written to a temporary file first and linked into place, which fails when the lock exists,
 * so a reader never sees an empty lock file.
 * NOTE: taking over the lock of a dead process (remove, then link) is not atomic. Two
 * processes that find the same stale lock at the same moment can both acquire it.
 */
export function tryLock(file: string): LockAttempt {
  const temporary = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, `${process.pid}\n`, { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.linkSync(temporary, file);
        return { acquired: true, release: () => releaseLock(file) };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const holder = readHolder(file);
      // A lock of this process is held too: by another control plane in it.
      if (holder !== null && processExists(holder)) return { acquired: false, holder };
      // Left by a process that exited (or unreadable): take it over.
      fs.rmSync(file, { force: true });
    }
    return { acquired: false, holder: readHolder(file) ?? 0 };
  } finally {
    fs.rmSync(temporary, { force: true });
  }
}

/** Returns the pid of the live process that holds the lock `file`, or null when no live process holds it. */
export function lockHolder(file: string): number | null {
  const holder = readHolder(file);
  return holder !== null && processExists(holder) ? holder : null;
}

/** Removes the lock file when this process still holds it. */
function releaseLock(file: string): void {
  if (readHolder(file) === process.pid) fs.rmSync(file, { force: true });
}

/**
 * Waits until this process holds the lock `file`. Calls `onWait` once with the holder's pid
 * when another process holds it; rejects after `timeoutMs`.
 */
export async function waitForLock(file: string, timeoutMs: number, onWait: (holder: number) => void): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  let told = false;
  for (;;) {
    const attempt = tryLock(file);
    if (attempt.acquired) return attempt.release;
    if (!told) onWait(attempt.holder);
    told = true;
    if (Date.now() > deadline) {
      throw new Error(
        `process ${attempt.holder} has held ${file} for more than ${timeoutMs / 1000} s; ` +
          `if it is stuck, stop it, or delete ${file} if process ${attempt.holder} is not a galley process`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
