// One model's facts and lineage, and its inference configuration (the defaults a spawn takes
// when the recipe does not set them), editable.
import type { ModelDefaults, ModelRecord } from "@galley/common";
import { useState } from "react";

import { count, gib } from "../../lib/format";
import { useRegistry } from "../../stores/registry";
import { useUi } from "../../stores/ui";

const DEFAULT_FIELDS: { name: keyof ModelDefaults; label: string; help: string }[] = [
  { name: "kv_cache_len", label: "kv_cache_len", help: "KV cache tokens shared by all sequences in flight" },
  { name: "tokens_to_generate", label: "tokens_to_generate", help: "Maximum new tokens per generation" },
  { name: "tp", label: "tp", help: "Tensor-parallel ranks, one device each" },
];

function DefaultsForm({ model }: { model: ModelRecord }) {
  const setDefaults = useRegistry((state) => state.setDefaults);
  const { reportError, notify } = useUi.getState();
  const [values, setValues] = useState<Record<string, string>>(() =>
    Object.fromEntries(DEFAULT_FIELDS.map(({ name }) => [name, String(model.defaults[name])])),
  );
  const [problems, setProblems] = useState<string[]>([]);

  async function save() {
    const found: string[] = [];
    const changed: Partial<ModelDefaults> = {};
    for (const { name } of DEFAULT_FIELDS) {
      const value = Number(values[name]);
      if (!Number.isInteger(value) || value < 1) found.push(`${name} must be a whole number of at least 1, got "${values[name]}"`);
      else if (value !== model.defaults[name]) changed[name] = value;
    }
    setProblems(found);
    if (found.length > 0 || Object.keys(changed).length === 0) return;
    try {
      await setDefaults(model.key, changed);
      notify("info", `Saved the inference configuration of ${model.key}.`);
    } catch (error) {
      reportError(`Saving the defaults of ${model.key}`, error);
    }
  }

  return (
    <form
      className="defaults-form"
      data-testid="defaults-form"
      // The form lists its own problems in words; the browser's bubbles would hide all but one.
      noValidate
      onSubmit={(event) => {
        event.preventDefault();
        void save();
      }}
    >
      {DEFAULT_FIELDS.map(({ name, label, help }) => (
        <div key={name} className="form-row">
          <label htmlFor={`defaults-${name}`}>{label}</label>
          <input
            id={`defaults-${name}`}
            data-testid={`defaults-${name}`}
            type="number"
            min={1}
            step={1}
            value={values[name] ?? ""}
            onChange={(event) => setValues({ ...values, [name]: event.target.value })}
          />
          <span className="hint">{help}</span>
        </div>
      ))}
      {problems.map((problem) => (
        <p key={problem} className="problem">
          {problem}
        </p>
      ))}
      <button type="submit" className="primary" data-testid="save-defaults">
        Save defaults
      </button>
    </form>
  );
}

function Lineage({ model }: { model: ModelRecord }) {
  const { lineage } = model;
  const openModel = useUi((state) => state.openModel);
  const openRun = useUi((state) => state.openRun);
  const known = useRegistry((state) => state.models);
  const modelLink = (key: string, testId: string) =>
    known.some((entry) => entry.key === key) ? (
      <a href="#" data-testid={testId} onClick={(event) => {
        event.preventDefault();
        openModel(key);
      }}>
        {key}
      </a>
    ) : (
      <span data-testid={testId}>{key} (not registered)</span>
    );

  const rows: [string, React.ReactNode][] = [];
  if (model.base_key) rows.push(["base model", modelLink(model.base_key, "lineage-base")]);
  if (lineage.parent_key) rows.push(["trained from", modelLink(lineage.parent_key, "lineage-parent")]);
  if (lineage.run_id) {
    const runId = lineage.run_id;
    rows.push([
      "saved by run",
      <a href="#" data-testid="lineage-run" onClick={(event) => {
        event.preventDefault();
        openRun(runId);
      }}>
        {runId}
      </a>,
    ]);
  }
  if (lineage.recipe_hash) {
    rows.push(["recipe revision", <code data-testid="lineage-recipe-hash" title={`sha256 ${lineage.recipe_hash}`}>{lineage.recipe_hash.slice(0, 12)}</code>]);
  }
  if (lineage.optim_step !== null) rows.push(["optimizer step", <span data-testid="lineage-optim-step">{lineage.optim_step}</span>]);

  if (rows.length === 0) return <p className="muted" data-testid="lineage">No lineage: this model was imported or generated, not trained by a run.</p>;
  return (
    <table className="facts" data-testid="lineage">
      <tbody>
        {rows.map(([label, value]) => (
          <tr key={label}>
            <th>{label}</th>
            <td>{value}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function ModelDetail({ model }: { model: ModelRecord }) {
  const { facts } = model;
  const rows: [string, string][] = [
    ["kind", model.kind],
    ["storage", model.storage],
    ["path", model.path ?? "none (architecture only: for planning and dry runs)"],
    ["family / architecture", `${facts.family} / ${facts.architecture}`],
    ["parameters", count(facts.parameters)],
    ["layers · heads · kv heads", `${facts.layers} · ${facts.heads} · ${facts.kv_heads}`],
    ["hidden · vocab", `${facts.hidden} · ${facts.vocab}`],
    ["dtype", facts.dtype],
    ["weights on disk", facts.weight_bytes !== undefined ? gib(facts.weight_bytes) : "–"],
    ["registered", new Date(model.created_at).toLocaleString()],
  ];

  return (
    <section className="model-detail" data-testid="model-detail" data-key={model.key}>
      <h2>
        {model.name} <span className="muted">{model.key}</span>
      </h2>
      <table className="facts">
        <tbody>
          {rows.map(([label, value]) => (
            <tr key={label}>
              <th>{label}</th>
              <td>{value}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Lineage</h3>
      <Lineage model={model} />
      <h3>Inference configuration</h3>
      {/* Keyed by the stored values so that a save elsewhere resets the form. */}
      <DefaultsForm key={JSON.stringify(model.defaults)} model={model} />
    </section>
  );
}
