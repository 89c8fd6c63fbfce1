// The workspace's recipes: open, create from a starter template, rename and delete (after a
// confirmation). The list follows the disk: files added or removed outside Galley show up.
import type { WorkspaceEntry } from "@galley/common";
import { useState } from "react";

import { confirmAction } from "../../stores/dialogs";
import { useUi } from "../../stores/ui";
import { isDirty, recipeEntries, useWorkspace } from "../../stores/workspace";

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

function withPyExtension(name: string): string {
  const trimmed = name.trim();
  return trimmed.endsWith(".py") ? trimmed : `${trimmed}.py`;
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

  if (renaming) {
    const submit = (name: string) => {
      const target = withPyExtension(name);
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
        className={active ? "file active" : "file"}
        data-testid="recipe-item"
        data-path={entry.path}
        title={entry.path}
        onClick={() => void useWorkspace.getState().open(entry.path).catch((error: unknown) => reportError(`Opening ${entry.path}`, error))}
      >
        {entry.path}
        {dirty && <span className="dirty" title="Unsaved changes"> ●</span>}
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

  const recipes = recipeEntries(entries);

  function submitNew(name: string) {
    const path = withPyExtension(name);
    setCreating(false);
    void useWorkspace
      .getState()
      .create(path, NEW_RECIPE)
      .catch((error: unknown) => reportError(`Creating ${path}`, error));
  }

  return (
    <aside className="explorer">
      <div className="panel-title">
        <span title={root ?? undefined}>Recipes</span>
        <button className="small" data-testid="new-recipe" onClick={() => setCreating(true)}>
          New
        </button>
      </div>
      {creating && <NameField initial="" onSubmit={submitNew} onCancel={() => setCreating(false)} testId="new-recipe-name" />}
      <ul className="file-list" data-testid="recipe-list">
        {recipes.map((entry) => (
          <FileItem key={entry.path} entry={entry} active={entry.path === active} renaming={renaming === entry.path} onRename={setRenaming} />
        ))}
        {recipes.length === 0 && <li className="muted">No recipes in {root ?? "the workspace"}.</li>}
      </ul>
    </aside>
  );
}
