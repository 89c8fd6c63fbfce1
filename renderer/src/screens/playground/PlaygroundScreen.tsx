// Chat with an inference spawn of any registered model.
import { TERMINAL_RUN_STATUSES, type RunEvent } from "@galley/common";
import { useEffect, useState } from "react";

import { ApiError, call } from "../../api/client";
import { LocatedText } from "../../components/LocatedText";
import { outputChunks } from "../../lib/run-events";
import { spawnableModels, useRegistry } from "../../stores/registry";
import { useRuns } from "../../stores/runs";
import { useUi } from "../../stores/ui";
import { findReply, PLAYGROUND_RECIPE, PLAYGROUND_RECIPE_PATH } from "./playground-recipe";

type Turn = [role: "system" | "user" | "assistant", content: string];

const NO_EVENTS: RunEvent[] = [];

async function writeRecipe(): Promise<void> {
  try {
    await call("workspace.write", { path: PLAYGROUND_RECIPE_PATH, content: PLAYGROUND_RECIPE });
  } catch (error) {
    if (!(error instanceof ApiError) || error.body.code !== "not_found") throw error;
    await call("workspace.create", { path: PLAYGROUND_RECIPE_PATH, content: PLAYGROUND_RECIPE });
  }
}

export function PlaygroundScreen() {
  const models = spawnableModels(useRegistry((state) => state.models));
  const reportError = useUi((state) => state.reportError);
  const [modelKey, setModelKey] = useState("");
  const [system, setSystem] = useState("");
  const [temperature, setTemperature] = useState("0");
  const [maxTokens, setMaxTokens] = useState("32");
  const [turns, setTurns] = useState<Turn[]>([]);
  const [draft, setDraft] = useState("");
  const [runId, setRunId] = useState<string | null>(null);
  const run = useRuns((state) => (runId ? state.runs[runId] : undefined));
  const events = useRuns((state) => (runId ? state.events[runId] : undefined)) ?? NO_EVENTS;

  const model = modelKey || models[0]?.key || "";
  const pending = runId !== null && (!run || !TERMINAL_RUN_STATUSES.includes(run.status));

  // When the run ends, its printed reply becomes the assistant turn.
  useEffect(() => {
    if (!run || !TERMINAL_RUN_STATUSES.includes(run.status) || run.status !== "succeeded") return;
    const stdout = outputChunks(events)
      .filter((chunk) => chunk.stream === "stdout")
      .map((chunk) => chunk.text)
      .join("");
    const reply = findReply(stdout);
    if (reply === null) return;
    setTurns((current) => (current[current.length - 1]?.[0] === "assistant" ? current : [...current, ["assistant", reply]]));
    setRunId(null);
  }, [run, events]);

  async function send() {
    const content = draft.trim();
    if (!content || !model) return;
    const conversation: Turn[] = [...turns, ["user", content]];
    setTurns(conversation);
    setDraft("");
    try {
      await writeRecipe();
      const withSystem: Turn[] = system.trim() ? [["system", system.trim()], ...conversation] : conversation;
      const started = await useRuns.getState().start(PLAYGROUND_RECIPE_PATH, {
        model,
        turns: withSystem,
        temperature: Number(temperature),
        max_gen_len: Number(maxTokens),
      });
      setRunId(started.id);
    } catch (error) {
      reportError("Sending the message", error);
    }
  }

  const failed = run && run.status !== "succeeded" && TERMINAL_RUN_STATUSES.includes(run.status);
  return (
    <div className="page playground">
      <div className="playground-settings">
        <label>
          model
          <select data-testid="playground-model" value={model} onChange={(event) => setModelKey(event.target.value)}>
            {models.map((entry) => (
              <option key={entry.key} value={entry.key}>
                {entry.key}
              </option>
            ))}
          </select>
        </label>
        <label>
          temperature
          <input type="number" min={0} step={0.1} value={temperature} onChange={(event) => setTemperature(event.target.value)} />
        </label>
        <label>
          max new tokens
          <input type="number" min={1} step={1} value={maxTokens} onChange={(event) => setMaxTokens(event.target.value)} />
        </label>
        <label className="grow">
          system prompt
          <input value={system} placeholder="optional" onChange={(event) => setSystem(event.target.value)} />
        </label>
        <button onClick={() => setTurns([])} disabled={pending}>
          Clear
        </button>
      </div>

      <div className="chat" data-testid="playground-chat">
        {turns.map(([role, content], index) => (
          <div key={index} className={`message message-${role}`} data-testid="playground-message" data-role={role}>
            <span className="role">{role}</span>
            <pre>{content}</pre>
          </div>
        ))}
        {pending && <div className="muted">generating… ({run?.status ?? "starting"})</div>}
        {failed && (
          <div className="error-box" data-testid="playground-error">
            The run {run.id} {run.status}.{" "}
            {run.error ? <LocatedText text={run.error.message} recipePath={PLAYGROUND_RECIPE_PATH} /> : "See the Runs screen for its log."}
          </div>
        )}
      </div>

      <form
        className="chat-input"
        onSubmit={(event) => {
          event.preventDefault();
          void send();
        }}
      >
        <textarea
          data-testid="playground-input"
          rows={2}
          value={draft}
          placeholder={model ? `Message ${model}… (Enter sends, Shift+Enter for a new line)` : "Register a model first"}
          onChange={(event) => setDraft(event.target.value)}
          onKeyDown={(event) => {
            if (event.key === "Enter" && !event.shiftKey) {
              event.preventDefault();
              void send();
            }
          }}
        />
        <button type="submit" className="primary" data-testid="playground-send" disabled={pending || !model || !draft.trim()}>
          Send
        </button>
      </form>
    </div>
  );
}
