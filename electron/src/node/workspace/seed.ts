// First-start seeding of the recipe workspace with the example recipes.
import fs from "node:fs";
import path from "node:path";

import type { Logger } from "../log.js";

/**
 * Copies resources/recipes/*.py into the workspace when the workspace folder is missing or
 * empty, so a person's own folder is never filled with examples. Returns the copied names.
 */
export function seedWorkspace(workspaceDir: string, resourcesDir: string, log: Logger): string[] {
  const isEmpty = !fs.existsSync(workspaceDir) || fs.readdirSync(workspaceDir).length === 0;
  if (!isEmpty) return [];

  const recipesDir = path.join(resourcesDir, "recipes");
  fs.mkdirSync(workspaceDir, { recursive: true });
  if (!fs.existsSync(recipesDir)) {
    log.warn("no example recipes to seed the workspace with", { missing: recipesDir });
    return [];
  }
  const names = fs.readdirSync(recipesDir).filter((name) => name.endsWith(".py")).sort();
  for (const name of names) fs.copyFileSync(path.join(recipesDir, name), path.join(workspaceDir, name));
  log.info("seeded the workspace with example recipes", { workspace: workspaceDir, recipes: names.join(",") });
  return names;
}
