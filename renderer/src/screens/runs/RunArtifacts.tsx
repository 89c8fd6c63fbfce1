// Artifacts of a run: those it registered through JobNotifier, and the models it saved
// (registry entries whose lineage names this run), each model linked to the registry.
import type { ModelRecord, RunEvent } from "@galley/common";
import { useMemo } from "react";

import { artifacts } from "../../lib/run-events";
import { useRegistry } from "../../stores/registry";
import { useUi } from "../../stores/ui";

const MODEL_URI = "model_registry://";

interface Row {
  name: string;
  kind: string;
  uri: string;
  modelKey: string | null;
}

export function artifactRows(events: RunEvent[], models: ModelRecord[], runId: string): Row[] {
  const rows: Row[] = artifacts(events).map((artifact) => ({
    ...artifact,
    modelKey: artifact.uri.startsWith(MODEL_URI) ? artifact.uri.slice(MODEL_URI.length) : null,
  }));
  // A save() whose artifact event was lost (the runner was killed) is still in the registry.
  for (const model of models) {
    if (model.lineage.run_id !== runId || rows.some((row) => row.modelKey === model.key)) continue;
    rows.push({ name: model.name, kind: "model", uri: `${MODEL_URI}${model.key}`, modelKey: model.key });
  }
  return rows;
}

export function RunArtifacts({ runId, events, runDir }: { runId: string; events: RunEvent[]; runDir: string | null }) {
  const models = useRegistry((state) => state.models);
  const openModel = useUi((state) => state.openModel);
  const rows = useMemo(() => artifactRows(events, models, runId), [events, models, runId]);

  return (
    <div data-testid="run-artifacts">
      {rows.length === 0 ? (
        <p className="muted">This run registered no artifacts (ctx.job.register_artifact) and saved no models.</p>
      ) : (
        <table className="table">
          <thead>
            <tr>
              <th>name</th>
              <th>kind</th>
              <th>location</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row, index) => (
              <tr key={index} data-testid="artifact-row" data-kind={row.kind}>
                <td>{row.name}</td>
                <td>{row.kind}</td>
                <td>
                  {row.modelKey && models.some((model) => model.key === row.modelKey) ? (
                    <a href="#" data-testid="artifact-model-link" onClick={(event) => {
                      event.preventDefault();
                      openModel(row.modelKey!);
                    }}>
                      {row.uri}
                    </a>
                  ) : (
                    <code>{row.uri}</code>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {runDir && (
        <p className="muted">
          Run folder (recipe snapshot, config, files the recipe wrote there): <code>{runDir}</code>
        </p>
      )}
    </div>
  );
}
