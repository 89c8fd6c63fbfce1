// Finds file:line references in run output (the runner's `error: FILE:LINE: message` line and
// Python traceback frames) and maps them to workspace paths the editor can open.

export interface TextPart {
  text: string;
  location: { file: string; line: number } | null;
}

// `error: recipe.py:12: message` as the runner's last line, and `  File "/x/recipe.py", line 12`.
const PATTERNS = [/(?<=^error: )(?<file>[^\s:][^:\n]*\.py):(?<line>\d+)/gm, /File "(?<file>[^"\n]+\.py)", line (?<line>\d+)/g];

/** Splits `text` into plain parts and parts that name a file and line. */
export function splitLocations(text: string): TextPart[] {
  const matches: { start: number; end: number; file: string; line: number }[] = [];
  for (const pattern of PATTERNS) {
    for (const match of text.matchAll(pattern)) {
      const file = match.groups?.file;
      const line = Number(match.groups?.line);
      if (file === undefined || match.index === undefined) continue;
      matches.push({ start: match.index, end: match.index + match[0].length, file, line });
    }
  }
  matches.sort((a, b) => a.start - b.start);

  const parts: TextPart[] = [];
  let cursor = 0;
  for (const match of matches) {
    if (match.start < cursor) continue;
    if (match.start > cursor) parts.push({ text: text.slice(cursor, match.start), location: null });
    parts.push({ text: text.slice(match.start, match.end), location: { file: match.file, line: match.line } });
    cursor = match.end;
  }
  if (cursor < text.length) parts.push({ text: text.slice(cursor), location: null });
  return parts;
}

function normalize(path: string): string {
  return path.replace(/\\/g, "/");
}

/**
 * Maps a file named in a run's output to a workspace-relative path, or null when it lies
 * outside the workspace (a library frame). The run's snapshot (runs/<id>/recipe.py) maps to
 * the recipe it was taken from.
 */
export function toWorkspacePath(file: string, workspaceRoot: string | null, recipePath: string | null): string | null {
  const path = normalize(file);
  if (recipePath && /(^|\/)runs\/[^/]+\/recipe\.py$/.test(path)) return toWorkspacePath(recipePath, workspaceRoot, null);
  if (!path.startsWith("/") && !/^[A-Za-z]:\//.test(path)) return path;

  if (!workspaceRoot) return null;
  const root = normalize(workspaceRoot).replace(/\/$/, "") + "/";
  return path.startsWith(root) ? path.slice(root.length) : null;
}
