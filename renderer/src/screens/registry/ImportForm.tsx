// Registers an HF-format folder (config.json, tokenizer, safetensors) as a model.
import { useState } from "react";

import { describeError } from "../../api/client";
import { useRegistry } from "../../stores/registry";
import { useUi } from "../../stores/ui";

export function ImportForm() {
  const importModel = useRegistry((state) => state.importModel);
  const [dir, setDir] = useState("");
  const [key, setKey] = useState("");
  const [link, setLink] = useState(false);
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ kind: "error" | "info"; text: string } | null>(null);

  async function submit() {
    setBusy(true);
    setMessage(null);
    try {
      const warnings = await importModel(dir.trim(), key.trim(), link);
      setMessage({ kind: "info", text: [`Imported ${key}.`, ...warnings].join("\n") });
      useUi.getState().notify("info", `Imported ${key}.`);
    } catch (error) {
      setMessage({ kind: "error", text: describeError(error) });
    } finally {
      setBusy(false);
    }
  }

  return (
    <form
      className="import-form"
      data-testid="import-form"
      onSubmit={(event) => {
        event.preventDefault();
        void submit();
      }}
    >
      <h3>Import a model folder</h3>
      <input placeholder="/path/to/hf-model-folder" value={dir} onChange={(event) => setDir(event.target.value)} data-testid="import-dir" />
      <input placeholder="registry key, e.g. my-model" value={key} onChange={(event) => setKey(event.target.value)} data-testid="import-key" />
      <label className="inline">
        <input type="checkbox" checked={link} onChange={(event) => setLink(event.target.checked)} /> reference in place (do not copy)
      </label>
      <button type="submit" disabled={busy || !dir || !key}>
        {busy ? "Importing…" : "Import"}
      </button>
      {message && <pre className={message.kind === "error" ? "error-box" : "info-box"}>{message.text}</pre>}
    </form>
  );
}
