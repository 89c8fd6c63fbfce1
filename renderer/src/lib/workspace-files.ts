// File-type rules of the workspace: the Monaco language of each file, and the files the editor
// keeps closed (binary by extension, or larger than the server's read limit) or read-only.
import { MAX_WORKSPACE_READ_BYTES, type WorkspaceEntry } from "@galley/common";

import { fileSize } from "./format";

const LANGUAGES: Record<string, string> = {
  py: "python",
  json: "json",
  jsonl: "jsonl",
  ndjson: "jsonl",
  md: "markdown",
  markdown: "markdown",
  yaml: "yaml",
  yml: "yaml",
  sh: "shell",
  bash: "shell",
  ini: "ini",
  cfg: "ini",
  toml: "ini",
};

// Weights, tensors, archives, images and compiled files: their bytes are not text, and a
// round trip through the editor's UTF-8 text would corrupt them.
const BINARY_EXTENSIONS = new Set([
  "safetensors", "bin", "pt", "pth", "ckpt", "gguf", "onnx", "npy", "npz", "pkl", "pickle",
  "parquet", "arrow", "feather", "h5", "hdf5", "db", "sqlite",
  "zip", "gz", "tgz", "tar", "bz2", "xz", "zst", "7z", "whl",
  "png", "jpg", "jpeg", "gif", "webp", "bmp", "ico", "pdf",
  "pyc", "so", "dylib", "dll", "exe", "o", "a",
]);

function extensionOf(path: string): string {
  const name = path.slice(path.lastIndexOf("/") + 1);
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
}

/** Returns the Monaco language id for a workspace path; plain text for unknown extensions. */
export function languageOf(path: string): string {
  return LANGUAGES[extensionOf(path)] ?? "plaintext";
}

/** Returns whether the run panel can run this file: recipes are Python files. */
export function isRecipe(path: string): boolean {
  return extensionOf(path) === "py";
}

/** Reason the editor keeps a listed file closed: a short label for the list, and the full reason. */
export interface ClosedFile {
  label: "binary" | "too large";
  reason: string;
}

/** Returns why the editor does not open a listed file, or null when it opens it. */
export function closedReason(entry: WorkspaceEntry): ClosedFile | null {
  if (BINARY_EXTENSIONS.has(extensionOf(entry.path))) {
    return { label: "binary", reason: "binary file; the editor opens text files only" };
  }
  if (entry.size > MAX_WORKSPACE_READ_BYTES) {
    const reason = `${fileSize(entry.size)}; the editor opens files up to ${fileSize(MAX_WORKSPACE_READ_BYTES)}`;
    return { label: "too large", reason };
  }
  return null;
}

/**
 * Returns why an opened file's text must not be saved back, or null. The server reads files as
 * UTF-8, so a NUL byte or a replacement character (what bytes that are not UTF-8 decode to)
 * means the text may differ from the bytes on disk.
 */
export function readOnlyReason(content: string): string | null {
  if (content.includes("\u0000") || content.includes("\uFFFD")) {
    return "contains bytes that are not UTF-8 text, and saving would change them";
  }
  return null;
}
