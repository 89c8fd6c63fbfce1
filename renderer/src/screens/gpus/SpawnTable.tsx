// Every live spawn of every session, with the configuration it resolved to, its memory
// (plan beside measurement) and a Release button that ends it after a confirmation.
import type { SpawnTelemetry } from "@galley/common";
import { useState } from "react";

import { call } from "../../api/client";
import { gib, planTotal } from "../../lib/format";
import { confirmAction } from "../../stores/dialogs";
import { useUi } from "../../stores/ui";

function sum(values: (number | null | undefined)[]): number | null {
  const present = values.filter((value): value is number => typeof value === "number");
  return present.length ? present.reduce((total, value) => total + value, 0) : null;
}

/** Formats the token budget a spawn was placed with: the KV cache for inference, the micro-batch for training. */
function tokenBudget(spawn: SpawnTelemetry): string {
  if (spawn.kind === "train") return spawn.max_batch_size ? `batch ${spawn.max_batch_size}` : "–";
  return spawn.kv_cache_len ? `kv ${spawn.kv_cache_len}` : "–";
}

async function release(spawn: SpawnTelemetry): Promise<void> {
  const owner = spawn.state === "kept" ? "No session uses it: it is kept warm for reuse." : `Session ${spawn.session} owns it; its next call on this spawn fails.`;
  const confirmed = await confirmAction({
    title: `Release spawn ${spawn.name}?`,
    message: `This ends the worker processes of ${spawn.name} (${spawn.model_key}, ${spawn.kind}) and frees their memory. ${owner}`,
    confirmLabel: "Release",
  });
  if (!confirmed) return;
  const released = await call("spawns.release", { id: spawn.id });
  useUi.getState().notify("info", `Released spawn ${released.name}${released.pids.length ? ` (${released.pids.length === 1 ? "PID" : "PIDs"} ${released.pids.join(", ")})` : ""}.`);
}

export function SpawnTable({ spawns }: { spawns: SpawnTelemetry[] }) {
  const reportError = useUi((state) => state.reportError);
  // Spawns whose release is in flight, so their button cannot be pressed twice.
  const [releasing, setReleasing] = useState<ReadonlySet<string>>(new Set());

  function onRelease(spawn: SpawnTelemetry) {
    setReleasing((current) => new Set(current).add(spawn.id));
    release(spawn)
      .catch((error: unknown) => reportError(`Releasing spawn ${spawn.name}`, error))
      .finally(() =>
        setReleasing((current) => {
          const next = new Set(current);
          next.delete(spawn.id);
          return next;
        }),
      );
  }

  return (
    <table className="table" data-testid="spawn-table">
      <thead>
        <tr>
          <th>spawn</th>
          <th>kind</th>
          <th>model</th>
          <th>tp</th>
          <th>devices</th>
          <th title="KV cache tokens (inference) or tokens per micro-batch (training)">tokens</th>
          <th>state</th>
          <th>last op</th>
          <th>ops</th>
          <th>tokens/s</th>
          <th>planned</th>
          <th>measured</th>
          <th />
        </tr>
      </thead>
      <tbody>
        {spawns.map((spawn) => (
          <tr key={spawn.id} data-testid="spawn-row" data-spawn={spawn.name} data-spawn-id={spawn.id} data-state={spawn.state}>
            <td>{spawn.name}</td>
            <td>
              <span className={`kind kind-${spawn.kind}`}>{spawn.kind}</span>
            </td>
            <td>{spawn.model_key}</td>
            <td>{spawn.tp}</td>
            <td>{spawn.devices.join(", ")}</td>
            <td data-testid="spawn-tokens">{tokenBudget(spawn)}</td>
            <td>{spawn.state}</td>
            <td>{spawn.last_op ?? "–"}</td>
            <td>{Object.values(spawn.op_counts).reduce((total, count) => total + count, 0)}</td>
            <td>{spawn.tokens_per_second ? spawn.tokens_per_second.toFixed(1) : "–"}</td>
            <td>{gib(sum(spawn.ranks.map((rank) => planTotal(rank.plan))))}</td>
            <td>{gib(sum(spawn.ranks.map((rank) => rank.process_bytes)))}</td>
            <td>
              <button
                className="small"
                data-testid="release-spawn"
                disabled={releasing.has(spawn.id) || spawn.state === "loading"}
                title={spawn.state === "loading" ? "A loading spawn can be released once it is ready" : "End this spawn and free its memory"}
                onClick={() => onRelease(spawn)}
              >
                {releasing.has(spawn.id) ? "Releasing…" : "Release"}
              </button>
            </td>
          </tr>
        ))}
        {spawns.length === 0 && (
          <tr>
            <td colSpan={13} className="muted">
              No spawns. Run a recipe to place a model.
            </td>
          </tr>
        )}
      </tbody>
    </table>
  );
}
