// Registers an HF-format folder (config.json, tokenizer, safetensors) as a model, or a JSONL,
// JSON or CSV file as a dataset. The path is on the machine that runs Galley's server. A
// rejected import lists every reason, and registers nothing.
import { useState } from "react";

import { ErrorReport } from "../../components/ErrorReport";
import { plural } from "../../lib/format";
import { useRegistry } from "../../stores/registry";
import { useUi } from "../../stores/ui";

type Outcome = { kind: "error"; error: unknown } | { kind: "info"; text: string } | null;

function useImport(action: () => Promise<string>) {
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome>(null);
  async function run() {
    setBusy(true);
    setOutcome(null);
    try {
      const text = await action();
      setOutcome({ kind: "info", text });
      useUi.getState().notify("info", text.split("\n")[0]!);
    } catch (error) {
      setOutcome({ kind: "error", error });
    } finally {
      setBusy(false);
    }
  }
  return { busy, outcome, run };
}

function OutcomeView({ outcome, testId }: { outcome: Outcome; testId: string }) {
  if (!outcome) return null;
  if (outcome.kind === "error") return <ErrorReport error={outcome.error} testId={`${testId}-error`} />;
  return (
    <pre className="info-box" data-testid={`${testId}-done`}>
      {outcome.text}
    </pre>
  );
}

export function ImportForm() {
  const importModel = useRegistry((state) => state.importModel);
  const [dir, setDir] = useState("");
  const [key, setKey] = useState("");
  const [link, setLink] = useState(false);
  const { busy, outcome, run } = useImport(async () => {
    const warnings = await importModel(dir.trim(), key.trim(), link);
    return [`Imported model ${key.trim()}.`, ...warnings.map((warning) => `warning: ${warning}`)].join("\n");
  });

  return (
    <form
      className="import-form"
      data-testid="import-form"
      onSubmit={(event) => {
        event.preventDefault();
        void run();
      }}
    >
      <h3>Import a model folder</h3>
      <input placeholder="/path/to/hf-model-folder" value={dir} onChange={(event) => setDir(event.target.value)} data-testid="import-dir" />
      <input placeholder="registry key, e.g. my-model" value={key} onChange={(event) => setKey(event.target.value)} data-testid="import-key" />
      <label className="inline">
        <input type="checkbox" checked={link} data-testid="import-link" onChange={(event) => setLink(event.target.checked)} /> reference in place
        (do not copy)
      </label>
      <button type="submit" data-testid="import-submit" disabled={busy || !dir.trim() || !key.trim()}>
        {busy ? "Importing…" : "Import model"}
      </button>
      <OutcomeView outcome={outcome} testId="import" />
    </form>
  );
}

export function DatasetImportForm() {
  const importDataset = useRegistry((state) => state.importDataset);
  const [file, setFile] = useState("");
  const [key, setKey] = useState("");
  const { busy, outcome, run } = useImport(async () => {
    const dataset = await importDataset(file.trim(), key.trim());
    const rows = dataset.rows === null ? "an unknown number of rows" : plural(dataset.rows, "row");
    return `Imported dataset ${dataset.key}: ${rows} (${dataset.format}).`;
  });

  return (
    <form
      className="import-form"
      data-testid="dataset-import-form"
      onSubmit={(event) => {
        event.preventDefault();
        void run();
      }}
    >
      <h3>Import a dataset file</h3>
      <input placeholder="/path/to/data.jsonl (.jsonl, .json or .csv)" value={file} onChange={(event) => setFile(event.target.value)} data-testid="dataset-file" />
      <input placeholder="registry key, e.g. my-sft-data" value={key} onChange={(event) => setKey(event.target.value)} data-testid="dataset-key" />
      <span className="hint">
        JSONL: one JSON object per line. Rows with "messages" need a role (system, user, assistant or tool) and string content in each
        message.
      </span>
      <button type="submit" data-testid="dataset-submit" disabled={busy || !file.trim() || !key.trim()}>
        {busy ? "Checking…" : "Import dataset"}
      </button>
      <OutcomeView outcome={outcome} testId="dataset-import" />
    </form>
  );
}
