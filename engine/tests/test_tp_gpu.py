"""Tensor parallelism on two CUDA GPUs: NCCL ranks against a tp=1 spawn of the same model.

NOTE: these tests have not run yet, because no machine with two GPUs was available. They
skip where torch finds fewer than two CUDA devices; the CPU tests in test_tp.py cover the
same comparisons with gloo.
"""

from __future__ import annotations

import pytest
import torch
from engine_harness import EngineClient, inference_model, start_engine, string_thread

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices"),
]

PROMPT = string_thread(("user", "Hello there"))
FACT = string_thread(("user", "Capital of Freedonia?"), ("assistant", "Fredville."))


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_llama_dir):
    with start_engine(
        {"tiny": tiny_llama_dir}, tmp_path_factory.mktemp("engine-tp-gpu"), extra_args=["--devices", "cuda"]
    ) as engine:
        yield engine


async def test_tp2_on_two_gpus_matches_tp1(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        results = {}
        for name, tp in (("single", 1), ("sharded", 2)):
            results[name] = await client.call(
                "spawn",
                name=name,
                kind="train",
                max_batch_size=256,
                model=inference_model("tiny", kv_cache_len=512, tokens_to_generate=8, tp=tp),
            )
        devices = results["sharded"]["devices"]
        assert len(set(devices)) == 2
        assert all(device.startswith("cuda:") for device in devices)

        greedy = {"temperature": 0.0}
        single = await client.op("single", "generate", thread=PROMPT, sampling=greedy)
        sharded = await client.op("sharded", "generate", thread=PROMPT, sampling=greedy)
        assert sharded["completion_ids"] == single["completion_ids"]

        steps = {}
        for name in ("single", "sharded"):
            await client.op(name, "train_language_modelling", thread=FACT)
            steps[name] = await client.op(name, "optim_step", lr=1e-2, wd=0.0, max_grad_norm=1.0)
        assert steps["sharded"]["loss"] == pytest.approx(steps["single"]["loss"], rel=1e-4)
        assert steps["sharded"]["grad_norm"] == pytest.approx(steps["single"]["grad_norm"], rel=1e-3)
        single_logprob = (await client.op("single", "logprobs", thread=FACT))["logprob"]
        sharded_logprob = (await client.op("sharded", "logprobs", thread=FACT))["logprob"]
        assert sharded_logprob == pytest.approx(single_logprob, abs=1e-2)

        (telemetry,) = [s for s in (await client.call("list_spawns"))["spawns"] if s["name"] == "sharded"]
        for rank in telemetry["ranks"]:
            assert rank["torch_allocated"] > 0
