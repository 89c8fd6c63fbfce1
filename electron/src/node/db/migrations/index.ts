// The ordered list of schema migrations. Append new ones; never edit an applied one.
import { initial } from "./001-initial.js";
import type { Migration } from "./types.js";

export type { Migration } from "./types.js";

export const MIGRATIONS: readonly Migration[] = [initial];
