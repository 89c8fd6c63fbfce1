"""Per-worker runtime overhead: every plan counts the memory a worker process takes before
any tensor, so planned and measured memory agree on the CPU, and virtual devices that stand
in for GPUs plan the CUDA context."""

from __future__ import annotations

import pytest
from engine_harness import EngineClient, inference_model

from galley.planner import MIB, plan_spawn
from galley.planner.plan import CPU_WORKER_RUNTIME_BYTES, CUDA_CONTEXT_BYTES, NCCL_BYTES
from galley.planner.resources import find_architecture


def test_cpu_plans_worker_runtime():
    facts = find_architecture("qwen2.5-0.5b-instruct").facts()
    plan = plan_spawn(facts, "inference", kv_cache_len=256, device_kind="cpu")
    assert plan.components["overhead"] == CPU_WORKER_RUNTIME_BYTES
    assert 256 * MIB <= CPU_WORKER_RUNTIME_BYTES <= 1024 * MIB
    note = plan.notes["overhead"]
    assert note.calibration == "estimate"
    assert "RSS" in note.source


@pytest.mark.parametrize("tp", [1, 2])
def test_virtual_devices_plan_cuda_overhead(tp):
    facts = find_architecture("qwen3-8b").facts()
    virtual = plan_spawn(facts, "inference", tp, kv_cache_len=10, device_kind="virtual")
    cuda = plan_spawn(facts, "inference", tp, kv_cache_len=10, device_kind="cuda")
    expected = CUDA_CONTEXT_BYTES + (NCCL_BYTES if tp > 1 else 0)
    assert virtual.components["overhead"] == expected
    assert cuda.components["overhead"] == expected
    assert virtual.notes["overhead"].calibration == "estimate"
    assert "CUDA context" in virtual.notes["overhead"].formula


async def test_cpu_plan_matches_worker_rss(tiny_engine):
    """A CPU worker's measured RSS is within a third of its planned total (weights are tiny,
    so the runtime overhead is most of both)."""
    async with EngineClient.connect(tiny_engine.url, tiny_engine.token) as client:
        session = await client.call("session_info")
        if session["device_kind"] != "cpu":
            pytest.skip("the engine runs on a GPU; this compares plans with CPU RSS")
        # A kv_cache_len no other test uses, so the engine starts a fresh worker for it.
        await client.call(
            "spawn", name="fresh", kind="inference", model=inference_model("qwen3-32b", kv_cache_len=333)
        )
        (spawn,) = [s for s in (await client.call("list_spawns"))["spawns"] if s["name"] == "fresh"]
        (rank,) = spawn["ranks"]
        planned = sum(rank["plan"].values())
        measured = rank["process_bytes"]
        await client.call("dealloc", spawn="fresh")
    assert measured is not None
    assert abs(planned - measured) <= measured / 3, (
        f"planned {planned / MIB:.0f} MiB, RSS {measured / MIB:.0f} MiB"
    )
