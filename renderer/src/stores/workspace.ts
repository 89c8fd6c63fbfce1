// The recipe workspace: its file list, the files open in editor tabs, and where the editor
// should jump next (an error's file:line).
import type { WorkspaceEntry } from "@galley/common";
import { create } from "zustand";

import { call } from "../api/client";

export interface OpenFile {
  path: string;
  content: string;
  // Content as last read from or written to disk; the tab is dirty when they differ.
  saved: string;
  mtime: number;
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
}

let revealNonce = 0;

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
        files: { ...state.files, [path]: { path, content: file.content, saved: file.content, mtime: file.mtime } },
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
    const written = await call("workspace.write", { path, content: file.content });
    set((state) => {
      const current = state.files[path];
      if (!current) return state;
      // Keep edits typed while the write was in flight: only what was sent counts as saved.
      return { files: { ...state.files, [path]: { ...current, saved: file.content, mtime: written.mtime } } };
    });
    await get().load();
  },

  async create(path, content) {
    await call("workspace.create", { path, content });
    await get().load();
    await get().open(path);
  },
}));

export function isDirty(file: OpenFile | undefined): boolean {
  return file !== undefined && file.content !== file.saved;
}

/** Workspace files that look like recipes, sorted by path. */
export function recipeEntries(entries: WorkspaceEntry[]): WorkspaceEntry[] {
  return entries
    .filter((entry) => entry.kind === "file" && entry.path.endsWith(".py"))
    .sort((a, b) => a.path.localeCompare(b.path));
}
