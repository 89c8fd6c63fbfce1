"""Tensor parallelism on the CPU: two ranks in a gloo process group, placed on virtual devices."""

from __future__ import annotations

import pytest
from engine_harness import EngineCallError, EngineClient, inference_model, start_engine, string_thread

THREAD = string_thread(("user", "Hello there"), ("assistant", "General Kenobi."))
PROMPT = string_thread(("user", "Hello there"))


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_llama_dir):
    with start_engine(
        {"tiny": tiny_llama_dir}, tmp_path_factory.mktemp("engine-tp"), extra_args=["--devices", "2x1GiB"]
    ) as engine:
        yield engine


@pytest.mark.slow
async def test_two_ranks_generate_and_score_like_one(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        one = await client.call(
            "spawn",
            name="one",
            kind="inference",
            model=inference_model("tiny", kv_cache_len=256, tokens_to_generate=8),
        )
        two = await client.call(
            "spawn",
            name="two",
            kind="inference",
            model=inference_model("tiny", kv_cache_len=256, tokens_to_generate=8, tp=2),
        )
        assert len(one["devices"]) == 1
        assert sorted(two["devices"]) == ["virtual:0", "virtual:1"]
        ranks = two["plan"]["ranks"]
        full = one["plan"]["components"]["weights"]
        for rank in ranks:  # sharded layers split in two; norms are replicated on both ranks
            assert full // 2 <= rank["components"]["weights"] < full * 0.51

        single = await client.op("one", "generate", thread=PROMPT, sampling={})
        sharded = await client.op("two", "generate", thread=PROMPT, sampling={})
        assert sharded["completion_ids"] == single["completion_ids"]

        single_logprob = (await client.op("one", "logprobs", thread=THREAD))["logprob"]
        sharded_logprob = (await client.op("two", "logprobs", thread=THREAD))["logprob"]
        assert sharded_logprob == pytest.approx(single_logprob, abs=1e-4)

        telemetry = (await client.call("list_spawns"))["spawns"]
        (two_telemetry,) = [s for s in telemetry if s["name"] == "two"]
        pids = [rank["pid"] for rank in two_telemetry["ranks"]]
        assert len(set(pids)) == 2


async def test_tp_that_does_not_divide_heads_is_refused(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call("spawn", name="three", kind="inference", model=inference_model("tiny", tp=3))
    assert error.value.type == "spawn_refused"
    assert "tp=3 does not divide" in error.value.message
    assert "4 attention heads" in error.value.message


async def test_tp_beyond_devices_is_refused(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call(
                "spawn", name="four", kind="inference", model=inference_model("tiny", tp=4, kv_cache_len=64)
            )
    assert error.value.type == "spawn_refused"
    assert "tp=4 needs 4 devices" in error.value.message


async def test_training_with_tp_is_refused_clearly(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call(
                "spawn",
                name="trainer",
                kind="train",
                max_batch_size=64,
                model=inference_model("tiny", tp=2, kv_cache_len=64),
            )
    assert error.value.type == "invalid_request"
    assert "tp=1" in error.value.message
