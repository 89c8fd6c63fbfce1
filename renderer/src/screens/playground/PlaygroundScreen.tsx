// Chat with an inference spawn of any registered model, with sampling controls. Each message
// is one run of the playground recipe. The engine reuses the kept spawn between messages
// while the model and its inference configuration stay the same.
import { TERMINAL_RUN_STATUSES, type RunEvent } from "@galley/common";
import { useEffect, useState } from "react";

import { ApiError, call } from "../../api/client";
import { LocatedText } from "../../components/LocatedText";
import { outputChunks } from "../../lib/run-events";
import { spawnableModels, useRegistry } from "../../stores/registry";
import { useRuns } from "../../stores/runs";
import { useUi } from "../../stores/ui";
import { findReply, PLAYGROUND_RECIPE, PLAYGROUND_RECIPE_PATH, type PlaygroundReply } from "./playground-recipe";

type Role = "system" | "user" | "assistant";
interface Turn {
  role: Role;
  content: string;
  spawn?: PlaygroundReply["spawn"];
}

interface Sampling {
  temperature: string;
  topP: string;
  maxTokens: string;
}

const NO_EVENTS: RunEvent[] = [];

async function writeRecipe(): Promise<void> {
  try {
    await call("workspace.write", { path: PLAYGROUND_RECIPE_PATH, content: PLAYGROUND_RECIPE });
  } catch (error) {
    if (!(error instanceof ApiError) || error.body.code !== "not_found") throw error;
    await call("workspace.create", { path: PLAYGROUND_RECIPE_PATH, content: PLAYGROUND_RECIPE });
  }
}

/** Lists every sampling value that is out of range, in the words of the control's label. */
export function samplingProblems({ temperature, topP, maxTokens }: Sampling): string[] {
  const problems: string[] = [];
  const t = Number(temperature);
  const p = Number(topP);
  const n = Number(maxTokens);
  if (temperature.trim() === "" || !Number.isFinite(t) || t < 0) problems.push(`temperature must be 0 or more, got "${temperature}"`);
  if (topP.trim() === "" || !Number.isFinite(p) || p <= 0 || p > 1) problems.push(`top_p must be above 0 and at most 1, got "${topP}"`);
  if (!Number.isInteger(n) || n < 1) problems.push(`max new tokens must be a whole number of at least 1, got "${maxTokens}"`);
  return problems;
}

function spawnNote(spawn: PlaygroundReply["spawn"]): string | null {
  if (!spawn) return null;
  const where = `${spawn.devices.join(", ")}, kv_cache_len ${spawn.kv_cache_len}`;
  return spawn.reused ? `reused the kept spawn (${where})` : `new spawn (${where})`;
}

function SamplingControls({ sampling, onChange }: { sampling: Sampling; onChange(next: Sampling): void }) {
  return (
    <>
      <label>
        temperature
        <input
          type="number"
          min={0}
          step={0.1}
          data-testid="playground-temperature"
          value={sampling.temperature}
          onChange={(event) => onChange({ ...sampling, temperature: event.target.value })}
        />
      </label>
      <label>
        top_p
        <input
          type="number"
          min={0.01}
          max={1}
          step={0.05}
          data-testid="playground-top-p"
          value={sampling.topP}
          onChange={(event) => onChange({ ...sampling, topP: event.target.value })}
        />
      </label>
      <label>
        max new tokens
        <input
          type="number"
          min={1}
          step={1}
          data-testid="playground-max-tokens"
          value={sampling.maxTokens}
          onChange={(event) => onChange({ ...sampling, maxTokens: event.target.value })}
        />
      </label>
    </>
  );
}

export function PlaygroundScreen() {
  const models = spawnableModels(useRegistry((state) => state.models));
  const reportError = useUi((state) => state.reportError);
  const openRun = useUi((state) => state.openRun);
  const [modelKey, setModelKey] = useState("");
  const [system, setSystem] = useState("");
  const [sampling, setSampling] = useState<Sampling>({ temperature: "0", topP: "1", maxTokens: "32" });
  const [problems, setProblems] = useState<string[]>([]);
  const [turns, setTurns] = useState<Turn[]>([]);
  const [draft, setDraft] = useState("");
  const [runId, setRunId] = useState<string | null>(null);
  const run = useRuns((state) => (runId ? state.runs[runId] : undefined));
  const events = useRuns((state) => (runId ? state.events[runId] : undefined)) ?? NO_EVENTS;

  const model = modelKey || models[0]?.key || "";
  const pending = runId !== null && (!run || !TERMINAL_RUN_STATUSES.includes(run.status));
  const selectedModel = models.find((entry) => entry.key === model);

  // When the run ends, its printed reply becomes the assistant turn.
  useEffect(() => {
    if (!run || run.status !== "succeeded") return;
    const stdout = outputChunks(events)
      .filter((chunk) => chunk.stream === "stdout")
      .map((chunk) => chunk.text)
      .join("");
    const reply = findReply(stdout);
    if (reply === null) return;
    setTurns((current) =>
      current[current.length - 1]?.role === "assistant" ? current : [...current, { role: "assistant", content: reply.content, spawn: reply.spawn }],
    );
    setRunId(null);
  }, [run, events]);

  async function send() {
    const content = draft.trim();
    if (!content || !model) return;
    const found = samplingProblems(sampling);
    setProblems(found);
    if (found.length > 0) return;
    const conversation: Turn[] = [...turns, { role: "user", content }];
    setTurns(conversation);
    setDraft("");
    try {
      await writeRecipe();
      const wire: [Role, string][] = conversation.map((turn) => [turn.role, turn.content]);
      const started = await useRuns.getState().start(PLAYGROUND_RECIPE_PATH, {
        model,
        turns: system.trim() ? [["system", system.trim()], ...wire] : wire,
        temperature: Number(sampling.temperature),
        top_p: Number(sampling.topP),
        max_gen_len: Number(sampling.maxTokens),
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
        <SamplingControls sampling={sampling} onChange={setSampling} />
        <label className="grow">
          system prompt
          <input value={system} placeholder="optional" onChange={(event) => setSystem(event.target.value)} />
        </label>
        <button onClick={() => setTurns([])} disabled={pending}>
          Clear
        </button>
      </div>
      {selectedModel && (
        <p className="muted">
          Spawns {selectedModel.key} with its inference configuration (kv_cache_len {selectedModel.defaults.kv_cache_len}), kept warm between messages.
        </p>
      )}
      {problems.map((problem) => (
        <p key={problem} className="problem" data-testid="playground-problem">
          {problem}
        </p>
      ))}

      <div className="chat" data-testid="playground-chat">
        {turns.map((turn, index) => (
          <div key={index} className={`message message-${turn.role}`} data-testid="playground-message" data-role={turn.role}>
            <span className="role">{turn.role}</span>
            <pre>{turn.content}</pre>
            {spawnNote(turn.spawn ?? null) && (
              <span className="muted spawn-note" data-testid="playground-spawn" data-reused={String(turn.spawn?.reused)}>
                {spawnNote(turn.spawn ?? null)}
              </span>
            )}
          </div>
        ))}
        {pending && <div className="muted">generating… ({run?.status ?? "starting"})</div>}
        {failed && (
          <div className="error-box" data-testid="playground-error">
            The run{" "}
            <a href="#" onClick={(event) => {
              event.preventDefault();
              openRun(run.id);
            }}>
              {run.id}
            </a>{" "}
            {run.status}. {run.error ? <LocatedText text={run.error.message} recipePath={PLAYGROUND_RECIPE_PATH} /> : "Its log is on the Runs screen."}
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
