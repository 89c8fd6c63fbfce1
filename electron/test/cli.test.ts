// The `galley` CLI as a person runs it: tiny models registered under the keys the example
// recipes use, then `galley run` on each of them, checking exit codes and messages.
import fs from "node:fs";
import path from "node:path";

import { beforeAll, describe, expect, test } from "vitest";

import { casesDir, engineAvailable, runCli, tempDir } from "./helpers.js";

const home = tempDir("cli-home");
const env = { GALLEY_HOME: home };
const cli = (...args: string[]) => runCli(args, env);
const runnable = engineAvailable("CLI tests") && casesAvailable();

function casesAvailable(): boolean {
  if (fs.existsSync(casesDir)) return true;
  process.stderr.write(`skipping the CLI recipe tests: the example recipes folder ${casesDir} does not exist\n`);
  return false;
}

const recipe = (name: string) => path.join(casesDir, name);

describe.skipIf(!runnable)("galley CLI", () => {
  beforeAll(() => {
    const llama = cli("models", "make-tiny", "--family", "llama-3.1", "--key", "llama-3.1-8b-instruct");
    expect(llama.code, llama.stderr).toBe(0);
    const qwen = cli("models", "make-tiny", "--family", "qwen3", "--key", "qwen3-32b");
    expect(qwen.code, qwen.stderr).toBe(0);
  }, 300_000);

  describe("models", () => {
    test("list shows both tiny models", () => {
      const result = cli("models", "list");
      expect(result.code).toBe(0);
      const lines = result.stdout.trim().split("\n");
      expect(lines[0]).toMatch(/^KEY\s+KIND\s+FAMILY\s+PARAMS\s+KV_CACHE_LEN\s+TOKENS_TO_GENERATE\s+TP\s+LINEAGE$/);
      expect(result.stdout).toMatch(/llama-3\.1-8b-instruct\s+base\s+llama\s+16\.\d\dM\s+131072\s+2048\s+1/);
      expect(result.stdout).toMatch(/qwen3-32b\s+base\s+qwen3\s+19\.49M\s+40960\s+2048\s+1/);
    });

    test("show prints facts as JSON", () => {
      const result = cli("models", "show", "qwen3-32b", "--json");
      expect(result.code).toBe(0);
      const record = JSON.parse(result.stdout) as { storage: string; facts: Record<string, unknown>; path: string };
      expect(record.storage).toBe("generated");
      expect(record.facts).toMatchObject({ family: "qwen3", architecture: "Qwen3ForCausalLM", layers: 2, vocab: 151_680 });
      expect(record.path).toBe(path.join(home, "models", "qwen3-32b"));
    });

    test("set changes defaults and checks values", () => {
      const bad = cli("models", "set", "llama-3.1-8b-instruct", "--tp", "0");
      expect(bad.code).toBe(2);
      expect(bad.stderr).toBe('error: --tp must be a positive integer, got "0"\n');

      const good = cli("models", "set", "llama-3.1-8b-instruct", "--kv-cache-len", "4096", "--tokens-to-generate", "64");
      expect(good.code).toBe(0);
      expect(good.stdout).toBe("llama-3.1-8b-instruct: kv_cache_len=4096 tokens_to_generate=64 tp=1\n");
    });

    test("unknown key lists the known ones", () => {
      const result = cli("models", "show", "gpt-9");
      expect(result.code).toBe(1);
      expect(result.stderr).toBe('error: unknown model key "gpt-9"; known keys: llama-3.1-8b-instruct, qwen3-32b\n');
    });

    test("taken key is rejected by name", () => {
      const result = cli("models", "import", path.join(home, "models", "qwen3-32b"), "--key", "qwen3-32b");
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('model key "qwen3-32b" is already registered');
    });
  });

  describe("run", () => {
    test("seed_builders exits 0", { timeout: 300_000 }, () => {
      const result = cli("run", recipe("seed_builders.py"));
      expect(result.code, result.stderr).toBe(0);
    });

    test("seed_spawns exits 0 with both spawns", { timeout: 300_000 }, () => {
      const result = cli("run", recipe("seed_spawns.py"));
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toContain("[spawn] train_model: train of llama-3.1-8b-instruct");
      expect(result.stderr).toContain("[spawn] inf_model: inference of llama-3.1-8b-instruct");
    });

    test("seed_config with its config exits 0", { timeout: 300_000 }, () => {
      const result = cli("run", recipe("seed_config.py"), "--config", recipe("seed_config.json"));
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toContain("[spawn] model_trained: train of llama-3.1-8b-instruct");
    });

    test("seed_config_as_printed explains Annotated", { timeout: 300_000 }, () => {
      const result = cli("run", recipe("seed_config_as_printed.py"), "--config", recipe("seed_config.json"));
      expect(result.code).toBe(2);
      const lastLine = result.stderr.trim().split("\n").at(-1)!;
      expect(lastLine).toMatch(
        /^error: .*seed_config_as_printed\.py:5: Annotated\[AdaptiveModel\] needs a type and at least one annotation/,
      );
      // The terminal shows the recipe the person ran, not the run's snapshot copy.
      expect(lastLine).toContain(recipe("seed_config_as_printed.py"));
    });

    test("unknown model key lists known keys", { timeout: 300_000 }, () => {
      const config = path.join(tempDir("cfg"), "config.json");
      fs.writeFileSync(config, JSON.stringify({ model_to_train: "llama-3.1-70b", tp: 1, max_seq_len: 2048, train_adapter: true }));
      const result = cli("run", recipe("seed_config.py"), "--config", config);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/llama-3\.1-70b/);
      expect(result.stderr).toMatch(/known keys: llama-3\.1-8b-instruct, qwen3-32b/);
      expect(result.stderr).not.toContain("[spawn]");
      // Config problems name the field and point at its declaration in the recipe, never at
      // a line of the run's pretty-printed copy of the config.
      expect(result.stderr).toContain(`${recipe("seed_config.py")}:6: config field "model_to_train" = "llama-3.1-70b"`);
      expect(result.stderr).not.toMatch(/config\.json:\d+/);
    });

    test("missing recipe and bad config file exit 2", () => {
      const missing = cli("run", path.join(home, "nope.py"));
      expect(missing.code).toBe(2);
      expect(missing.stderr).toBe(`error: recipe ${path.join(home, "nope.py")} does not exist\n`);

      const config = path.join(tempDir("cfg"), "bad.json");
      fs.writeFileSync(config, "{tp: 1}");
      const badConfig = cli("run", recipe("seed_config.py"), "--config", config);
      expect(badConfig.code).toBe(2);
      expect(badConfig.stderr).toMatch(/^error: config file .*bad\.json is not valid JSON/);
    });

    test("runs list records each run", () => {
      const result = cli("runs", "list", "--limit", "50");
      expect(result.code).toBe(0);
      expect(result.stdout.match(/succeeded/g)?.length).toBe(3);
      expect(result.stdout.match(/failed/g)?.length).toBe(2);
      expect(result.stdout).toMatch(/failed\s+2\s+.*seed_config_as_printed\.py\s+\S*seed_config_as_printed\.py:5: Annotated/);
    });
  });

  describe("training recipes", () => {
    test("sft_adapter saves an adapter with lineage", { timeout: 600_000 }, () => {
      // The recipe asserts itself that the loss halves; exit 0 means it did.
      const result = cli("run", recipe("sft_adapter.py"));
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^loss first=\d+\.\d+ last=\d+\.\d+$/m);
      expect(result.stdout).toContain("saved freedonia-adapter\n");
      expect(result.stdout).toMatch(/^answer: \S/m);

      const shown = cli("models", "show", "freedonia-adapter", "--json");
      expect(shown.code, shown.stderr).toBe(0);
      const record = JSON.parse(shown.stdout) as {
        kind: string;
        base_key: string;
        lineage: { parent_key: string; run_id: string | null; recipe_hash: string | null; optim_step: number };
      };
      expect(record.kind).toBe("adapter");
      expect(record.base_key).toBe("llama-3.1-8b-instruct");
      expect(record.lineage.parent_key).toBe("llama-3.1-8b-instruct");
      expect(record.lineage.optim_step).toBe(30);
      expect(record.lineage.run_id).toBeTruthy();
      expect(record.lineage.recipe_hash).toMatch(/^[0-9a-f]{64}$/);

      const listed = cli("models", "list");
      expect(listed.stdout).toMatch(/freedonia-adapter\s+adapter\s+llama\s+.*from llama-3\.1-8b-instruct, run \S+, step 30/);
    });

    test("reward_model fits the value head", { timeout: 600_000 }, () => {
      // The recipe asserts that the squared error falls by three quarters.
      const result = cli("run", recipe("reward_model.py"));
      expect(result.code, result.stderr).toBe(0);
      const match = /squared error before=(\d+\.\d+) after=(\d+\.\d+)/.exec(result.stdout);
      expect(match, result.stdout).not.toBeNull();
      expect(Number(match![2])).toBeLessThan(Number(match![1]) * 0.25);
    });
  });
});

// Dry runs plan the real sizes: architecture-only entries under the seed recipes' keys and
// one virtual 80 GiB device. Nothing is loaded, so these need no model weights.
describe.skipIf(!runnable)("galley run --dry-run at real sizes", () => {
  const realHome = tempDir("cli-real-sizes");
  const real = (...args: string[]) => runCli(args, { GALLEY_HOME: realHome });

  beforeAll(() => {
    const added = real("models", "add-architecture", "Llama-3.1-8B-Instruct");
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain("llama-3.1-8b-instruct");
  }, 120_000);

  test("full training at 4096 tokens is refused with advice", { timeout: 300_000 }, () => {
    const result = real("run", "--dry-run", "--devices", "1x80GiB", recipe("seed_spawns.py"));
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("train spawn 'train_model' would be REFUSED");
    for (const component of ["weights", "gradients", "optimizer_state", "activations", "logits"]) {
      expect(result.stdout).toMatch(new RegExp(`^\\s+${component}\\s+\\d+\\.\\d\\d GiB`, "m"));
    }
    expect(result.stdout).toMatch(/against 80\.00 GiB free on virtual:0/);
    expect(result.stdout).toMatch(/adapter training \(\.with_adapter\(\)\) fits at max_batch_size=4096/);
    expect(result.stdout).toMatch(/inference spawn 'inf_model' of llama-3\.1-8b-instruct \(tp=1, kv_cache_len=100000\)/);
    expect(result.stderr.trim().split("\n").at(-1)).toMatch(/dry run: 1 of 2 spawns would be refused \('train_model'\)$/);
  });

  test("adapter training from the config form fits", { timeout: 300_000 }, () => {
    const result = real("run", "--dry-run", "--devices", "1x80GiB", recipe("seed_config.py"), "--config", recipe("seed_config.json"));
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/train spawn 'model_trained' of llama-3\.1-8b-instruct \(tp=1, max_batch_size=2048, LoRA adapter\)/);
    expect(result.stdout).toMatch(/^\s+total\s+\d+\.\d\d GiB$/m);
    expect(result.stdout).not.toContain("REFUSED");
  });
});
