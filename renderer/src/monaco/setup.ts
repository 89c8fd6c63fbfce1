// Monaco from the bundled monaco-editor package, never from a CDN: @monaco-editor/react is
// pointed at this module's instance, and the editor worker is built by Vite from the package.
// Only the editor core and Python highlighting are loaded; the TypeScript, JSON, CSS and HTML
// language services (and their workers) are left out.
import "monaco-editor/esm/vs/editor/editor.all.js";
import "monaco-editor/esm/vs/basic-languages/python/python.contribution.js";

import { loader } from "@monaco-editor/react";
import * as monaco from "monaco-editor/esm/vs/editor/editor.api.js";
import EditorWorker from "monaco-editor/esm/vs/editor/editor.worker.js?worker";

self.MonacoEnvironment = {
  getWorker: () => new EditorWorker(),
};

loader.config({ monaco });

export { monaco };
