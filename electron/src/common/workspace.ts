// The recipe workspace: a folder on disk whose files the workbench lists and edits.
import { z } from "zod";

/** Largest workspace file, in bytes, that workspace.read returns; the workbench keeps bigger ones closed. */
export const MAX_WORKSPACE_READ_BYTES = 5 * 1024 * 1024;

/** A path relative to the workspace root, with '/' separators. */
export const WorkspacePath = z.string().min(1, "give a path inside the workspace");

export const WorkspaceEntry = z.object({
  path: WorkspacePath,
  kind: z.enum(["file", "directory"]),
  size: z.number().int().nonnegative(),
  // Milliseconds since the Unix epoch.
  mtime: z.number(),
});
export type WorkspaceEntry = z.infer<typeof WorkspaceEntry>;

export const WorkspaceFile = z.object({
  path: WorkspacePath,
  content: z.string(),
  mtime: z.number(),
});
export type WorkspaceFile = z.infer<typeof WorkspaceFile>;

export const WorkspaceInfo = z.object({
  root: z.string(),
});

export const PathParams = z.object({ path: WorkspacePath });

export const WriteFileParams = z.object({
  path: WorkspacePath,
  content: z.string(),
});

export const CreateFileParams = z.object({
  path: WorkspacePath,
  content: z.string().default(""),
});

export const RenameParams = z.object({
  from: WorkspacePath,
  to: WorkspacePath,
});

/** JSON Schema of a recipe's input config, from `python -m galley.run FILE --schema`. */
export const RecipeSchema = z.object({
  path: WorkspacePath,
  schema: z.record(z.string(), z.unknown()),
});
