// The recipe workspace: its file list, the files open in editor tabs, where the editor should
// jump next (an error's file:line), and what changed on disk under an open tab.
import type { WorkspaceEntry } from "@galley/common";
import { create } from "zustand";

import { ApiError, call } from "../api/client";
import { readOnlyReason } from "../lib/workspace-files";

export interface OpenFile {
  path: string;
  content: string;
  // Content as last read from or written to disk; the tab is dirty when they differ.
  saved: string;
  mtime: number;
  // The file changed on disk while the tab had unsaved edits: the disk's content, until the
  // person picks a version.
  onDisk: { content: string } | null;
  // The file was deleted on disk while the tab had unsaved edits; Save creates it again.
  deleted: boolean;
  // Reason the tab cannot be edited or saved (its text is not a faithful copy of the bytes), or null.
  readOnly: string | null;
}

export interface RevealRequest {
  path: string;
  line: number;
  // Changes on every request so that revealing the same line twice still scrolls.
  nonce: number;
}

interface WorkspaceState {
  root: string | null;
  entries: WorkspaceEntry[];
  files: Record<string, OpenFile>;
  tabs: string[];
  active: string | null;
  reveal: RevealRequest | null;
  load(): Promise<void>;
  open(path: string, line?: number): Promise<void>;
  close(path: string): void;
  edit(path: string, content: string): void;
  save(path: string): Promise<void>;
  create(path: string, content: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
  /** Reloads the list and the open files among `paths` (every open file when empty). */
  applyDiskChanges(paths: string[]): Promise<void>;
  /** Settles a tab's conflict with the disk: take the disk's version, or keep the edits. */
  resolveConflict(path: string, keep: "disk" | "mine"): void;
}

let revealNonce = 0;

function isNotFound(error: unknown): boolean {
  return error instanceof ApiError && error.body.code === "not_found";
}

/** Moves every key under `from` (the path itself, or its descendants for a folder) to `to`. */
function renamedPath(path: string, from: string, to: string): string {
  if (path === from) return to;
  return path.startsWith(`${from}/`) ? `${to}${path.slice(from.length)}` : path;
}

export const useWorkspace = create<WorkspaceState>()((set, get) => ({
  root: null,
  entries: [],
  files: {},
  tabs: [],
  active: null,
  reveal: null,

  async load() {
    const [info, list] = await Promise.all([call("workspace.info", {}), call("workspace.list", {})]);
    set({ root: info.root, entries: list.entries });
  },

  async open(path, line) {
    if (!get().files[path]) {
      const file = await call("workspace.read", { path });
      set((state) => ({
        files: {
          ...state.files,
          [path]: {
            path,
            content: file.content,
            saved: file.content,
            mtime: file.mtime,
            onDisk: null,
            deleted: false,
            readOnly: readOnlyReason(file.content),
          },
        },
      }));
    }
    set((state) => ({
      tabs: state.tabs.includes(path) ? state.tabs : [...state.tabs, path],
      active: path,
      reveal: line ? { path, line, nonce: ++revealNonce } : state.reveal,
    }));
  },

  close(path) {
    set((state) => {
      const tabs = state.tabs.filter((tab) => tab !== path);
      const files = { ...state.files };
      delete files[path];
      const index = state.tabs.indexOf(path);
      const active = state.active === path ? (tabs[Math.min(index, tabs.length - 1)] ?? null) : state.active;
      return { tabs, files, active };
    });
  },

  edit(path, content) {
    set((state) => {
      const file = state.files[path];
      if (!file) return state;
      return { files: { ...state.files, [path]: { ...file, content } } };
    });
  },

  async save(path) {
    const file = get().files[path];
    if (!file) return;
    if (file.readOnly) throw new Error(`${path} is read-only: it ${file.readOnly}`);
    const written = file.deleted
      ? await call("workspace.create", { path, content: file.content })
      : await call("workspace.write", { path, content: file.content });
    set((state) => {
      const current = state.files[path];
      if (!current) return state;
      // Keep edits typed while the write was in flight: only what was sent counts as saved.
      return {
        files: { ...state.files, [path]: { ...current, saved: file.content, mtime: written.mtime, onDisk: null, deleted: false } },
      };
    });
    await get().load();
  },

  async create(path, content) {
    await call("workspace.create", { path, content });
    await get().load();
    await get().open(path);
  },

  async rename(from, to) {
    await call("workspace.rename", { from, to });
    set((state) => {
      const files: Record<string, OpenFile> = {};
      for (const file of Object.values(state.files)) {
        const path = renamedPath(file.path, from, to);
        files[path] = { ...file, path };
      }
      const active = state.active === null ? null : renamedPath(state.active, from, to);
      return { files, tabs: state.tabs.map((tab) => renamedPath(tab, from, to)), active };
    });
    await get().load();
  },

  async remove(path) {
    await call("workspace.delete", { path });
    get().close(path);
    await get().load();
  },

  async applyDiskChanges(paths) {
    await get().load();
    const open = Object.values(get().files).filter((file) => paths.length === 0 || paths.includes(file.path));
    const updates = await Promise.all(
      open.map(async ({ path }) => {
        try {
          return { path, disk: (await call("workspace.read", { path })).content };
        } catch (error) {
          if (!isNotFound(error)) throw error;
          return { path, disk: null };
        }
      }),
    );
    for (const { path, disk } of updates) {
      const file = get().files[path];
      if (!file) continue;
      if (disk === null) {
        if (isDirty(file)) set((state) => ({ files: { ...state.files, [path]: { ...file, deleted: true, onDisk: null } } }));
        else get().close(path);
        continue;
      }
      let next: OpenFile;
      // Galley's own save, or a change to what the tab already holds: nothing to reload.
      if (disk === file.saved || disk === file.content) next = { ...file, saved: disk, onDisk: null, deleted: false };
      else if (!isDirty(file)) next = { ...file, content: disk, saved: disk, onDisk: null, deleted: false, readOnly: readOnlyReason(disk) };
      else next = { ...file, onDisk: { content: disk }, deleted: false };
      set((state) => ({ files: { ...state.files, [path]: next } }));
    }
  },

  resolveConflict(path, keep) {
    set((state) => {
      const file = state.files[path];
      if (!file?.onDisk) return state;
      const disk = file.onDisk.content;
      // Keeping the edits makes the disk's version the saved one, so the tab stays dirty and
      // Save overwrites the disk.
      const next =
        keep === "disk"
          ? { ...file, content: disk, saved: disk, onDisk: null, readOnly: readOnlyReason(disk) }
          : { ...file, saved: disk, onDisk: null };
      return { files: { ...state.files, [path]: next } };
    });
  },
}));

export function isDirty(file: OpenFile | undefined): boolean {
  return file !== undefined && file.content !== file.saved;
}

/** Returns every file of the workspace (recipes, configs, datasets, notes), sorted by path. */
export function fileEntries(entries: WorkspaceEntry[]): WorkspaceEntry[] {
  return entries.filter((entry) => entry.kind === "file").sort((a, b) => a.path.localeCompare(b.path));
}
