"""The telemetry stream while the seed recipe ``seed_spawns.py`` runs against a real engine.

A second connection subscribes to telemetry, as the control plane does, and records every
snapshot while the runner spawns a training and an inference model. Both spawns must show
up with their kind and measured memory, and be gone once the run's session has ended.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from engine_harness import EngineClient, start_engine
from test_runner import ENGINE_DIR, RECIPES

pytestmark = pytest.mark.slow

MODEL = "llama-3.1-8b-instruct"
KEEP_WARM_S = 1.0


async def run_recipe(recipe: Path, engine) -> tuple[int, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GALLEY_")}
    environment |= {
        "PYTHONPATH": str(ENGINE_DIR),
        "HF_HUB_OFFLINE": "1",
        "GALLEY_ENGINE_URL": engine.url,
        "GALLEY_ENGINE_TOKEN": engine.token,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "galley.run",
        str(recipe),
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_seed_spawns_appear_in_telemetry_then_leave(tmp_path: Path, tiny_llama_dir: Path):
    with start_engine(
        {MODEL: tiny_llama_dir}, tmp_path / "engine", keep_warm=KEEP_WARM_S, telemetry_interval=0.1
    ) as engine:
        async with EngineClient.connect(engine.url, engine.token) as watcher:
            await watcher.call("subscribe", topics=["telemetry"])
            seen: dict[str, dict] = {}
            present: list[str] = []
            names = ("train_model", "inf_model")
            recipe_done = False
            settled = asyncio.Event()  # both spawns were seen, and the run has left none behind

            async def record() -> None:
                # Kept running after the recipe ends: the inference spawn stays for keep-warm.
                while True:
                    event = await watcher.events.get()
                    present[:] = [s["name"] for s in event["data"]["spawns"] if s["name"] in names]
                    for spawn in event["data"]["spawns"]:
                        ranks = spawn["ranks"]
                        if ranks and ranks[0].get("process_bytes"):
                            seen.setdefault(spawn["name"], spawn)
                    if recipe_done and not present and len(seen) == len(names):
                        settled.set()

            recorder = asyncio.create_task(record())
            code, output = await run_recipe(RECIPES / "seed_spawns.py", engine)
            assert code == 0, output
            recipe_done = True

            # Training is released when the session closes, inference after keep-warm.
            try:
                await asyncio.wait_for(settled.wait(), timeout=KEEP_WARM_S + 30)
            except TimeoutError:
                pass  # the asserts below report what is missing
            remaining = list(present)
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)

            # Both spawns were visible while they lived, each with measured memory.
            assert set(seen) >= set(names), f"spawns seen in telemetry: {sorted(seen)}"
            assert seen["train_model"]["kind"] == "train"
            assert seen["inf_model"]["kind"] == "inference"
            for name in names:
                (rank,) = seen[name]["ranks"]
                assert rank["process_bytes"] > 50 * 2**20, f"{name}: {rank}"
                assert rank["plan"]["weights"] > 0, f"{name}: {rank}"
            assert remaining == [], f"still in telemetry after the session ended: {remaining}"
