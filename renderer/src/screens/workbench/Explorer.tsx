// The workspace's recipes, and a field to create a new one from a starter template.
import { useState } from "react";

import { useUi } from "../../stores/ui";
import { recipeEntries, useWorkspace } from "../../stores/workspace";

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

export function Explorer() {
  const root = useWorkspace((state) => state.root);
  const entries = useWorkspace((state) => state.entries);
  const active = useWorkspace((state) => state.active);
  const open = useWorkspace((state) => state.open);
  const create = useWorkspace((state) => state.create);
  const reportError = useUi((state) => state.reportError);
  const [newName, setNewName] = useState<string | null>(null);

  const recipes = recipeEntries(entries);

  async function submitNew() {
    if (!newName) return;
    const path = newName.endsWith(".py") ? newName : `${newName}.py`;
    try {
      await create(path, NEW_RECIPE);
      setNewName(null);
    } catch (error) {
      reportError(`Creating ${path}`, error);
    }
  }

  return (
    <aside className="explorer">
      <div className="panel-title">
        <span title={root ?? undefined}>Recipes</span>
        <button className="small" data-testid="new-recipe" onClick={() => setNewName("")}>
          New
        </button>
      </div>
      {newName !== null && (
        <form
          className="new-recipe"
          onSubmit={(event) => {
            event.preventDefault();
            void submitNew();
          }}
        >
          <input
            autoFocus
            placeholder="name.py"
            value={newName}
            data-testid="new-recipe-name"
            onChange={(event) => setNewName(event.target.value)}
            onKeyDown={(event) => event.key === "Escape" && setNewName(null)}
          />
        </form>
      )}
      <ul className="file-list" data-testid="recipe-list">
        {recipes.map((entry) => (
          <li key={entry.path}>
            <button
              className={entry.path === active ? "file active" : "file"}
              data-testid="recipe-item"
              data-path={entry.path}
              title={entry.path}
              onClick={() => void open(entry.path).catch((error: unknown) => reportError(`Opening ${entry.path}`, error))}
            >
              {entry.path}
            </button>
          </li>
        ))}
        {recipes.length === 0 && <li className="muted">No recipes in {root ?? "the workspace"}.</li>}
      </ul>
    </aside>
  );
}
