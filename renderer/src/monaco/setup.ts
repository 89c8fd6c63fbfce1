// Monaco from the bundled monaco-editor package, never from a CDN: @monaco-editor/react is
// pointed at this module's instance, and the editor workers are built by Vite from the package.
// Loaded: the editor core, highlighting for the file types kept next to recipes (Python,
// Markdown, YAML, shell, INI/TOML-like configs, JSON Lines), and the JSON language service
// with its worker, which also checks JSON files for syntax errors. The TypeScript, CSS and
// HTML language services are left out.
import "monaco-editor/esm/vs/editor/editor.all.js";
import "monaco-editor/esm/vs/basic-languages/python/python.contribution.js";
import "monaco-editor/esm/vs/basic-languages/markdown/markdown.contribution.js";
import "monaco-editor/esm/vs/basic-languages/yaml/yaml.contribution.js";
import "monaco-editor/esm/vs/basic-languages/shell/shell.contribution.js";
import "monaco-editor/esm/vs/basic-languages/ini/ini.contribution.js";
import "monaco-editor/esm/vs/language/json/monaco.contribution.js";

import { loader } from "@monaco-editor/react";
import * as monaco from "monaco-editor/esm/vs/editor/editor.api.js";
import EditorWorker from "monaco-editor/esm/vs/editor/editor.worker.js?worker";
import JsonWorker from "monaco-editor/esm/vs/language/json/json.worker.js?worker";

self.MonacoEnvironment = {
  getWorker: (_workerId: string, label: string) => (label === "json" ? new JsonWorker() : new EditorWorker()),
};

// JSON Lines: one JSON value per line. The JSON language service would flag every line after
// the first as an error, so this language only highlights.
monaco.languages.register({ id: "jsonl", extensions: [".jsonl", ".ndjson"], aliases: ["JSON Lines"] });
monaco.languages.setMonarchTokensProvider("jsonl", {
  tokenizer: {
    root: [
      [/"(?:[^"\\]|\\.)*"(?=\s*:)/, "type"],
      [/"(?:[^"\\]|\\.)*"/, "string"],
      [/-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/, "number"],
      [/\b(?:true|false|null)\b/, "keyword"],
      [/[{}[\],:]/, "delimiter"],
    ],
  },
});

loader.config({ monaco });

export { monaco };
