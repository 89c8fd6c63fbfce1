// Remembers the main window's bounds and maximized state in <data dir>/window-state.json.
import fs from "node:fs";
import path from "node:path";

import { type BrowserWindow, type Rectangle, screen } from "electron";

interface WindowState {
  bounds: Rectangle;
  maximized: boolean;
}

const DEFAULT_SIZE = { width: 1400, height: 900 };
const SAVE_DELAY_MS = 500;

function isRectangle(value: unknown): value is Rectangle {
  if (typeof value !== "object" || value === null) return false;
  const rect = value as Record<string, unknown>;
  return ["x", "y", "width", "height"].every((key) => typeof rect[key] === "number");
}

/** Reads the saved state; bounds that no longer overlap any display are dropped. */
export function loadWindowState(dataHome: string): { bounds: Partial<Rectangle>; maximized: boolean } {
  const file = path.join(dataHome, "window-state.json");
  try {
    const saved = JSON.parse(fs.readFileSync(file, "utf8")) as Partial<WindowState>;
    if (!isRectangle(saved.bounds)) return { bounds: DEFAULT_SIZE, maximized: false };
    const display = screen.getDisplayMatching(saved.bounds).workArea;
    const overlaps =
      saved.bounds.x < display.x + display.width &&
      saved.bounds.x + saved.bounds.width > display.x &&
      saved.bounds.y < display.y + display.height &&
      saved.bounds.y + saved.bounds.height > display.y;
    return { bounds: overlaps ? saved.bounds : DEFAULT_SIZE, maximized: saved.maximized === true };
  } catch {
    // A missing or unreadable file means the first start: open at the default size.
    return { bounds: DEFAULT_SIZE, maximized: false };
  }
}

/** Saves the window's state whenever it moves, resizes or closes. */
export function trackWindowState(window: BrowserWindow, dataHome: string): void {
  const file = path.join(dataHome, "window-state.json");
  let timer: NodeJS.Timeout | null = null;

  const save = () => {
    if (window.isDestroyed()) return;
    const state: WindowState = { bounds: window.getNormalBounds(), maximized: window.isMaximized() };
    try {
      fs.writeFileSync(file, JSON.stringify(state, null, 2));
    } catch (error) {
      console.warn(`could not save the window state to ${file}: ${(error as Error).message}`);
    }
  };
  const saveSoon = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(save, SAVE_DELAY_MS);
  };

  window.on("resize", saveSoon);
  window.on("move", saveSoon);
  window.on("close", () => {
    if (timer) clearTimeout(timer);
    save();
  });
}
