// Plain-text tables and number formats for the CLI.
import type { DeviceInfo, ModelRecord, SpawnTelemetry, Telemetry } from "../../common/index.js";

const GIB = 1024 ** 3;

export function formatGiB(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? "-" : `${(bytes / GIB).toFixed(2)} GiB`;
}

/** 1234 -> "1.23K", 8030261248 -> "8.03B". */
export function formatCount(value: number): string {
  const units: [number, string][] = [
    [1e12, "T"],
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "K"],
  ];
  for (const [size, suffix] of units) if (value >= size) return `${(value / size).toFixed(2)}${suffix}`;
  return String(value);
}

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

function lineage(model: ModelRecord): string {
  const parts: string[] = [];
  if (model.lineage.parent_key) parts.push(`from ${model.lineage.parent_key}`);
  if (model.lineage.run_id) parts.push(`run ${model.lineage.run_id}`);
  if (model.lineage.optim_step !== null) parts.push(`step ${model.lineage.optim_step}`);
  return parts.join(", ") || "-";
}

export function modelsTable(models: ModelRecord[]): string {
  return table(
    ["KEY", "KIND", "FAMILY", "PARAMS", "KV_CACHE_LEN", "TOKENS_TO_GENERATE", "TP", "LINEAGE"],
    models.map((model) => [
      model.key,
      model.kind,
      model.facts.family,
      formatCount(model.facts.parameters),
      String(model.defaults.kv_cache_len),
      String(model.defaults.tokens_to_generate),
      String(model.defaults.tp),
      lineage(model),
    ]),
  );
}

export function modelDetails(model: ModelRecord): string {
  const facts = model.facts;
  const rows: [string, string][] = [
    ["key", model.key],
    ["name", model.name],
    ["kind", model.kind],
    ["path", model.path ?? "(architecture only, no weights)"],
    ["storage", model.storage],
    ["base", model.base_key ?? "-"],
    ["family", facts.family],
    ["architecture", facts.architecture],
    ["parameters", `${facts.parameters.toLocaleString("en-US")} (${formatCount(facts.parameters)})`],
    ["layers", String(facts.layers)],
    ["heads", `${facts.heads} (kv heads ${facts.kv_heads})`],
    ["hidden", String(facts.hidden)],
    ["vocab", String(facts.vocab)],
    ["dtype", facts.dtype],
    ["kv_cache_len", String(model.defaults.kv_cache_len)],
    ["tokens_to_generate", String(model.defaults.tokens_to_generate)],
    ["tp", String(model.defaults.tp)],
    ["lineage", lineage(model)],
    ["recipe hash", model.lineage.recipe_hash ?? "-"],
    ["created", model.created_at],
  ];
  if (facts.adapter_rank !== undefined) rows.splice(9, 0, ["adapter rank", String(facts.adapter_rank)]);
  const width = Math.max(...rows.map(([name]) => name.length));
  return rows.map(([name, value]) => `${name.padEnd(width)}  ${value}`).join("\n");
}

function deviceRow(device: DeviceInfo): string[] {
  return [
    device.id,
    device.name,
    formatGiB(device.used_bytes),
    formatGiB(device.total_bytes),
    formatGiB(device.free_bytes),
    device.utilization === null || device.utilization === undefined ? "-" : `${device.utilization.toFixed(0)}%`,
    String(device.processes.length),
  ];
}

function sumOf(values: (number | null | undefined)[]): number | null {
  const present = values.filter((value): value is number => typeof value === "number");
  return present.length > 0 ? present.reduce((total, value) => total + value, 0) : null;
}

/** Returns the worker pids of a spawn's ranks, "-" for a rank whose worker has not reported one yet. */
function workerPids(spawn: SpawnTelemetry): string {
  if (spawn.ranks.length === 0) return "-";
  return spawn.ranks.map((rank) => (rank.pid === null || rank.pid === undefined ? "-" : String(rank.pid))).join(",");
}

function spawnRow(spawn: SpawnTelemetry): string[] {
  const planned = sumOf(spawn.ranks.map((rank) => (rank.plan ? sumOf(Object.values(rank.plan)) : null)));
  const measured = sumOf(spawn.ranks.map((rank) => rank.process_bytes));
  return [
    spawn.name,
    spawn.kind,
    spawn.model_key,
    String(spawn.tp),
    spawn.devices.join(","),
    spawn.state,
    workerPids(spawn),
    formatGiB(planned),
    formatGiB(measured),
    spawn.last_op ?? "-",
  ];
}

/** Formats the device table and the spawn table of one telemetry sample. */
export function telemetryTables(telemetry: Telemetry): string {
  const devices = table(
    ["DEVICE", "NAME", "USED", "TOTAL", "FREE", "UTIL", "PROCESSES"],
    telemetry.devices.map(deviceRow),
  );
  const spawns =
    telemetry.spawns.length === 0
      ? "no spawns"
      : table(
          ["SPAWN", "KIND", "MODEL", "TP", "DEVICES", "STATE", "PIDS", "PLANNED", "MEASURED", "LAST OP"],
          telemetry.spawns.map(spawnRow),
        );
  return `${devices}\n\n${spawns}`;
}
