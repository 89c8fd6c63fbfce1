import type { SpawnTelemetry } from "@galley/common";

import { gib, planTotal } from "../../lib/format";

function sum(values: (number | null | undefined)[]): number | null {
  const present = values.filter((value): value is number => typeof value === "number");
  return present.length ? present.reduce((total, value) => total + value, 0) : null;
}

export function SpawnTable({ spawns }: { spawns: SpawnTelemetry[] }) {
  // NOTE: no release button yet. The engine releases a spawn only for the session that owns
  // it (dealloc, or the keep-warm TTL after its run ends), and the API has no call for it.
  return (
    <table className="table" data-testid="spawn-table">
      <thead>
        <tr>
          <th>spawn</th>
          <th>kind</th>
          <th>model</th>
          <th>tp</th>
          <th>devices</th>
          <th>state</th>
          <th>last op</th>
          <th>ops</th>
          <th>tokens/s</th>
          <th>planned</th>
          <th>measured</th>
        </tr>
      </thead>
      <tbody>
        {spawns.map((spawn) => (
          <tr key={spawn.id} data-testid="spawn-row" data-spawn={spawn.name}>
            <td>{spawn.name}</td>
            <td>
              <span className={`kind kind-${spawn.kind}`}>{spawn.kind}</span>
            </td>
            <td>{spawn.model_key}</td>
            <td>{spawn.tp}</td>
            <td>{spawn.devices.join(", ")}</td>
            <td>{spawn.state}</td>
            <td>{spawn.last_op ?? "–"}</td>
            <td>{Object.values(spawn.op_counts).reduce((total, count) => total + count, 0)}</td>
            <td>{spawn.tokens_per_second ? spawn.tokens_per_second.toFixed(1) : "–"}</td>
            <td>{gib(sum(spawn.ranks.map((rank) => planTotal(rank.plan))))}</td>
            <td>{gib(sum(spawn.ranks.map((rank) => rank.process_bytes)))}</td>
          </tr>
        ))}
        {spawns.length === 0 && (
          <tr>
            <td colSpan={11} className="muted">
              No spawns. Run a recipe to place a model.
            </td>
          </tr>
        )}
      </tbody>
    </table>
  );
}
