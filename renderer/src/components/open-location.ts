// Opens a file:line from run output or an error in the workbench editor.
import { toWorkspacePath } from "../lib/locations";
import { useUi } from "../stores/ui";
import { useWorkspace } from "../stores/workspace";

/** Returns false when the file is outside the workspace, so nothing can be opened. */
export function openLocation(file: string, line: number, recipePath: string | null): boolean {
  const path = toWorkspacePath(file, useWorkspace.getState().root, recipePath);
  if (!path) return false;
  useUi.getState().show("workbench");
  void useWorkspace
    .getState()
    .open(path, line)
    .catch((error: unknown) => useUi.getState().reportError(`Opening ${path}`, error));
  return true;
}
