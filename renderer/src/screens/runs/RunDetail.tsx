// One run: status, config, error, progress, metrics, artifacts, spawns, logs and the recipe
// snapshot, with Re-run and Cancel.
import { TERMINAL_RUN_STATUSES, type RunEvent } from "@galley/common";
import { useEffect, useMemo, useState } from "react";

import { Console } from "../../components/Console";
import { LocationLink } from "../../components/LocatedText";
import { ProgressBars } from "../../components/ProgressBars";
import { StatusBadge } from "../../components/StatusBadge";
import { clockTime, duration, plural } from "../../lib/format";
import { metricSeries, spawns } from "../../lib/run-events";
import { useRegistry } from "../../stores/registry";
import { useRuns } from "../../stores/runs";
import { useUi } from "../../stores/ui";
import { MetricChart } from "./MetricChart";
import { artifactRows, RunArtifacts } from "./RunArtifacts";
import { SnapshotDiff } from "./SnapshotDiff";

const NO_EVENTS: RunEvent[] = [];
type Tab = "logs" | "metrics" | "artifacts" | "config" | "recipe";
const TABS: Tab[] = ["logs", "metrics", "artifacts", "config", "recipe"];

export function RunDetail({ id, onSelect }: { id: string; onSelect(id: string): void }) {
  const run = useRuns((state) => state.runs[id]);
  const detail = useRuns((state) => state.details[id]);
  const events = useRuns((state) => state.events[id]) ?? NO_EVENTS;
  const reportError = useUi((state) => state.reportError);
  const [tab, setTab] = useState<Tab>("logs");

  useEffect(() => {
    const { loadDetail, loadEvents } = useRuns.getState();
    void loadDetail(id).catch((error: unknown) => reportError(`Loading run ${id}`, error));
    void loadEvents(id).catch((error: unknown) => reportError(`Loading the events of run ${id}`, error));
  }, [id, reportError]);

  const metrics = useMemo(() => metricSeries(events), [events]);
  const models = useRegistry((state) => state.models);
  const artifactCount = useMemo(() => artifactRows(events, models, id).length, [events, models, id]);
  const runSpawns = useMemo(() => spawns(events), [events]);

  if (!run) return <p className="muted">Loading run {id}…</p>;
  const active = !TERMINAL_RUN_STATUSES.includes(run.status);

  async function rerun() {
    if (!run) return;
    try {
      const started = await useRuns.getState().start(run.recipe_path, run.config);
      onSelect(started.id);
    } catch (error) {
      reportError(`Re-running ${run.recipe_path}`, error);
    }
  }

  return (
    <section className="run-detail" data-testid="run-detail" data-run-id={id}>
      <div className="run-bar">
        <StatusBadge status={run.status} testId="run-detail-status" />
        <strong>{run.recipe_path}</strong>
        <span className="muted">
          {clockTime(run.started_at ?? run.created_at)} · {duration(run.started_at, run.ended_at)}
          {run.exit_code !== null && ` · exit ${run.exit_code}`}
          {run.dry_run && " · dry run"}
        </span>
        <span className="spacer" />
        {active && (
          <button onClick={() => void useRuns.getState().cancel(id).catch((error: unknown) => reportError("Cancelling the run", error))}>
            Cancel
          </button>
        )}
        <button className="primary" data-testid="rerun-button" onClick={() => void rerun()}>
          Re-run
        </button>
      </div>

      {run.error && (
        <div className="error-box" data-testid="run-detail-error">
          {run.error.file && run.error.line && (
            <>
              <LocationLink file={run.error.file} line={run.error.line} recipePath={run.recipe_path} />
              {": "}
            </>
          )}
          {run.error.message}
        </div>
      )}
      <ProgressBars events={events} />
      {runSpawns.length > 0 && (
        <p className="muted">
          {plural(runSpawns.length, "spawn")}: {runSpawns.map((spawn) => `${spawn.name} (${spawn.kind}, ${spawn.model_key})`).join(", ")}
        </p>
      )}
      <div className="sub-tabs">
        {TABS.map((name) => (
          <button key={name} className={tab === name ? "active" : ""} data-testid={`run-tab-${name}`} onClick={() => setTab(name)}>
            {name}
            {name === "metrics" && metrics.size > 0 && ` (${metrics.size})`}
            {name === "artifacts" && artifactCount > 0 && ` (${artifactCount})`}
          </button>
        ))}
      </div>
      {tab === "logs" && <Console events={events} recipePath={run.recipe_path} />}
      {tab === "metrics" &&
        (metrics.size === 0 ? (
          <p className="muted">This run logged no metrics (ctx.log_metric).</p>
        ) : (
          <div className="metric-grid">
            {[...metrics.entries()].map(([name, points]) => (
              <MetricChart key={name} name={name} points={points} />
            ))}
          </div>
        ))}
      {tab === "artifacts" && <RunArtifacts runId={id} events={events} runDir={detail?.run_dir ?? null} />}
      {tab === "config" && (
        <pre className="code" data-testid="run-config">
          {JSON.stringify(run.config, null, 2)}
        </pre>
      )}
      {tab === "recipe" &&
        (detail ? <SnapshotDiff snapshot={detail.recipe_source} recipePath={run.recipe_path} /> : <p className="muted">Loading the snapshot…</p>)}
    </section>
  );
}
