import { describe, expect, it } from "vitest";

import { splitLocations, toWorkspacePath } from "../src/lib/locations";

describe("splitLocations", () => {
  it("finds the runner's error line", () => {
    const parts = splitLocations("error: recipes/seed.py:5: Annotated[AdaptiveModel] needs a type\n");
    expect(parts.map((part) => part.location)).toEqual([null, { file: "recipes/seed.py", line: 5 }, null]);
    expect(parts[1]?.text).toBe("recipes/seed.py:5");
  });

  it("finds traceback frames", () => {
    const text = 'Traceback (most recent call last):\n  File "/home/me/ws/a.py", line 12, in main\n    boom()\n';
    const located = splitLocations(text).filter((part) => part.location);
    expect(located).toHaveLength(1);
    expect(located[0]?.location).toEqual({ file: "/home/me/ws/a.py", line: 12 });
    expect(splitLocations(text).map((part) => part.text).join("")).toBe(text);
  });

  it("leaves text without locations whole", () => {
    expect(splitLocations("loss 0.5 at step 3")).toEqual([{ text: "loss 0.5 at step 3", location: null }]);
  });
});

describe("toWorkspacePath", () => {
  it("maps files under the workspace root", () => {
    expect(toWorkspacePath("/home/me/ws/sub/a.py", "/home/me/ws", null)).toBe("sub/a.py");
  });

  it("rejects files outside the workspace", () => {
    expect(toWorkspacePath("/usr/lib/python3/asyncio/base.py", "/home/me/ws", null)).toBeNull();
  });

  it("maps a run snapshot to its recipe", () => {
    expect(toWorkspacePath("/data/galley/runs/20260101-000000-abcdef/recipe.py", "/home/me/ws", "hello.py")).toBe("hello.py");
  });

  it("keeps relative paths", () => {
    expect(toWorkspacePath("hello.py", "/home/me/ws", null)).toBe("hello.py");
  });
});
