import { MAX_WORKSPACE_READ_BYTES } from "@galley/common";
import { describe, expect, it } from "vitest";

import { closedReason, isRecipe, languageOf, readOnlyReason } from "../src/lib/workspace-files";

function entry(path: string, size = 10) {
  return { path, kind: "file" as const, size, mtime: 0 };
}

describe("languageOf", () => {
  it("maps extensions kept next to recipes", () => {
    expect(languageOf("train.py")).toBe("python");
    expect(languageOf("configs/sft.json")).toBe("json");
    expect(languageOf("data/train.jsonl")).toBe("jsonl");
    expect(languageOf("README.md")).toBe("markdown");
    expect(languageOf("eval.YAML")).toBe("yaml");
    expect(languageOf("pyproject.toml")).toBe("ini");
  });

  it("falls back to plain text", () => {
    expect(languageOf("notes.txt")).toBe("plaintext");
    expect(languageOf("Makefile")).toBe("plaintext");
    expect(languageOf(".env")).toBe("plaintext");
  });
});

describe("closedReason", () => {
  it("keeps binary files closed", () => {
    expect(closedReason(entry("adapter/adapter_model.safetensors"))?.label).toBe("binary");
    expect(closedReason(entry("plot.PNG"))?.label).toBe("binary");
  });

  it("keeps files over the read limit closed", () => {
    expect(closedReason(entry("big.jsonl", MAX_WORKSPACE_READ_BYTES + 1))?.reason).toBe("5.0 MiB; the editor opens files up to 5.0 MiB");
    expect(closedReason(entry("big.jsonl", MAX_WORKSPACE_READ_BYTES))).toBeNull();
  });
});

describe("readOnlyReason", () => {
  it("flags text that is not UTF-8", () => {
    expect(readOnlyReason("caf\uFFFD")).not.toBeNull();
    expect(readOnlyReason("a\u0000b")).not.toBeNull();
    expect(readOnlyReason("café\n")).toBeNull();
  });
});

describe("isRecipe", () => {
  it("accepts only Python files", () => {
    expect(isRecipe("recipes/train.py")).toBe(true);
    expect(isRecipe("recipes/train.py.bak")).toBe(false);
    expect(isRecipe("config.json")).toBe(false);
  });
});
