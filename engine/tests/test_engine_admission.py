"""Planning and admission through the engine, on virtual devices.

Dry-run planning uses architecture-only entries of the real models (no weights on disk) on
one virtual 80 GiB device. Admission of real spawns uses the tiny models on a virtual
device of 1 GiB. Each spawn there plans the 500 MiB CUDA context estimate besides its
tensors, so one tiny inference spawn (0.55 GiB) fits, but two do not, and neither does
training the tiny Llama with full weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_harness import EngineCallError, EngineClient, inference_model, pid_alive, start_engine, wait_until

ARCHITECTURES = Path(__file__).resolve().parents[2] / "resources/architectures"


@pytest.fixture(scope="module")
def planning_engine(tmp_path_factory, tiny_llama_dir):
    extra = [
        "--devices",
        "1x80GiB",
        "--architecture",
        f"llama-3.1-8b-instruct={ARCHITECTURES / 'Llama-3.1-8B-Instruct'}",
        "--architecture",
        f"qwen3-32b={ARCHITECTURES / 'Qwen3-32B'}",
        # No spawn starts here, so skip the fork server and its torch import.
        "--worker-start",
        "subprocess",
        "--spare-workers",
        "0",
    ]
    with start_engine({}, tmp_path_factory.mktemp("engine-planning"), extra_args=extra) as engine:
        yield engine


@pytest.fixture(scope="module")
def small_device_engine(tmp_path_factory, tiny_llama_dir):
    extra = ["--devices", "1x1GiB"]
    with start_engine(
        {"tiny": tiny_llama_dir}, tmp_path_factory.mktemp("engine-admission"), keep_warm=60, extra_args=extra
    ) as engine:
        yield engine


def plan_params(key: str, kind: str, **model) -> dict:
    params = {"name": "planned", "kind": kind, "model": inference_model(key, **model)}
    if kind == "train":
        params["max_batch_size"] = model.pop("max_batch_size", 4096)
        params["model"] = inference_model(key, **model)
    return params


# -- dry-run plans ------------------------------------------------------------------------


async def test_plan_of_adapter_training_fits_80gib(planning_engine):
    async with EngineClient.connect(planning_engine.url, planning_engine.token) as client:
        result = await client.call(
            "plan", **plan_params("llama-3.1-8b-instruct", "train", use_adapter=True, tp=1)
        )
    assert result["devices"] == ["virtual:0"]
    assert result["adapter"] is True
    components = result["plan"]["components"]
    assert components["weights"] == 8_030_261_248 * 2  # bf16 on virtual devices
    assert {"adapter", "gradients", "optimizer_state", "activations", "logits"} <= set(components)
    assert result["plan"]["total"] < 80 * 2**30


async def test_plan_of_full_training_is_refused_with_components(planning_engine):
    async with EngineClient.connect(planning_engine.url, planning_engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call("plan", **plan_params("llama-3.1-8b-instruct", "train"))
    assert error.value.type == "spawn_refused"
    for component in ("weights", "gradients", "optimizer_state", "activations"):
        assert component in error.value.message
    assert "GiB" in error.value.message
    assert error.value.data is not None


async def test_plan_of_inference_names_largest_fitting_kv_cache(planning_engine):
    async with EngineClient.connect(planning_engine.url, planning_engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call("plan", **plan_params("qwen3-32b", "inference", kv_cache_len=100_000))
    assert error.value.type == "spawn_refused"
    assert "kv_cache_len" in error.value.message


async def test_plan_with_more_ranks_than_devices_is_refused(planning_engine):
    async with EngineClient.connect(planning_engine.url, planning_engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call("plan", **plan_params("qwen3-32b", "inference", kv_cache_len=1000, tp=2))
    assert error.value.type == "spawn_refused"
    assert "tp=2" in error.value.message


async def test_plan_applies_engine_defaults(planning_engine):
    async with EngineClient.connect(planning_engine.url, planning_engine.token) as client:
        result = await client.call(
            "plan", **plan_params("llama-3.1-8b-instruct", "inference", kv_cache_len=8192)
        )
    assert result["tokens_to_generate"] == 2048
    assert result["tp"] == 1
    assert result["kv_cache_len"] == 8192


# -- admission of real spawns -------------------------------------------------------------


async def test_oversized_spawn_refused_before_start(small_device_engine):
    async with EngineClient.connect(small_device_engine.url, small_device_engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call(
                "spawn",
                name="big",
                kind="train",
                max_batch_size=256,
                model=inference_model("tiny", kv_cache_len=256),
            )
        assert error.value.type == "spawn_refused"
        assert "optimizer_state" in error.value.message
        assert (await client.call("list_spawns"))["spawns"] == []
    assert "assigned worker to spawn 'big'" not in small_device_engine.log_text()


async def test_kept_spawn_released_for_room(small_device_engine):
    async with EngineClient.connect(small_device_engine.url, small_device_engine.token) as first:
        await first.call(
            "spawn", name="old", kind="inference", model=inference_model("tiny", kv_cache_len=256)
        )
        (old,) = (await first.call("list_spawns"))["spawns"]
        old_pid = old["ranks"][0]["pid"]

    async with EngineClient.connect(small_device_engine.url, small_device_engine.token) as second:
        # A different configuration cannot reuse "old", and both do not fit on 1 GiB at once.
        result = await second.call(
            "spawn", name="new", kind="inference", model=inference_model("tiny", kv_cache_len=512)
        )
        assert result["reused"] is False
        assert await wait_until(lambda: not pid_alive(old_pid), seconds=15)
        (spawn,) = (await second.call("list_spawns"))["spawns"]
        assert spawn["name"] == "new"
    assert "to make room for a new spawn" in small_device_engine.log_text()
