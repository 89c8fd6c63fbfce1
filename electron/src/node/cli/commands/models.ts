// `galley models ...` and `galley datasets ...`: registry commands on the SQLite registry.
import type { Command } from "commander";

import { TinyFamily } from "../../../common/index.js";
import { DEFAULT_MODEL_KEY } from "../../control-plane.js";
import { CliError, type GlobalOptions, openControlPlane, parsePositiveInt } from "../context.js";
import { modelDetails, modelsTable, table } from "../format.js";

function withRegistry<T>(global: GlobalOptions, action: (plane: ReturnType<typeof openControlPlane>) => Promise<T> | T): Promise<T> {
  const plane = openControlPlane(global, "warn");
  return Promise.resolve()
    .then(() => action(plane))
    .finally(() => plane.db.close());
}

function printWarnings(warnings: string[]): void {
  for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
}

/** Explains an empty registry: the default model is being generated, or none was ever added. */
function emptyRegistryMessage(plane: ReturnType<typeof openControlPlane>): string {
  const creator = plane.defaultModelCreator();
  if (creator !== null) {
    return (
      `no models registered yet: galley process ${creator} is creating the default model ${DEFAULT_MODEL_KEY} ` +
      "(about half a minute); wait for it, then run `galley models list` again"
    );
  }
  return "no models registered; add one with `galley models make-tiny` or `galley models import`";
}

export function registerModelCommands(program: Command, global: () => GlobalOptions): void {
  const models = program.command("models").description("manage the model registry");

  models
    .command("import <dir>")
    .description("validate an HF-format model folder (or a peft adapter folder) and register it")
    .requiredOption("--key <key>", "registry key: lower-case letters, digits, '.', '_' and '-'")
    .option("--name <name>", "display name (default: the key)")
    .option("--link", "reference the folder in place instead of copying it into the data directory")
    .option("--base <key>", "adapters: registry key of the base model, if adapter_config.json names none")
    .action((dir: string, options: { key: string; name?: string; link?: boolean; base?: string }) =>
      withRegistry(global(), async (plane) => {
        const result = await plane.models.importFolder({
          dir,
          key: options.key,
          name: options.name,
          link: options.link ?? false,
          baseKey: options.base,
        });
        printWarnings(result.warnings);
        process.stdout.write(`registered ${result.model.key} (${result.model.kind}) at ${result.model.path}\n`);
      }),
    );

  models
    .command("make-tiny")
    .description("generate a small random-initialized model of a real architecture, with its real tokenizer, and register it")
    .requiredOption("--family <family>", `architecture family: ${TinyFamily.options.join(" or ")}`)
    .requiredOption("--key <key>", "registry key")
    .option("--seed <n>", "torch seed for the random weights")
    .action((options: { family: string; key: string; seed?: string }) =>
      withRegistry(global(), async (plane) => {
        const family = TinyFamily.safeParse(options.family);
        if (!family.success) {
          throw new CliError(`unknown family "${options.family}"; choose ${TinyFamily.options.join(" or ")}`, 2);
        }
        const seed = options.seed === undefined ? undefined : Number(options.seed);
        if (seed !== undefined && (!Number.isInteger(seed) || seed < 0)) {
          throw new CliError(`--seed must be a non-negative integer, got "${options.seed}"`, 2);
        }
        const result = await plane.models.makeTiny(family.data, options.key, seed === undefined ? {} : { seed });
        printWarnings(result.warnings);
        process.stdout.write(`registered ${result.model.key} (${result.model.facts.architecture}) at ${result.model.path}\n`);
      }),
    );

  models
    .command("list")
    .description("list registered models")
    .option("--json", "print the records as JSON")
    .action((options: { json?: boolean }) =>
      withRegistry(global(), (plane) => {
        const records = plane.models.store.list();
        if (options.json) process.stdout.write(`${JSON.stringify(records, null, 2)}\n`);
        else if (records.length === 0) process.stdout.write(`${emptyRegistryMessage(plane)}\n`);
        else process.stdout.write(`${modelsTable(records)}\n`);
      }),
    );

  models
    .command("show <key>")
    .description("show a model's facts, default deployment parameters and lineage")
    .option("--json", "print the record as JSON")
    .action((key: string, options: { json?: boolean }) =>
      withRegistry(global(), (plane) => {
        const record = plane.models.store.get(key);
        process.stdout.write(options.json ? `${JSON.stringify(record, null, 2)}\n` : `${modelDetails(record)}\n`);
      }),
    );

  models
    .command("set <key>")
    .description("change a model's default deployment parameters")
    .option("--kv-cache-len <n>", "KV cache length in tokens, shared by all sequences in flight")
    .option("--tokens-to-generate <n>", "maximum new tokens per generation")
    .option("--tp <n>", "tensor parallelism (devices per spawn)")
    .action((key: string, options: { kvCacheLen?: string; tokensToGenerate?: string; tp?: string }) =>
      withRegistry(global(), (plane) => {
        const changes: { kv_cache_len?: number; tokens_to_generate?: number; tp?: number } = {};
        if (options.kvCacheLen !== undefined) changes.kv_cache_len = parsePositiveInt(options.kvCacheLen, "--kv-cache-len");
        if (options.tokensToGenerate !== undefined) {
          changes.tokens_to_generate = parsePositiveInt(options.tokensToGenerate, "--tokens-to-generate");
        }
        if (options.tp !== undefined) changes.tp = parsePositiveInt(options.tp, "--tp");
        if (Object.keys(changes).length === 0) {
          throw new CliError("nothing to change; give --kv-cache-len, --tokens-to-generate or --tp", 2);
        }
        const record = plane.models.setDefaults(key, changes);
        const { kv_cache_len, tokens_to_generate, tp } = record.defaults;
        process.stdout.write(`${key}: kv_cache_len=${kv_cache_len} tokens_to_generate=${tokens_to_generate} tp=${tp}\n`);
      }),
    );

  models
    .command("add-architecture <name>")
    .description("register an architecture-only entry (no weights) from resources/architectures, for planning and dry runs")
    .option("--key <key>", "registry key (default: the architecture's usual key, e.g. qwen3-32b)")
    .action((name: string, options: { key?: string }) =>
      withRegistry(global(), (plane) => {
        const record = plane.models.addArchitecture(name, options.key);
        process.stdout.write(`registered ${record.key} (architecture only, ${record.facts.parameters.toLocaleString("en-US")} parameters)\n`);
      }),
    );

  models
    .command("remove <key>")
    .description("unregister a model; deletes its folder only if the registry owns it")
    .action((key: string) =>
      withRegistry(global(), async (plane) => {
        const result = await plane.models.remove(key);
        process.stdout.write(`removed ${key}${result.deleted_files ? " and its folder" : ""}\n`);
      }),
    );

  const datasets = program.command("datasets").description("manage the dataset registry");
  datasets
    .command("list")
    .description("list registered datasets")
    .action(() =>
      withRegistry(global(), (plane) => {
        const records = plane.datasets.store.list();
        process.stdout.write(
          `${table(
            ["KEY", "FORMAT", "ROWS", "PATH"],
            records.map((record) => [record.key, record.format, String(record.rows ?? "-"), record.path]),
          )}\n`,
        );
      }),
    );
  datasets
    .command("import <file>")
    .description("register a .jsonl, .json or .csv file (it stays where it is)")
    .requiredOption("--key <key>", "registry key")
    .option("--name <name>", "display name")
    .action((file: string, options: { key: string; name?: string }) =>
      withRegistry(global(), (plane) => {
        const record = plane.datasets.importFile(file, options.key, options.name);
        process.stdout.write(`registered dataset ${record.key}: ${record.rows} rows of ${record.format}\n`);
      }),
    );
}
