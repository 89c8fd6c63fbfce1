"""Dry runs plan every spawn of a recipe against the memory the earlier spawns hold.

A dry run checks whether a whole recipe fits: the engine keeps each planned spawn's bytes for
the rest of the session, so a later plan is checked against the device minus the earlier
plans, unless the recipe deallocated them first. Sizes are the real Llama 3.1 8B
(architecture-only entry, bf16) on one virtual 80 GiB device: an inference spawn with
kv_cache_len=100000 plans about 28 GiB, so two fit and a third does not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_harness import EngineCallError, EngineClient, inference_model, start_engine
from test_runner import run_galley, write_recipe

from galley.planner import GIB, DeviceCapacity, Holding, SpawnRefused, admit, plan_spawn
from galley.planner.resources import find_architecture

ARCHITECTURES = Path(__file__).resolve().parents[2] / "resources/architectures"
MODEL = "llama-3.1-8b-instruct"


@pytest.fixture(scope="module")
def planning_engine(tmp_path_factory):
    extra = [
        "--devices",
        "1x80GiB",
        "--architecture",
        f"{MODEL}={ARCHITECTURES / 'Llama-3.1-8B-Instruct'}",
        # No spawn starts here, so skip the fork server and its torch import.
        "--worker-start",
        "subprocess",
        "--spare-workers",
        "0",
    ]
    with start_engine({}, tmp_path_factory.mktemp("engine-dry-run"), extra_args=extra) as engine:
        yield engine


def inference_plan(name: str) -> dict:
    return {"name": name, "kind": "inference", "model": inference_model(MODEL, kv_cache_len=100_000)}


# -- the planner ----------------------------------------------------------------------------


def test_held_bytes_subtracted_and_named():
    plan = plan_spawn(find_architecture(MODEL).facts(), "inference", kv_cache_len=100_000, spawn_name="third")
    device = DeviceCapacity(id="virtual:0", total_bytes=80 * GIB, free_bytes=80 * GIB)
    held = [Holding("first", "virtual:0", 30 * GIB), Holding("second", "virtual:0", 30 * GIB)]

    with pytest.raises(SpawnRefused) as raised:
        admit(plan, [device], held=held)
    message = raised.value.message
    assert "Spawn 'third' does not fit" in message
    assert "virtual:0 has 20.00 GiB free" in message
    assert "'first' 30.00 GiB" in message
    assert "'second' 30.00 GiB" in message
    assert "dealloc()" in message

    data = raised.value.data or {}
    assert data["held"] == [
        {"spawn": "first", "device": "virtual:0", "bytes": 30 * GIB},
        {"spawn": "second", "device": "virtual:0", "bytes": 30 * GIB},
    ]
    assert data["ranks"][0]["available_bytes"] == 20 * GIB

    placement = admit(plan, [device], held=held[:1])
    assert placement.ranks[0].available_bytes == 50 * GIB


def test_held_bytes_on_other_device_ignored():
    plan = plan_spawn(find_architecture(MODEL).facts(), "inference", kv_cache_len=100_000)
    devices = [
        DeviceCapacity(id="virtual:0", total_bytes=80 * GIB, free_bytes=80 * GIB),
        DeviceCapacity(id="virtual:1", total_bytes=80 * GIB, free_bytes=80 * GIB),
    ]
    placement = admit(plan, devices, held=[Holding("first", "virtual:0", 70 * GIB)])
    assert placement.devices == ["virtual:1"]


# -- the engine's plan method -------------------------------------------------------------


async def test_plans_accumulate_within_session(planning_engine):
    async with EngineClient.connect(planning_engine.url, planning_engine.token) as client:
        first = await client.call("plan", **inference_plan("first"))
        second = await client.call("plan", **inference_plan("second"))
        assert first["ranks"][0]["available_bytes"] == 80 * GIB
        assert second["ranks"][0]["available_bytes"] == 80 * GIB - first["plan"]["total"]
        assert second["held"] == [{"spawn": "first", "device": "virtual:0", "bytes": first["plan"]["total"]}]

        with pytest.raises(EngineCallError) as raised:
            await client.call("plan", **inference_plan("third"))
        assert raised.value.type == "spawn_refused"
        assert "Spawn 'third' does not fit" in raised.value.message
        assert "'first'" in raised.value.message
        assert "'second'" in raised.value.message


async def test_dealloc_returns_planned_bytes(planning_engine):
    async with EngineClient.connect(planning_engine.url, planning_engine.token) as client:
        await client.call("plan", **inference_plan("first"))
        await client.call("plan", **inference_plan("second"))
        released = await client.call("dealloc", spawn="first")
        assert released["released"] is True
        third = await client.call("plan", **inference_plan("third"))
        assert [holding["spawn"] for holding in third["held"]] == ["second"]


async def test_refused_plan_holds_nothing(planning_engine):
    async with EngineClient.connect(planning_engine.url, planning_engine.token) as client:
        # Full training of the 8B model plans about 140 GiB, so the engine refuses it.
        with pytest.raises(EngineCallError) as raised:
            await client.call(
                "plan", name="big", kind="train", max_batch_size=4096, model=inference_model(MODEL)
            )
        assert raised.value.type == "spawn_refused"
        after = await client.call("plan", **inference_plan("after"))
        assert after["held"] == []


async def test_sessions_do_not_share_plans(planning_engine):
    async with EngineClient.connect(planning_engine.url, planning_engine.token) as first_session:
        await first_session.call("plan", **inference_plan("first"))
        await first_session.call("plan", **inference_plan("second"))
        async with EngineClient.connect(planning_engine.url, planning_engine.token) as other_session:
            result = await other_session.call("plan", **inference_plan("third"))
    assert result["held"] == []
    assert result["ranks"][0]["available_bytes"] == 80 * GIB


async def test_plan_name_repeated_is_invalid(planning_engine):
    async with EngineClient.connect(planning_engine.url, planning_engine.token) as client:
        await client.call("plan", **inference_plan("first"))
        with pytest.raises(EngineCallError) as raised:
            await client.call("plan", **inference_plan("first"))
    assert raised.value.type == "invalid_request"
    assert "'first'" in raised.value.message


# -- galley.run --dry-run -----------------------------------------------------------------

THREE_SPAWNS = """
from galley.runtime import recipe_main


@recipe_main
async def main(ctx):
    builder = ctx.client.model("model_registry://llama-3.1-8b-instruct", kv_cache_len=100_000)
    first = await builder.spawn_inference("first")
    await builder.spawn_inference("second")
    {dealloc}
    await builder.spawn_inference("third")
"""


def test_dry_run_refuses_third_spawn(tmp_path, planning_engine):
    write_recipe(tmp_path, "three.py", THREE_SPAWNS.format(dealloc="pass"))
    env = {"GALLEY_ENGINE_URL": planning_engine.url, "GALLEY_ENGINE_TOKEN": planning_engine.token}
    result = run_galley("three.py", "--dry-run", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "inference spawn 'third' would be REFUSED" in result.stdout
    assert "'first'" in result.stdout.split("would be REFUSED", 1)[1]
    assert "dry run: 1 of 3 spawns would be refused ('third')" in result.stderr


def test_dry_run_dealloc_frees_plan(tmp_path, planning_engine):
    write_recipe(tmp_path, "three.py", THREE_SPAWNS.format(dealloc="await first.dealloc()"))
    env = {"GALLEY_ENGINE_URL": planning_engine.url, "GALLEY_ENGINE_TOKEN": planning_engine.token}
    result = run_galley("three.py", "--dry-run", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "REFUSED" not in result.stdout
