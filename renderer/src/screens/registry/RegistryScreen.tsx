// Models and datasets of the registry, with a model's details beside the tables, or below the
// models table in a narrow window (see the .registry rules in styles.css).
import { useEffect } from "react";

import { count } from "../../lib/format";
import { useRegistry } from "../../stores/registry";
import { useUi } from "../../stores/ui";
import { DatasetImportForm, ImportForm } from "./ImportForm";
import { ModelDetail } from "./ModelDetail";

export function RegistryScreen() {
  const models = useRegistry((state) => state.models);
  const datasets = useRegistry((state) => state.datasets);
  const reportError = useUi((state) => state.reportError);
  const selected = useUi((state) => state.selectedModel);
  const setSelected = useUi((state) => state.selectModel);

  useEffect(() => {
    void useRegistry.getState().load().catch((error: unknown) => reportError("Loading the registry", error));
  }, [reportError]);

  const model = models.find((entry) => entry.key === selected) ?? models[0];
  return (
    <div className="page registry">
      <section className="registry-models">
        <h2>Models</h2>
        <div className="table-scroll">
          <table className="table" data-testid="models-table">
            <thead>
              <tr>
                <th>key</th>
                <th>kind</th>
                <th>family</th>
                <th>parameters</th>
                <th>kv_cache_len</th>
                <th>tokens_to_generate</th>
                <th>tp</th>
                <th>parent</th>
              </tr>
            </thead>
            <tbody>
              {models.map((entry) => (
                <tr
                  key={entry.key}
                  className={entry.key === model?.key ? "selected" : ""}
                  data-testid="model-row"
                  data-key={entry.key}
                  onClick={() => setSelected(entry.key)}
                >
                  <td>{entry.key}</td>
                  <td>{entry.kind}</td>
                  <td>{entry.facts.family}</td>
                  <td>{count(entry.facts.parameters)}</td>
                  <td>{entry.defaults.kv_cache_len}</td>
                  <td>{entry.defaults.tokens_to_generate}</td>
                  <td>{entry.defaults.tp}</td>
                  <td>{entry.lineage.parent_key ?? entry.base_key ?? "–"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      {model && <ModelDetail key={model.key} model={model} />}

      <section className="registry-more">
        <h2>Datasets</h2>
        <div className="table-scroll">
          <table className="table" data-testid="datasets-table">
            <thead>
              <tr>
                <th>key</th>
                <th>name</th>
                <th>format</th>
                <th>rows</th>
                <th>file</th>
                <th>registered</th>
              </tr>
            </thead>
            <tbody>
              {datasets.map((dataset) => (
                <tr key={dataset.key} data-testid="dataset-row" data-key={dataset.key}>
                  <td>{dataset.key}</td>
                  <td>{dataset.name}</td>
                  <td>{dataset.format}</td>
                  <td data-testid="dataset-rows">{dataset.rows ?? "–"}</td>
                  <td>
                    <code>{dataset.path}</code>
                  </td>
                  <td>{new Date(dataset.created_at).toLocaleString()}</td>
                </tr>
              ))}
              {datasets.length === 0 && (
                <tr>
                  <td colSpan={6} className="muted">
                    No datasets registered.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
        <div className="import-forms">
          <ImportForm />
          <DatasetImportForm />
        </div>
      </section>
    </div>
  );
}
