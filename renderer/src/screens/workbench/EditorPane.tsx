// Editor tabs over Monaco. Ctrl/Cmd+S saves the active file; an error location from a run
// scrolls to its line and marks it.
import Editor, { type OnMount } from "@monaco-editor/react";
import { useEffect, useRef, useState } from "react";

import { languageOf } from "../../lib/workspace-files";
import { monaco } from "../../monaco/setup";
import { useUi } from "../../stores/ui";
import { isDirty, type OpenFile, useWorkspace } from "../../stores/workspace";

type CodeEditor = Parameters<OnMount>[0];

export interface LineMarker {
  path: string;
  line: number;
  message: string;
}

const MARKER_OWNER = "galley-run";

export function saveActive(): void {
  const { active, save, files } = useWorkspace.getState();
  if (!active || files[active]?.readOnly) return;
  // While the "changed on disk" banner is up, saving would overwrite the other change.
  if (files[active]?.onDisk != null && !window.confirm("The file changed on disk. Overwrite it with your version?")) return;
  void save(active).catch((error: unknown) => useUi.getState().reportError(`Saving ${active}`, error));
}

/**
 * Stores a change of the editor's current model under the file that model belongs to.
 * @monaco-editor/react 4.7 swaps the model and, for a read-only file, sets its value before it
 * subscribes the new render's onChange. So the previous tab's callback can receive the new
 * file's text, and the model's URI (created from the workspace path) names the right file.
 */
function storeEdit(editor: CodeEditor | null): void {
  const model = editor?.getModel();
  if (!model) return;
  const uri = model.uri.toString();
  const { tabs, edit } = useWorkspace.getState();
  const path = tabs.find((tab) => monaco.Uri.parse(tab).toString() === uri);
  if (path) edit(path, model.getValue());
}

/** Closes a tab, asking first when it has unsaved edits; a cancel keeps the tab open. */
export function closeTab(path: string): void {
  const { files, close } = useWorkspace.getState();
  if (isDirty(files[path]) && !window.confirm(`${path} has unsaved changes. Close it and discard them?`)) return;
  close(path);
}

/** Says when the open file changed or vanished on disk while the tab had unsaved edits. */
function DiskBanner({ file }: { file: OpenFile }) {
  const resolve = useWorkspace((state) => state.resolveConflict);
  if (file.readOnly) {
    return (
      <div className="disk-banner" data-testid="read-only-banner">
        {file.path} is read-only: it {file.readOnly}.
      </div>
    );
  }
  if (file.deleted) {
    return (
      <div className="disk-banner" data-testid="disk-banner" data-kind="deleted">
        {file.path} was deleted on disk. Save creates it again with your edits.
        <button className="small" onClick={() => closeTab(file.path)}>
          Close tab
        </button>
      </div>
    );
  }
  if (!file.onDisk) return null;
  return (
    <div className="disk-banner" data-testid="disk-banner" data-kind="changed">
      {file.path} changed on disk, and this tab has unsaved edits.
      <button className="small" data-testid="disk-reload" onClick={() => resolve(file.path, "disk")}>
        Load the disk version
      </button>
      <button className="small" data-testid="disk-keep" onClick={() => resolve(file.path, "mine")}>
        Keep my edits
      </button>
    </div>
  );
}

export function EditorPane({ marker }: { marker: LineMarker | null }) {
  const tabs = useWorkspace((state) => state.tabs);
  const active = useWorkspace((state) => state.active);
  const files = useWorkspace((state) => state.files);
  const reveal = useWorkspace((state) => state.reveal);
  const editorRef = useRef<CodeEditor | null>(null);
  // Exposed as data-cursor-line so that tests can check where an error link put the cursor.
  const [cursorLine, setCursorLine] = useState(1);

  const file = active ? files[active] : undefined;

  useEffect(() => {
    const editor = editorRef.current;
    if (!editor || !reveal || reveal.path !== active) return;
    editor.revealLineInCenter(reveal.line);
    editor.setPosition({ lineNumber: reveal.line, column: 1 });
    editor.focus();
  }, [reveal, active]);

  useEffect(() => {
    const model = editorRef.current?.getModel();
    if (!model) return;
    const markers =
      marker && marker.path === active
        ? [
            {
              severity: monaco.MarkerSeverity.Error,
              message: marker.message,
              startLineNumber: marker.line,
              endLineNumber: marker.line,
              startColumn: 1,
              endColumn: model.getLineMaxColumn(Math.min(marker.line, model.getLineCount())),
            },
          ]
        : [];
    monaco.editor.setModelMarkers(model, MARKER_OWNER, markers);
  }, [marker, active, file?.saved]);

  const onMount: OnMount = (editor) => {
    editorRef.current = editor;
    editor.onDidChangeCursorPosition((event) => setCursorLine(event.position.lineNumber));
    editor.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.KeyS, saveActive);
    const { reveal: pending, active: current } = useWorkspace.getState();
    if (pending && pending.path === current) {
      editor.revealLineInCenter(pending.line);
      editor.setPosition({ lineNumber: pending.line, column: 1 });
    }
  };

  return (
    <section className="editor-pane">
      <div className="tabs" data-testid="editor-tabs">
        <div className="tab-strip">
          {tabs.map((path) => (
            <div key={path} className={path === active ? "tab active" : "tab"} data-testid="editor-tab" data-path={path}>
              <button className="tab-name" title={path} onClick={() => void useWorkspace.getState().open(path)}>
                {path}
                {isDirty(files[path]) && <span className="dirty" title="Unsaved changes"> ●</span>}
              </button>
              <button className="tab-close" aria-label={`Close ${path}`} onClick={() => closeTab(path)}>
                ×
              </button>
            </div>
          ))}
        </div>
        <button className="small" data-testid="save-button" disabled={!isDirty(file) || Boolean(file?.readOnly)} onClick={saveActive}>
          Save
        </button>
      </div>
      {file && <DiskBanner file={file} />}
      <div className="editor" data-testid="editor" data-path={active ?? ""} data-cursor-line={cursorLine}>
        {file ? (
          <Editor
            path={file.path}
            language={languageOf(file.path)}
            theme="vs-dark"
            value={file.content}
            onChange={() => storeEdit(editorRef.current)}
            onMount={onMount}
            options={{
              minimap: { enabled: false },
              fontSize: 13,
              scrollBeyondLastLine: false,
              automaticLayout: true,
              readOnly: file.readOnly !== null,
            }}
          />
        ) : (
          <div className="empty">Open a file from the list on the left.</div>
        )}
      </div>
    </section>
  );
}
