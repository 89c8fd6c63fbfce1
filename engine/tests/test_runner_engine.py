"""``python -m galley.run`` end to end against a real engine (the session's ``tiny_engine``).

The seed recipes run unchanged: the engine serves tiny generated models under their keys
(``llama-3.1-8b-instruct``, ``qwen3-32b``). Run events are read from a real pipe passed as
``GALLEY_EVENTS_FD``, as the control plane's run manager passes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_admission_dry_run import planning_engine
from test_runner import ENGINE_DIR, last_line, recipes, registry_env, registry_url, run_galley, write_recipe

pytestmark = pytest.mark.slow

__all__ = ["planning_engine", "recipes", "registry_url"]  # fixtures imported from other test modules


def engine_env(engine) -> dict[str, str]:
    return {"GALLEY_ENGINE_URL": engine.url, "GALLEY_ENGINE_TOKEN": engine.token}


def run_with_events(
    *args: str, cwd: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """Run the runner with GALLEY_EVENTS_FD on a pipe; return the result and the events written.

    The runner sends the recipe's output on the same pipe as output records. They are left out
    of the returned events and added to the result's stdout and stderr, after anything that
    arrived on the real stdout and stderr pipes.
    """
    result, records = run_with_records(*args, cwd=cwd, env=env)
    events = [record for record in records if record["type"] != "output"]
    for record in records:
        if record["type"] == "output" and record["stream"] == "stdout":
            result.stdout += record["text"]
        elif record["type"] == "output":
            result.stderr += record["text"]
    return result, events


def run_with_records(
    *args: str, cwd: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """Run the runner with GALLEY_EVENTS_FD on a pipe; return the result and every record on the pipe."""
    read_fd, write_fd = os.pipe()
    # Without PYTHONUNBUFFERED, Python block-buffers stdout on a pipe; the runner must keep
    # the order regardless.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GALLEY_")}
    environment.pop("PYTHONUNBUFFERED", None)
    environment |= {
        "PYTHONPATH": str(ENGINE_DIR),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "GALLEY_EVENTS_FD": str(write_fd),
    }
    environment.update(env)
    process = subprocess.Popen(
        [sys.executable, "-m", "galley.run", *args],
        cwd=cwd,
        env=environment,
        pass_fds=(write_fd,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, encoding="utf-8") as reader:
        records = [json.loads(line) for line in reader]
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), records


def test_seed_builders_runs(recipes, tiny_engine):
    result = run_galley("seed_builders.py", cwd=recipes, env=engine_env(tiny_engine))
    assert result.returncode == 0, result.stderr


def test_seed_builders_runs_as_script(recipes, tiny_engine):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GALLEY_")}
    environment |= {"PYTHONPATH": str(ENGINE_DIR)} | engine_env(tiny_engine)
    result = subprocess.run(
        [sys.executable, "seed_builders.py"],
        cwd=recipes,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_seed_spawns_reports_both_spawns(recipes, tiny_engine):
    result, events = run_with_events("seed_spawns.py", cwd=recipes, env=engine_env(tiny_engine))
    assert result.returncode == 0, result.stderr
    assert events == [
        {"type": "spawn", "name": "train_model", "kind": "train", "model_key": "llama-3.1-8b-instruct"},
        {"type": "spawn", "name": "inf_model", "kind": "inference", "model_key": "llama-3.1-8b-instruct"},
    ]


def test_seed_config_runs_with_registry_check(recipes, tiny_engine, registry_url):
    env = registry_env(registry_url) | engine_env(tiny_engine)
    result, events = run_with_events("seed_config.py", "--config", "seed_config.json", cwd=recipes, env=env)
    assert result.returncode == 0, result.stderr
    assert events == [
        {"type": "spawn", "name": "model_trained", "kind": "train", "model_key": "llama-3.1-8b-instruct"}
    ]


def test_recipe_runs_without_torch_and_reports_events(tmp_path, tiny_engine):
    write_recipe(
        tmp_path,
        "events.py",
        """
        import sys
        from adaptive_harmony import StringThread
        from adaptive_harmony.runtime import InputConfig, RecipeContext, recipe_main


        class Config(InputConfig):
            steps: int = 2


        @recipe_main
        async def main(config: Config, ctx: RecipeContext):
            model = await ctx.client.model(
                "model_registry://llama-3.1-8b-instruct", kv_cache_len=1024, tokens_to_generate=4
            ).spawn_inference("reader")
            ctx.job.register_stages(["score"])
            for step in range(config.steps):
                logprob = await model.logprobs(StringThread([("user", "Hi"), ("assistant", "Hello")]))
                ctx.log_metric("logprob", logprob, step=step)
                ctx.job.report_progress("score", config.steps, step + 1)
            (ctx.run_dir / "done.txt").write_text("ok")
            print("run id:", ctx.run_id)
            print("torch loaded:", "torch" in sys.modules, "transformers loaded:", "transformers" in sys.modules)
        """,
    )
    run_dir = tmp_path / "run-files"
    env = engine_env(tiny_engine) | {"GALLEY_RUN_ID": "run-42", "GALLEY_RUN_DIR": str(run_dir)}
    result, events = run_with_events("events.py", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "torch loaded: False transformers loaded: False" in result.stdout
    assert "run id: run-42" in result.stdout
    assert (run_dir / "done.txt").read_text() == "ok"
    kinds = [event["type"] for event in events]
    assert kinds == ["spawn", "stages", "metric", "progress", "metric", "progress"]
    metrics = [event for event in events if event["type"] == "metric"]
    assert [metric["step"] for metric in metrics] == [0, 1]
    assert metrics[0]["value"] == pytest.approx(metrics[1]["value"])
    assert events[-1] == {"type": "progress", "stage": "score", "total": 2, "done": 2}


def test_recipe_that_raises_exits_1_with_line(tmp_path, tiny_engine):
    write_recipe(
        tmp_path,
        "refused.py",
        """
        from galley.runtime import RecipeContext, recipe_main


        @recipe_main
        async def main(ctx: RecipeContext):
            builder = ctx.client.model("model_registry://qwen3-32b").tp(3)
            await builder.spawn_inference("too-split")
        """,
    )
    result = run_galley("refused.py", cwd=tmp_path, env=engine_env(tiny_engine))
    assert result.returncode == 1
    assert 'File "' in result.stderr
    assert "galley/run/main.py" not in result.stderr
    assert last_line(result.stderr).startswith("error: refused.py:7: SpawnRefused: tp=3 does not divide")


def test_unknown_model_in_recipe_lists_known_keys(tmp_path, tiny_engine):
    write_recipe(
        tmp_path,
        "unknown.py",
        """
        from galley.runtime import recipe_main


        @recipe_main
        async def main(ctx):
            await ctx.client.model("model_registry://llama-9000").spawn_inference("x")
        """,
    )
    result = run_galley("unknown.py", cwd=tmp_path, env=engine_env(tiny_engine))
    assert result.returncode == 1
    line = last_line(result.stderr)
    assert line.startswith("error: unknown.py:6: ModelNotFound: ")
    assert "llama-3.1-8b-instruct" in line
    assert "qwen3-32b" in line


def test_dry_run_plans_spawns(recipes, tiny_engine):
    result, events = run_with_events("seed_spawns.py", "--dry-run", cwd=recipes, env=engine_env(tiny_engine))
    assert result.returncode == 0, result.stderr
    assert events == []  # nothing was spawned
    assert (
        "dry run: train spawn 'train_model' of llama-3.1-8b-instruct (tp=1, max_batch_size=4096"
        in result.stdout
    )
    assert (
        "dry run: inference spawn 'inf_model' of llama-3.1-8b-instruct (tp=1, kv_cache_len=100000)"
        in result.stdout
    )
    assert "optimizer_state" in result.stdout
    assert "kv_cache" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "dry run: the recipe finished without a compute call"


def test_dry_run_stops_at_first_compute_call(tmp_path, tiny_engine):
    write_recipe(
        tmp_path,
        "computes.py",
        """
        from galley import StringThread
        from galley.runtime import recipe_main


        @recipe_main
        async def main(ctx):
            model = await ctx.client.model("model_registry://qwen3-32b").spawn_inference("chat")
            try:
                await model.generate(StringThread([("user", "Hi")]))
            except Exception:
                print("a recipe's except Exception must not catch the dry-run stop")
            print("not reached")
        """,
    )
    result = run_galley("computes.py", "--dry-run", cwd=tmp_path, env=engine_env(tiny_engine))
    assert result.returncode == 0, result.stderr
    assert "dry run: inference spawn 'chat' of qwen3-32b" in result.stdout
    assert "dry run: stopped before the first compute call (generate on spawn 'chat')" in result.stdout
    assert "not reached" not in result.stdout
    assert "must not catch" not in result.stdout


# The planning engine has one 80 GiB device, and each of these spawns plans about 28 GiB, so
# the third one is refused.
REFUSED_THIRD_SPAWN = """
from galley.runtime import recipe_main

MODEL = "model_registry://llama-3.1-8b-instruct"


async def spawn_chat(ctx, name):
    return await ctx.client.model(MODEL, kv_cache_len=100_000).spawn_inference(name)


@recipe_main
async def main(ctx):
    builder = ctx.client.model(MODEL, kv_cache_len=100_000)
    await builder.spawn_inference("first")
    await builder.spawn_inference("second")
    {third}
"""


def test_dry_run_refusal_points_at_spawn(tmp_path, planning_engine):
    third = 'await builder.spawn_inference("third")'
    write_recipe(tmp_path, "plan.py", REFUSED_THIRD_SPAWN.format(third=third))
    result = run_galley("plan.py", "--dry-run", cwd=tmp_path, env=engine_env(planning_engine))
    assert result.returncode == 1, result.stdout + result.stderr
    assert last_line(result.stderr) == "error: plan.py:15: dry run: 1 of 3 spawns would be refused ('third')"


def test_dry_run_refusal_in_helper_points_at_call(tmp_path, planning_engine):
    # The innermost recipe frame is the helper's spawn call.
    write_recipe(tmp_path, "plan.py", REFUSED_THIRD_SPAWN.format(third='await spawn_chat(ctx, "third")'))
    result = run_galley("plan.py", "--dry-run", cwd=tmp_path, env=engine_env(planning_engine))
    assert result.returncode == 1, result.stdout + result.stderr
    assert last_line(result.stderr) == "error: plan.py:7: dry run: 1 of 3 spawns would be refused ('third')"


def test_sigterm_cancels_the_recipe(tmp_path, tiny_engine):
    write_recipe(
        tmp_path,
        "waits.py",
        """
        import asyncio
        from galley.runtime import recipe_main


        @recipe_main
        async def main(ctx):
            try:
                print("waiting", flush=True)
                await asyncio.sleep(120)
            finally:
                print("cleaned up", flush=True)
        """,
    )
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GALLEY_")}
    environment |= {"PYTHONPATH": str(ENGINE_DIR)} | engine_env(tiny_engine)
    process = subprocess.Popen(
        [sys.executable, "-m", "galley.run", "waits.py"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "waiting"
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    assert "cleaned up" in stdout
    assert last_line(stderr) == "error: waits.py:5: cancelled by SIGTERM"


# -- output order -------------------------------------------------------------------------

INTERLEAVED_RECIPE = """
import logging
import sys
from galley.runtime import recipe_main


@recipe_main
async def main(ctx):
    print("first on stdout")
    print("partial", end="")
    sys.stderr.write("then stderr\\n")
    ctx.job.register_stages(["only"])
    logging.getLogger("galley.recipe").warning("then a log record")
    print("then stdout again")
    raise ValueError("and then it raised")
"""


def test_output_records_keep_write_order(tmp_path, tiny_engine):
    write_recipe(tmp_path, "interleaved.py", INTERLEAVED_RECIPE)
    result, records = run_with_records("interleaved.py", cwd=tmp_path, env=engine_env(tiny_engine))
    assert result.returncode == 1
    # Everything the recipe wrote through sys.stdout and sys.stderr went on the events pipe.
    assert result.stdout == ""
    assert result.stderr == ""

    blocks = output_blocks(records)
    assert blocks[:5] == [
        ("stdout", "first on stdout\npartial"),
        ("stderr", "then stderr\n"),
        ("stages", ""),
        ("stderr", "WARNING galley.recipe: then a log record\n"),
        ("stdout", "then stdout again\n"),
    ]
    stream, traceback = blocks[5]
    assert stream == "stderr"
    assert traceback.startswith("Traceback (most recent call last):")
    assert "ValueError: and then it raised\n" in traceback
    assert traceback.endswith("error: interleaved.py:14: ValueError: and then it raised\n")
    assert len(blocks) == 6


def output_blocks(records: list[dict]) -> list[tuple[str, str]]:
    """Join adjacent output records of one stream; an event becomes ``(type, "")``.

    The runner's own INFO lines about the engine session are left out.
    """
    blocks: list[tuple[str, str]] = []
    for record in records:
        if record["type"] != "output":
            blocks.append((record["type"], ""))
            continue
        text = "".join(
            line
            for line in record["text"].splitlines(keepends=True)
            if not line.startswith("INFO galley.run: run ")
        )
        if not text:
            continue
        if blocks and blocks[-1][0] == record["stream"]:
            blocks[-1] = (record["stream"], blocks[-1][1] + text)
        else:
            blocks.append((record["stream"], text))
    return blocks


def test_terminal_output_keeps_write_order(tmp_path, tiny_engine):
    write_recipe(tmp_path, "interleaved.py", INTERLEAVED_RECIPE)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GALLEY_")}
    environment.pop("PYTHONUNBUFFERED", None)  # so stdout is block-buffered, as on any pipe
    environment |= {"PYTHONPATH": str(ENGINE_DIR), "OMP_NUM_THREADS": "1"} | engine_env(tiny_engine)
    # Both streams go into one pipe, whose order is the order in which the runner wrote them.
    result = subprocess.run(
        [sys.executable, "-m", "galley.run", "interleaved.py"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if not line.startswith("INFO galley.run: run ")]
    assert lines[:5] == [
        "first on stdout",
        "partialthen stderr",
        "[galley] stages: only",
        "WARNING galley.recipe: then a log record",
        "then stdout again",
    ]
    assert lines[5] == "Traceback (most recent call last):"
    assert lines[-1] == "error: interleaved.py:14: ValueError: and then it raised"


# -- saving -------------------------------------------------------------------------------


def test_save_reports_the_key_it_stored(tmp_path, tiny_engine):
    write_recipe(
        tmp_path,
        "saves.py",
        """
        from galley.runtime import recipe_main


        @recipe_main
        async def main(ctx):
            builder = ctx.client.model("model_registry://llama-3.1-8b-instruct", kv_cache_len=256)
            model = await builder.with_adapter().spawn_train("trainee", 256)
            print("first key:", await model.save("Runner Test/v1"))
            print("second key:", await model.save("Runner Test/v1"))
        """,
    )
    result, events = run_with_events("saves.py", cwd=tmp_path, env=engine_env(tiny_engine))
    assert result.returncode == 0, result.stderr
    assert "first key: runner-test-v1\n" in result.stdout
    assert "second key: runner-test-v1-2\n" in result.stdout
    assert (
        "WARNING galley.sdk: save: model 'Runner Test/v1' was saved under the registry key 'runner-test-v1', "
        'because registry keys contain only lowercase letters, digits, ".", "_" and "-"; '
        "its display name stays 'Runner Test/v1'. Load it with model_registry://runner-test-v1\n"
    ) in result.stderr
    assert (
        "under the registry key 'runner-test-v1-2', because registry keys contain only lowercase letters, "
        'digits, ".", "_" and "-" and the key \'runner-test-v1\' was already taken'
    ) in result.stderr
    artifacts = [event for event in events if event["type"] == "artifact"]
    assert [artifact["uri"] for artifact in artifacts] == [
        "model_registry://runner-test-v1",
        "model_registry://runner-test-v1-2",
    ]
