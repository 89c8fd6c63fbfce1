// Number and time formatting shared by the screens. Memory is always shown in GiB.

const GIB = 1024 ** 3;

export function gib(bytes: number | null | undefined, digits = 2): string {
  if (bytes === null || bytes === undefined) return "–";
  const value = bytes / GIB;
  // Tiny models use a few MiB: keep enough digits that they do not all read 0.00 GiB.
  const shown = value !== 0 && Math.abs(value) < 0.01 ? value.toPrecision(2) : value.toFixed(digits);
  return `${shown} GiB`;
}

/**
 * Formats a count with its noun, singular only for exactly 1: "1 spawn", "0 spawns", "3 spawns".
 * Pass the plural form when it is not the singular plus "s".
 */
export function plural(quantity: number, singular: string, pluralForm = `${singular}s`): string {
  return `${quantity} ${quantity === 1 ? singular : pluralForm}`;
}

/** Formats a file size in bytes with a binary unit: "812 B", "4.0 KiB", "5.0 MiB". */
export function fileSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < GIB) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return gib(bytes, 1);
}

export function count(value: number): string {
  if (value >= 1e9) return `${(value / 1e9).toFixed(1)}B`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}K`;
  return String(value);
}

/** Duration between two ISO timestamps, or from `start` until now while `end` is null. */
export function duration(start: string | null, end: string | null, now = Date.now()): string {
  if (!start) return "–";
  const ms = (end ? Date.parse(end) : now) - Date.parse(start);
  if (Number.isNaN(ms) || ms < 0) return "–";
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function clockTime(iso: string | null): string {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** Formats a timestamp of today as the time of day, and an older one as date and minute, for narrow columns. */
export function compactTime(iso: string | null, now = new Date()): string {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  if (date.toDateString() === now.toDateString()) return date.toLocaleTimeString();
  return date.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** Lists a plan's components in bytes, leaving out a precomputed "total" entry if there is one. */
export function planComponents(plan: Record<string, number> | null | undefined): [string, number][] {
  return Object.entries(plan ?? {}).filter(([name]) => name !== "total");
}

/** Sum of a plan's components, in bytes, or null without a plan. */
export function planTotal(plan: Record<string, number> | null | undefined): number | null {
  if (!plan) return null;
  return planComponents(plan).reduce((sum, [, bytes]) => sum + bytes, 0);
}
