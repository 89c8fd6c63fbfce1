// The run bar of the workbench: the active recipe's config form, Run and Cancel, and the
// status and progress of the run last started from it.
import { TERMINAL_RUN_STATUSES, type RunEvent } from "@galley/common";
import { useEffect, useState } from "react";

import { LocatedText, LocationLink } from "../../components/LocatedText";
import { ProgressBars } from "../../components/ProgressBars";
import { StatusBadge } from "../../components/StatusBadge";
import { duration } from "../../lib/format";
import { buildConfig, type ConfigProblem } from "../../lib/schema-form";
import { useRecipeConfig } from "../../stores/recipe-config";
import { spawnableModels, useRegistry } from "../../stores/registry";
import { useRecipeRunId, useRuns } from "../../stores/runs";
import { useUi } from "../../stores/ui";
import { isDirty, useWorkspace } from "../../stores/workspace";
import { ConfigForm } from "./ConfigForm";

const NO_EVENTS: RunEvent[] = [];
const FIELD_LIST = new Intl.ListFormat("en", { type: "conjunction" });

export function RunPanel({ path }: { path: string }) {
  const schema = useRecipeConfig((state) => state.schemas[path]);
  const values = useRecipeConfig((state) => state.values[path]);
  const setValue = useRecipeConfig((state) => state.setValue);
  const runId = useRecipeRunId(path);
  const run = useRuns((state) => (runId ? state.runs[runId] : undefined));
  const events = useRuns((state) => (runId ? state.events[runId] : undefined)) ?? NO_EVENTS;
  const reportError = useUi((state) => state.reportError);
  const [problems, setProblems] = useState<ConfigProblem[]>([]);
  const [starting, setStarting] = useState(false);

  // Each saved version of the recipe may declare a different config.
  const saved = useWorkspace((state) => state.files[path]?.saved);
  useEffect(() => {
    void useRecipeConfig.getState().loadSchema(path);
    setProblems([]);
  }, [path, saved]);

  const active = run !== undefined && !TERMINAL_RUN_STATUSES.includes(run.status);

  async function start() {
    setStarting(true);
    try {
      const workspace = useWorkspace.getState();
      if (isDirty(workspace.files[path])) await workspace.save(path);
      const current = useRecipeConfig.getState().schemas[path];
      const ready = current?.status === "ready" ? current : await useRecipeConfig.getState().loadSchema(path);
      if (ready.status !== "ready") return;

      const knownModels = spawnableModels(useRegistry.getState().models).map((model) => model.key);
      const { config, problems: found } = buildConfig(ready.fields, useRecipeConfig.getState().values[path] ?? {}, knownModels);
      setProblems(found);
      if (found.length > 0) return;
      await useRuns.getState().start(path, config);
    } catch (error) {
      reportError(`Starting ${path}`, error);
    } finally {
      setStarting(false);
    }
  }

  return (
    <section className="run-panel" data-testid="run-panel" data-run-id={runId ?? ""}>
      <div className="run-bar">
        <button className="primary" data-testid="run-button" disabled={starting || active || schema?.status === "loading"} onClick={() => void start()}>
          {starting ? "Starting…" : "Run"}
        </button>
        <button
          data-testid="cancel-button"
          disabled={!active}
          onClick={() => runId && void useRuns.getState().cancel(runId).catch((error: unknown) => reportError("Cancelling the run", error))}
        >
          Cancel
        </button>
        {run && <StatusBadge status={run.status} testId="run-status" />}
        {run && <span className="muted">{duration(run.started_at, run.ended_at)}</span>}
      </div>

      {schema?.status === "error" && (
        <div className="error-box" data-testid="schema-error">
          {schema.body?.file && schema.body.line ? (
            <>
              <LocationLink file={schema.body.file} line={schema.body.line} recipePath={path} />
              {`\n${schema.body.message}`}
            </>
          ) : (
            <LocatedText text={schema.message} recipePath={path} />
          )}
        </div>
      )}
      {schema?.status === "ready" && (
        <ConfigForm fields={schema.fields} values={values ?? {}} problems={problems} onChange={(field, value) => setValue(path, field, value)} />
      )}
      {problems.length > 0 && (
        <p className="problem" data-testid="config-problems">
          Fix {FIELD_LIST.format(problems.map((problem) => problem.field))} before running.
        </p>
      )}

      {run?.error && (
        <div className="error-box" data-testid="run-error">
          {run.error.file && run.error.line && (
            <>
              <LocationLink file={run.error.file} line={run.error.line} recipePath={path} />
              {": "}
            </>
          )}
          {run.error.message}
        </div>
      )}
      <ProgressBars events={events} />
    </section>
  );
}
