// The workspace's files: recipes, and the configs, datasets and notes kept next to them. Open
// text files, create (a new .py file starts from a recipe template), rename and delete (after
// a confirmation). Binary and oversized files are listed but not opened. The list follows the
// disk: files added or removed outside Galley show up.
import type { WorkspaceEntry } from "@galley/common";
import { useState } from "react";

import { closedReason, isRecipe, languageOf } from "../../lib/workspace-files";
import { confirmAction } from "../../stores/dialogs";
import { useUi } from "../../stores/ui";
import { fileEntries, isDirty, useWorkspace } from "../../stores/workspace";

const NEW_RECIPE = `"""Describe what this recipe shows."""

from adaptive_harmony import StringThread
from adaptive_harmony.runtime import RecipeContext, recipe_main


@recipe_main
async def main(ctx: RecipeContext):
    model = await ctx.client.model(
        "model_registry://galley-tiny-qwen3", kv_cache_len=1024, tokens_to_generate=16
    ).spawn_inference("model")
    reply = await model.generate(StringThread([("user", "Hello!")]))
    print(reply.last_content())
`;

/** Appends `extension` (".py") to a typed name whose last segment has none. */
function withExtension(name: string, extension: string): string {
  const trimmed = name.trim();
  const base = trimmed.slice(trimmed.lastIndexOf("/") + 1);
  return base.lastIndexOf(".") > 0 ? trimmed : `${trimmed}${extension}`;
}

/** Returns the extension of a path's last segment with its dot and case, or "" without one. */
function suffixOf(path: string): string {
  const base = path.slice(path.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(dot) : "";
}

async function deleteFile(path: string): Promise<void> {
  const unsaved = isDirty(useWorkspace.getState().files[path]);
  const confirmed = await confirmAction({
    title: `Delete ${path}?`,
    message: `The file is removed from the workspace folder on disk${unsaved ? ", and the unsaved edits in its tab are lost" : ""}. Runs keep their own snapshot of it.`,
    confirmLabel: "Delete",
  });
  if (confirmed) await useWorkspace.getState().remove(path);
}

function NameField({ initial, onSubmit, onCancel, testId }: { initial: string; onSubmit(name: string): void; onCancel(): void; testId: string }) {
  const [name, setName] = useState(initial);
  return (
    <form
      className="name-field"
      onSubmit={(event) => {
        event.preventDefault();
        if (name.trim()) onSubmit(name);
      }}
    >
      <input
        autoFocus
        placeholder="name.py"
        value={name}
        data-testid={testId}
        onChange={(event) => setName(event.target.value)}
        onKeyDown={(event) => event.key === "Escape" && onCancel()}
        onBlur={onCancel}
      />
    </form>
  );
}

function FileItem({ entry, active, renaming, onRename }: { entry: WorkspaceEntry; active: boolean; renaming: boolean; onRename(path: string | null): void }) {
  const reportError = useUi((state) => state.reportError);
  const dirty = useWorkspace((state) => isDirty(state.files[entry.path]));

  const closed = closedReason(entry);

  if (renaming) {
    const submit = (name: string) => {
      // A name typed without an extension keeps the file's own.
      const target = withExtension(name, suffixOf(entry.path));
      onRename(null);
      if (target === entry.path) return;
      void useWorkspace
        .getState()
        .rename(entry.path, target)
        .catch((error: unknown) => reportError(`Renaming ${entry.path} to ${target}`, error));
    };
    return (
      <li>
        <NameField initial={entry.path} onSubmit={submit} onCancel={() => onRename(null)} testId="rename-input" />
      </li>
    );
  }

  return (
    <li className="file-row">
      <button
        className={["file", active ? "active" : "", isRecipe(entry.path) ? "" : "file-other"].filter(Boolean).join(" ")}
        data-testid="workspace-file"
        data-path={entry.path}
        data-language={languageOf(entry.path)}
        data-closed={closed ? "true" : "false"}
        title={closed ? `${entry.path}: ${closed.reason}` : entry.path}
        disabled={closed !== null}
        onClick={() => void useWorkspace.getState().open(entry.path).catch((error: unknown) => reportError(`Opening ${entry.path}`, error))}
      >
        {entry.path}
        {dirty && <span className="dirty" title="Unsaved changes"> ●</span>}
        {closed && <span className="file-note"> {closed.label}</span>}
      </button>
      <span className="file-actions">
        <button className="small icon" title={`Rename ${entry.path}`} aria-label={`Rename ${entry.path}`} data-testid="rename-file" onClick={() => onRename(entry.path)}>
          ✎
        </button>
        <button
          className="small icon"
          title={`Delete ${entry.path}`}
          aria-label={`Delete ${entry.path}`}
          data-testid="delete-file"
          onClick={() => void deleteFile(entry.path).catch((error: unknown) => reportError(`Deleting ${entry.path}`, error))}
        >
          ✕
        </button>
      </span>
    </li>
  );
}

export function Explorer() {
  const root = useWorkspace((state) => state.root);
  const entries = useWorkspace((state) => state.entries);
  const active = useWorkspace((state) => state.active);
  const reportError = useUi((state) => state.reportError);
  const [creating, setCreating] = useState(false);
  const [renaming, setRenaming] = useState<string | null>(null);

  const files = fileEntries(entries);

  function submitNew(name: string) {
    const path = withExtension(name, ".py");
    setCreating(false);
    void useWorkspace
      .getState()
      .create(path, isRecipe(path) ? NEW_RECIPE : "")
      .catch((error: unknown) => reportError(`Creating ${path}`, error));
  }

  return (
    <aside className="explorer">
      <div className="panel-title">
        <span title={root ?? undefined}>Workspace</span>
        <button className="small" data-testid="new-recipe" title="New file; a name without an extension gets .py and a recipe template" onClick={() => setCreating(true)}>
          New
        </button>
      </div>
      {creating && <NameField initial="" onSubmit={submitNew} onCancel={() => setCreating(false)} testId="new-recipe-name" />}
      <ul className="file-list" data-testid="file-list">
        {files.map((entry) => (
          <FileItem key={entry.path} entry={entry} active={entry.path === active} renaming={renaming === entry.path} onRename={setRenaming} />
        ))}
        {files.length === 0 && <li className="muted">No files in {root ?? "the workspace"}.</li>}
      </ul>
    </aside>
  );
}
