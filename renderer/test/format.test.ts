import { describe, expect, it } from "vitest";

import { compactTime, plural } from "../src/lib/format";

describe("plural", () => {
  it("uses the singular only for exactly one", () => {
    expect(plural(1, "spawn")).toBe("1 spawn");
    expect(plural(0, "spawn")).toBe("0 spawns");
    expect(plural(2, "spawn")).toBe("2 spawns");
    expect(plural(1.5, "point")).toBe("1.5 points");
  });

  it("takes an irregular plural", () => {
    expect(plural(1, "line differs", "lines differ")).toBe("1 line differs");
    expect(plural(4, "line differs", "lines differ")).toBe("4 lines differ");
  });
});

describe("compactTime", () => {
  const now = new Date(2026, 0, 15, 12, 0, 0);

  it("shows only the time for today", () => {
    const today = new Date(2026, 0, 15, 9, 30, 5);
    expect(compactTime(today.toISOString(), now)).toBe(today.toLocaleTimeString());
  });

  it("adds the date for another day", () => {
    const earlier = new Date(2026, 0, 3, 9, 30, 5);
    const formatted = compactTime(earlier.toISOString(), now);
    expect(formatted).not.toBe(earlier.toLocaleTimeString());
    expect(formatted).toContain("3");
  });

  it("marks a missing time", () => {
    expect(compactTime(null, now)).toBe("–");
  });
});
