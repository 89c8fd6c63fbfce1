"""Dry runs plan every spawn of a recipe against the memory the earlier spawns reserve.

A dry run checks whether a whole recipe fits. The engine keeps each planned spawn's bytes for
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

from galley.planner import GIB, DeviceCapacity, Holding, SpawnRefused, admit, format_gib, plan_spawn
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


def virtual_device(total_gib: int) -> DeviceCapacity:
    return DeviceCapacity(id="virtual:0", total_bytes=total_gib * GIB, free_bytes=total_gib * GIB)


def test_alternatives_advised_after_dealloc():
    # Full training of the 8B model needs about 167 GiB, so it fits nowhere here, but adapter
    # training (about 64 GiB) and inference fit once 'first' gives its 79.96 GiB back.
    plan = plan_spawn(find_architecture(MODEL).facts(), "train", max_batch_size=4096, spawn_name="second")
    device = virtual_device(80)
    held = [Holding("first", "virtual:0", int(79.96 * GIB))]

    with pytest.raises(SpawnRefused) as raised:
        admit(plan, [device], held=held)
    message = raised.value.message
    adapter_plan = plan.replan(adapter=True)
    assert (
        f"adapter training (.with_adapter()) fits at max_batch_size=4096: {format_gib(adapter_plan.total)} "
        "per rank, after dealloc() of 'first' (79.96 GiB)"
    ) in message
    assert "an inference spawn fits with kv_cache_len=131072, after dealloc() of 'first'" in message
    assert "does not fit either" not in message

    advice = (raised.value.data or {})["advice"]
    assert advice["adapter"]["fits"] is True
    assert advice["needs_dealloc"]["adapter"]["spawns"] == ["first"]
    assert advice["needs_dealloc"]["inference"]["spawns"] == ["first"]
    assert advice["dealloc"]["fits"] is False

    # The advice holds: adapter training is refused beside 'first' and admitted without it.
    with pytest.raises(SpawnRefused):
        admit(adapter_plan, [device], held=held)
    assert admit(adapter_plan, [device]).devices == ["virtual:0"]


def test_alternative_fitting_beside_held_needs_no_dealloc():
    plan = plan_spawn(find_architecture(MODEL).facts(), "train", max_batch_size=4096, spawn_name="second")
    with pytest.raises(SpawnRefused) as raised:
        admit(plan, [virtual_device(80)], held=[Holding("first", "virtual:0", 10 * GIB)])
    message = raised.value.message
    assert "adapter training (.with_adapter()) fits at max_batch_size=4096" in message
    assert "after dealloc()" not in message
    assert (raised.value.data or {})["advice"]["needs_dealloc"] == {}


def test_kv_cache_len_advised_after_fewest_deallocs():
    # 24 GiB does not hold kv_cache_len=131072 even when empty. Beside 'big' and 'small' no
    # kv_cache_len fits, but freeing the larger one alone makes room for a shorter cache.
    plan = plan_spawn(find_architecture(MODEL).facts(), "inference", kv_cache_len=131072, spawn_name="chat")
    device = virtual_device(24)
    held = [Holding("small", "virtual:0", 1 * GIB), Holding("big", "virtual:0", 20 * GIB)]

    with pytest.raises(SpawnRefused) as raised:
        admit(plan, [device], held=held)
    advice = (raised.value.data or {})["advice"]
    largest = advice["max_kv_cache_len"]
    assert largest is not None
    assert largest < 131072
    assert advice["needs_dealloc"]["max_kv_cache_len"] == {"spawns": ["big"], "bytes": 20 * GIB}
    assert (
        f"kv_cache_len={largest} (largest that fits; requested 131072), after dealloc() of 'big' (20.00 GiB)"
    ) in raised.value.message

    admit(plan.replan(kv_cache_len=largest), [device], held=held[:1])
    with pytest.raises(SpawnRefused):
        admit(plan.replan(kv_cache_len=largest + 1), [device], held=held[:1])


def test_kv_cache_advice_after_dealloc():
    # 'ref' (Qwen3 32B, kv_cache_len=32768) takes about 69.5 GiB of 80, and 'judge' needs
    # about 31.5 GiB. After dealloc() of 'ref' the requested 131072 fits, so the advice is
    # that dealloc() and not a cache one token shorter.
    device = virtual_device(80)
    ref = plan_spawn(
        find_architecture("qwen3-32b").facts(), "inference", kv_cache_len=32768, spawn_name="ref"
    )
    held = [Holding("ref", "virtual:0", admit(ref, [device]).ranks[0].planned_bytes)]
    judge = plan_spawn(find_architecture(MODEL).facts(), "inference", kv_cache_len=131072, spawn_name="judge")

    with pytest.raises(SpawnRefused) as raised:
        admit(judge, [device], held=held)
    message = raised.value.message
    assert "kv_cache_len=131071" not in message
    assert "(largest that fits; requested 131072), after dealloc()" not in message
    assert "no kv_cache_len fits: weights and overhead alone take" in message
    assert "dealloc() 'ref' (69.51 GiB) before this spawn; then it fits" in message

    advice = (raised.value.data or {})["advice"]
    assert advice["max_kv_cache_len"] is None
    assert "max_kv_cache_len" not in advice["needs_dealloc"]
    assert advice["dealloc"] == {"fits": True, "spawns": ["ref"], "bytes": held[0].bytes}


def test_batch_size_advice_after_dealloc():
    # Full training of Qwen2.5 0.5B at max_batch_size=4096 plans about 20.9 GiB, of which
    # about 8.8 GiB do not shrink with the batch. Beside 'first' only 6 GiB are free, so no
    # batch size fits there, and after dealloc() of 'first' the requested one does.
    device = virtual_device(24)
    facts = find_architecture("qwen2.5-0.5b-instruct").facts()
    plan = plan_spawn(facts, "train", max_batch_size=4096, spawn_name="second")
    held = [Holding("first", "virtual:0", 18 * GIB)]

    with pytest.raises(SpawnRefused) as raised:
        admit(plan, [device], held=held)
    message = raised.value.message
    assert "max_batch_size=4095" not in message
    assert "no max_batch_size fits: weights, gradients, optimizer state and overhead alone take" in message
    assert "dealloc() 'first' (18.00 GiB) before this spawn; then it fits" in message

    advice = (raised.value.data or {})["advice"]
    assert advice["max_batch_size"] is None
    assert "max_batch_size" not in advice["needs_dealloc"]
    assert advice["dealloc"]["fits"] is True


def test_pinned_device_advised_after_dealloc():
    plan = plan_spawn(find_architecture(MODEL).facts(), "inference", kv_cache_len=8192, spawn_name="chat")
    devices = [
        DeviceCapacity(id="virtual:0", total_bytes=80 * GIB, free_bytes=4 * GIB),
        DeviceCapacity(id="virtual:1", total_bytes=80 * GIB, free_bytes=80 * GIB),
    ]
    held = [Holding("first", "virtual:1", 78 * GIB)]
    with pytest.raises(SpawnRefused) as raised:
        admit(plan, devices, pinned=["virtual:0"], held=held)
    assert (
        "another device: virtual:1 has 80.00 GiB free; pin it instead of virtual:0, "
        "after dealloc() of 'first' (78.00 GiB)"
    ) in raised.value.message


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
