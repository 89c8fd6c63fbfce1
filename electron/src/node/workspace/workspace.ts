// File operations inside the recipe workspace. Every path a client sends is resolved inside
// the workspace root: `..` segments, absolute paths and symlinks that lead outside are rejected.
import fs from "node:fs";
import path from "node:path";

import { MAX_WORKSPACE_READ_BYTES, type WorkspaceEntry, type WorkspaceFile } from "../../common/index.js";
import { conflict, invalidRequest, notFound } from "../errors.js";

// Folders that hold tool state, not recipes.
const HIDDEN_DIRECTORIES = new Set(["__pycache__", "node_modules", ".git", ".venv", ".mypy_cache", ".ruff_cache"]);
const MAX_LISTED_ENTRIES = 5000;

/** Returns whether `list()` leaves this workspace-relative path out (dot files and tool folders). */
export function isHiddenPath(relative: string): boolean {
  return relative.split(/[\\/]/).some((segment) => segment.startsWith(".") || HIDDEN_DIRECTORIES.has(segment));
}

function isInside(root: string, candidate: string): boolean {
  return candidate === root || candidate.startsWith(root + path.sep);
}

function lexists(file: string): boolean {
  try {
    fs.lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

export class Workspace {
  readonly root: string;

  constructor(root: string) {
    fs.mkdirSync(root, { recursive: true });
    this.root = fs.realpathSync(root);
  }

  /**
   * Returns the absolute path of a workspace-relative path. The deepest existing ancestor is
   * resolved through symlinks and must stay inside the root, so a link cannot lead out.
   */
  resolve(relative: string): string {
    if (relative.includes("\0")) throw invalidRequest(`path ${JSON.stringify(relative)} contains a NUL byte`);
    if (path.isAbsolute(relative) || path.win32.isAbsolute(relative)) {
      throw invalidRequest(`path "${relative}" is absolute; give a path relative to the workspace root`);
    }
    const segments = relative.split(/[\\/]+/).filter((segment) => segment !== "" && segment !== ".");
    if (segments.includes("..")) {
      throw invalidRequest(`path "${relative}" contains "..", which could leave the workspace`);
    }
    if (segments.length === 0) throw invalidRequest(`path "${relative}" names the workspace root itself`);

    const target = path.join(this.root, ...segments);
    // lstat, not exists: a dangling symlink exists here and must not be skipped over.
    let existing = target;
    while (!lexists(existing)) existing = path.dirname(existing);
    let real: string;
    try {
      real = fs.realpathSync(existing);
    } catch {
      throw invalidRequest(`path "${relative}" goes through a broken symbolic link`);
    }
    if (!isInside(this.root, real)) {
      throw invalidRequest(`path "${relative}" leads outside the workspace through a symbolic link`);
    }
    return target;
  }

  private toRelative(absolute: string): string {
    return path.relative(this.root, absolute).split(path.sep).join("/");
  }

  private entry(absolute: string): WorkspaceEntry {
    const stat = fs.statSync(absolute);
    return {
      path: this.toRelative(absolute),
      kind: stat.isDirectory() ? "directory" : "file",
      size: stat.isDirectory() ? 0 : stat.size,
      mtime: stat.mtimeMs,
    };
  }

  /** Lists files and folders depth-first, sorted by name; hidden and tool folders are skipped. */
  list(): WorkspaceEntry[] {
    const entries: WorkspaceEntry[] = [];
    const walk = (dir: string) => {
      const children = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
      for (const child of children) {
        if (entries.length >= MAX_LISTED_ENTRIES) return;
        if (isHiddenPath(child.name)) continue;
        const absolute = path.join(dir, child.name);
        // Symlinks are listed only when they stay inside the workspace.
        let real: string;
        try {
          real = fs.realpathSync(absolute);
        } catch {
          continue;
        }
        if (!isInside(this.root, real)) continue;
        const entry = this.entry(absolute);
        entries.push(entry);
        if (entry.kind === "directory" && !child.isSymbolicLink()) walk(absolute);
      }
    };
    walk(this.root);
    return entries;
  }

  private existingFile(relative: string): string {
    const absolute = this.resolve(relative);
    if (!fs.existsSync(absolute)) throw notFound(`workspace file "${relative}" does not exist`);
    return absolute;
  }

  read(relative: string): WorkspaceFile {
    const absolute = this.existingFile(relative);
    const stat = fs.statSync(absolute);
    if (stat.isDirectory()) throw invalidRequest(`"${relative}" is a folder, not a file`);
    if (stat.size > MAX_WORKSPACE_READ_BYTES) {
      throw invalidRequest(`"${relative}" is ${stat.size} bytes; the editor opens files up to ${MAX_WORKSPACE_READ_BYTES} bytes`);
    }
    return { path: this.toRelative(absolute), content: fs.readFileSync(absolute, "utf8"), mtime: stat.mtimeMs };
  }

  /** Overwrites an existing file. */
  write(relative: string, content: string): WorkspaceEntry {
    const absolute = this.existingFile(relative);
    if (fs.statSync(absolute).isDirectory()) throw invalidRequest(`"${relative}" is a folder, not a file`);
    fs.writeFileSync(absolute, content, "utf8");
    return this.entry(absolute);
  }

  /** Creates a file and any missing parent folders; conflict if it exists. */
  create(relative: string, content: string): WorkspaceEntry {
    const absolute = this.resolve(relative);
    fs.mkdirSync(path.dirname(absolute), { recursive: true });
    try {
      fs.writeFileSync(absolute, content, { encoding: "utf8", flag: "wx" });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") throw conflict(`workspace file "${relative}" already exists`);
      throw error;
    }
    return this.entry(absolute);
  }

  rename(from: string, to: string): WorkspaceEntry {
    const source = this.existingFile(from);
    const target = this.resolve(to);
    if (fs.existsSync(target)) throw conflict(`workspace path "${to}" already exists`);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.renameSync(source, target);
    return this.entry(target);
  }

  /** Deletes a file or an empty folder. */
  remove(relative: string): { path: string } {
    const absolute = this.existingFile(relative);
    if (fs.lstatSync(absolute).isDirectory()) {
      try {
        fs.rmdirSync(absolute);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOTEMPTY") {
          throw conflict(`folder "${relative}" is not empty; delete its files first`);
        }
        throw error;
      }
    } else {
      fs.unlinkSync(absolute);
    }
    return { path: relative };
  }
}
