import fs from "node:fs";
import path from "node:path";

import { beforeEach, describe, expect, test } from "vitest";

import { Workspace } from "../src/node/workspace/workspace.js";
import { tempDir } from "./helpers.js";

let root: string;
let outside: string;
let workspace: Workspace;

beforeEach(() => {
  root = tempDir("ws");
  outside = tempDir("outside");
  fs.writeFileSync(path.join(outside, "secret.txt"), "secret");
  workspace = new Workspace(root);
});

describe("path resolution", () => {
  test.each(["../secret.txt", "a/../../secret.txt", "..", "a/..\\..\\x"])("rejects %j", (relative) => {
    expect(() => workspace.resolve(relative)).toThrow(/contains "\.\."/);
  });

  test.each(["/etc/passwd", "C:\\Windows\\win.ini", "\\\\server\\share"])("rejects absolute %j", (relative) => {
    expect(() => workspace.resolve(relative)).toThrow(/is absolute/);
  });

  test("rejects a directory symlink leading out", () => {
    fs.symlinkSync(outside, path.join(root, "escape"));
    expect(() => workspace.read("escape/secret.txt")).toThrow(/leads outside the workspace through a symbolic link/);
    expect(() => workspace.create("escape/new.py", "x")).toThrow(/leads outside/);
    expect(fs.existsSync(path.join(outside, "new.py"))).toBe(false);
  });

  test("rejects a file symlink leading out", () => {
    fs.symlinkSync(path.join(outside, "secret.txt"), path.join(root, "link.txt"));
    expect(() => workspace.read("link.txt")).toThrow(/leads outside/);
    expect(() => workspace.write("link.txt", "overwritten")).toThrow(/leads outside/);
    expect(fs.readFileSync(path.join(outside, "secret.txt"), "utf8")).toBe("secret");
  });

  test("rejects a dangling symlink", () => {
    fs.symlinkSync(path.join(outside, "later.txt"), path.join(root, "dangling.txt"));
    expect(() => workspace.create("dangling.txt", "x")).toThrow(/broken symbolic link/);
    expect(fs.existsSync(path.join(outside, "later.txt"))).toBe(false);
  });

  test("accepts a symlink inside", () => {
    fs.mkdirSync(path.join(root, "real"));
    fs.writeFileSync(path.join(root, "real", "a.py"), "print(1)");
    fs.symlinkSync(path.join(root, "real"), path.join(root, "alias"));
    expect(workspace.read("alias/a.py").content).toBe("print(1)");
  });

  test("rejects NUL bytes", () => {
    expect(() => workspace.resolve("a\0b")).toThrow(/NUL byte/);
  });
});

describe("files", () => {
  test("create read write rename delete", () => {
    const created = workspace.create("recipes/hello.py", "print('hi')\n");
    expect(created).toMatchObject({ path: "recipes/hello.py", kind: "file", size: 12 });
    expect(workspace.read("recipes/hello.py").content).toBe("print('hi')\n");

    workspace.write("recipes/hello.py", "print('bye')\n");
    expect(workspace.read("recipes/hello.py").content).toBe("print('bye')\n");

    const renamed = workspace.rename("recipes/hello.py", "bye.py");
    expect(renamed.path).toBe("bye.py");
    expect(fs.existsSync(path.join(root, "recipes", "hello.py"))).toBe(false);

    expect(workspace.remove("bye.py")).toEqual({ path: "bye.py" });
    expect(workspace.remove("recipes")).toEqual({ path: "recipes" });
    expect(workspace.list()).toEqual([]);
  });

  test("conflicts are reported", () => {
    workspace.create("a.py", "");
    workspace.create("dir/b.py", "");
    expect(() => workspace.create("a.py", "")).toThrow('workspace file "a.py" already exists');
    expect(() => workspace.rename("a.py", "dir/b.py")).toThrow('workspace path "dir/b.py" already exists');
    expect(() => workspace.remove("dir")).toThrow(/folder "dir" is not empty/);
    expect(() => workspace.write("missing.py", "")).toThrow('workspace file "missing.py" does not exist');
  });

  test("list skips tool folders and outside links", () => {
    workspace.create("a.py", "");
    workspace.create("__pycache__/a.cpython-311.pyc", "");
    workspace.create(".hidden/x.py", "");
    workspace.create("pkg/b.py", "");
    fs.symlinkSync(outside, path.join(root, "escape"));
    expect(workspace.list().map((entry) => entry.path)).toEqual(["a.py", "pkg", "pkg/b.py"]);
  });
});
