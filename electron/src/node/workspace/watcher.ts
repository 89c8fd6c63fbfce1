// Watches the workspace folder for changes made outside Galley (another editor, git, a
// recipe writing files) and reports the changed paths in batches, so the workbench can
// reload its file list and the open files.
import fs from "node:fs";
import path from "node:path";

import type { Logger } from "../log.js";
import { isHiddenPath } from "./workspace.js";

// Editors save through a temporary file and a rename, which fires several events; a short
// quiet period collects them into one report.
const DEFAULT_DEBOUNCE_MS = 150;
// A checkout or a recursive delete can touch thousands of files; clients reload everything
// anyway, so one report carries at most this many paths.
const MAX_PATHS_PER_REPORT = 500;

export class WorkspaceWatcher {
  private watcher: fs.FSWatcher | null = null;
  private pending = new Set<string>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly root: string,
    private readonly report: (paths: string[]) => void,
    private readonly log: Logger,
    private readonly debounceMs = DEFAULT_DEBOUNCE_MS,
  ) {}

  start(): void {
    if (this.watcher) return;
    try {
      // Recursive watching on Linux needs Node 20 or newer (inotify on every folder).
      this.watcher = fs.watch(this.root, { recursive: true }, (_event, filename) => this.collect(filename));
    } catch (error) {
      this.log.warn("cannot watch the workspace; files changed outside Galley show up after a reload", {
        root: this.root,
        error: (error as Error).message,
      });
      return;
    }
    this.watcher.on("error", (error) => {
      this.log.warn("workspace watcher failed; files changed outside Galley show up after a reload", {
        root: this.root,
        error: error.message,
      });
      this.close();
    });
    this.log.debug("watching the workspace", { root: this.root });
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending.clear();
    this.watcher?.close();
    this.watcher = null;
  }

  private collect(filename: string | Buffer | null): void {
    // Without a file name (some platforms) the change is somewhere in the workspace.
    const relative = filename ? filename.toString().split(path.sep).join("/") : "";
    if (relative && isHiddenPath(relative)) return;
    if (this.pending.size < MAX_PATHS_PER_REPORT) this.pending.add(relative);
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), this.debounceMs);
  }

  private flush(): void {
    this.timer = null;
    const paths = [...this.pending].filter((entry) => entry !== "").sort();
    const unnamed = this.pending.has("");
    this.pending.clear();
    if (paths.length === 0 && !unnamed) return;
    this.report(paths);
  }
}
