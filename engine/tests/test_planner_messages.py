"""Refusal and advice messages: each names the spawn, every component in GiB, the device's
free memory and a concrete change that fits."""

from __future__ import annotations

import re

import pytest

from galley.planner import GIB, DeviceCapacity, SpawnRefused, admit, format_gib, plan_spawn
from galley.planner.resources import find_architecture


def gpus(*free_gib: float, total_gib: float = 80):
    return [
        DeviceCapacity(
            id=f"cuda:{index}", total_bytes=int(total_gib * GIB), free_bytes=int(free * GIB), kind="cuda"
        )
        for index, free in enumerate(free_gib)
    ]


def refusal(plan, devices, **options) -> SpawnRefused:
    with pytest.raises(SpawnRefused) as raised:
        admit(plan, devices, **options)
    return raised.value


def test_full_training_refusal_message():
    facts = find_architecture("llama-3.1-8b-instruct").facts()
    plan = plan_spawn(facts, "train", max_batch_size=4096, spawn_name="policy")
    message = refusal(plan, gpus(80)).message

    assert message.startswith("Spawn 'policy' does not fit: Llama-3.1-8B-Instruct full training")
    assert "Rank 0 needs " + format_gib(plan.total) + " but cuda:0 has 80.00 GiB free." in message
    for name, size in plan.components.items():
        calibration = plan.notes[name].calibration
        assert re.search(rf"^  {name}\s+{re.escape(format_gib(size))}  \({calibration}\)$", message, re.M), (
            name
        )
    assert "adapter training (.with_adapter()) fits at max_batch_size=4096" in message
    assert f"a device with at least {format_gib(plan.total)} free" in message
    assert "the most free here is 80.00 GiB on cuda:0" in message


def test_no_kv_cache_len_names_weights():
    facts = find_architecture("qwen3-32b").facts()
    plan = plan_spawn(facts, "inference", kv_cache_len=32768, spawn_name="chat")
    message = refusal(plan, gpus(24)).message
    fixed = plan.components["weights"] + plan.components["overhead"]
    assert "Spawn 'chat' does not fit" in message
    assert (
        f"no kv_cache_len fits: weights and overhead alone take {format_gib(fixed)} "
        "of the 24.00 GiB free on cuda:0"
    ) in message


def test_smaller_kv_cache_len_named_with_value():
    facts = find_architecture("llama-3.1-8b-instruct").facts()
    plan = plan_spawn(facts, "inference", kv_cache_len=131072, spawn_name="chat")
    error = refusal(plan, gpus(24))
    largest = (error.data or {})["advice"]["max_kv_cache_len"]
    assert f"kv_cache_len={largest} (largest that fits; requested 131072)" in error.message


def test_tp_that_fits_named():
    facts = find_architecture("qwen3-32b").facts()
    plan = plan_spawn(facts, "inference", kv_cache_len=32768, spawn_name="chat")
    message = refusal(plan, gpus(40, 40, 40, 40, total_gib=40)).message
    assert re.search(r"tp=2 fits on the devices with the most free memory: \d+\.\d\d GiB per rank", message)


def test_pinned_refusal_names_roomier_device():
    facts = find_architecture("qwen3-8b").facts()
    plan = plan_spawn(facts, "inference", kv_cache_len=8192, spawn_name="chat")
    error = refusal(plan, gpus(80, 4), pinned=["cuda:1"])
    assert "cuda:1 has 4.00 GiB free" in error.message
    assert "another device: cuda:0 has 80.00 GiB free; pin it instead of cuda:1" in error.message
    assert (error.data or {})["advice"]["device"]["fitting_devices"] == ["cuda:0"]


def test_tp_exceeding_devices_names_spawn():
    facts = find_architecture("qwen3-32b").facts()
    plan = plan_spawn(facts, "inference", 4, kv_cache_len=1024, spawn_name="chat")
    message = refusal(plan, gpus(80, 80)).message
    assert message.startswith(
        "tp=4 needs 4 devices but 2 are available (cuda:0, cuda:1) for spawn 'chat'; use tp=1 or 2"
    )


def test_tp_not_dividing_heads_names_spawn():
    facts = find_architecture("qwen3-32b").facts()
    with pytest.raises(SpawnRefused) as raised:
        plan_spawn(facts, "inference", 3, kv_cache_len=1024, spawn_name="chat")
    assert raised.value.message.startswith(
        "tp=3 does not divide Qwen3-32B's 64 attention heads (spawn 'chat'); use 1, 2, 4"
    )
