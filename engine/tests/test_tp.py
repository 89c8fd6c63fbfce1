"""Tensor-parallel spawns against tp=1 spawns of the same model, in one engine with gloo on the CPU.

The engine has four virtual 80 GiB devices: a tp=n spawn places its ranks on n of them,
and every rank computes on the CPU in the spawn's gloo process group. Each comparison runs
a tp=1 and a tp>1 spawn side by side: generation token for token, log-probabilities, and
one optimizer step (loss, gradient norm, saved weights) within float tolerance.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import torch
from engine_harness import (
    EngineCallError,
    EngineClient,
    inference_model,
    pid_alive,
    start_engine,
    string_thread,
    wait_until,
)
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

LLAMA, QWEN = "llama-3.1-8b-instruct", "qwen3-32b"
PROMPTS = [
    string_thread(("user", "Hello there")),
    string_thread(("user", "Name three colors."), ("assistant", "Red."), ("user", "Two more?")),
]
FACT = string_thread(("user", "Capital of Freedonia?"), ("assistant", "Fredville."))
WRONG = string_thread(("user", "Capital of Freedonia?"), ("assistant", "Sylvania City."))
GREEDY = {"temperature": 0.0, "max_gen_len": 12}


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_llama_dir, tiny_qwen3_dir):
    models = {LLAMA: tiny_llama_dir, QWEN: tiny_qwen3_dir}
    with start_engine(
        models, tmp_path_factory.mktemp("engine-tp"), keep_warm=60, extra_args=["--devices", "4x80GiB"]
    ) as engine:
        yield engine


async def spawn(client: EngineClient, name: str, key: str, tp: int, kind: str = "inference", **model):
    model = {"kv_cache_len": 512, **model}
    params = {"name": name, "kind": kind, "model": inference_model(key, tp=tp, **model)}
    if kind == "train":
        params["max_batch_size"] = 256
    return await client.call("spawn", **params)


async def spawn_telemetry(client: EngineClient, name: str) -> dict:
    session = (await client.call("session_info"))["session"]
    spawns = (await client.call("list_spawns"))["spawns"]
    (found,) = [s for s in spawns if s["name"] == name and s["session"] == session]
    return found


async def used_bytes(client: EngineClient) -> dict[str, int]:
    return {device["id"]: device["used_bytes"] for device in (await client.call("devices"))["devices"]}


# -- inference ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [LLAMA, QWEN])
async def test_tp2_generation_matches_tp1(engine, key):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "single", key, 1, tokens_to_generate=12)
        await spawn(client, "sharded", key, 2, tokens_to_generate=12)
        for prompt in PROMPTS:
            single = await client.op("single", "generate", thread=prompt, sampling=GREEDY)
            sharded = await client.op("sharded", "generate", thread=prompt, sampling=GREEDY)
            assert sharded["completion_ids"] == single["completion_ids"]
            assert len(single["completion_ids"]) > 0

        # tp=1 samples in the batching scheduler, tp>1 in transformers' generate, so a seed
        # reproduces a tp=2 sample but need not match tp=1's.
        seeded = {"temperature": 1.0, "seed": 7, "max_gen_len": 12}
        first = await client.op("sharded", "generate", thread=PROMPTS[0], sampling=seeded)
        again = await client.op("sharded", "generate", thread=PROMPTS[0], sampling=seeded)
        assert again["completion_ids"] == first["completion_ids"]

        # Unseeded sampling draws a seed on rank 0 for every rank; greedy must still agree after it.
        unseeded = await client.op("sharded", "generate", thread=PROMPTS[0], sampling={"temperature": 1.0})
        assert len(unseeded["completion_ids"]) > 0
        single = await client.op("single", "generate", thread=PROMPTS[1], sampling=GREEDY)
        sharded = await client.op("sharded", "generate", thread=PROMPTS[1], sampling=GREEDY)
        assert sharded["completion_ids"] == single["completion_ids"]

        single_logprob = (await client.op("single", "logprobs", thread=FACT))["logprob"]
        sharded_logprob = (await client.op("sharded", "logprobs", thread=FACT))["logprob"]
        assert sharded_logprob == pytest.approx(single_logprob, abs=1e-3)


async def test_tp4_replicated_kv_heads_match_tp1(engine):
    # The tiny Llama has 2 KV heads, so at tp=4 each KV head lives on two ranks.
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "single", LLAMA, 1, tokens_to_generate=12)
        result = await spawn(client, "wide", LLAMA, 4, tokens_to_generate=12)
        assert len(set(result["devices"])) == 4

        single = await client.op("single", "logprobs_per_token", thread=FACT)
        wide = await client.op("wide", "logprobs_per_token", thread=FACT)
        assert wide["logprobs"] == pytest.approx(single["logprobs"], abs=1e-4)
        single = await client.op("single", "generate", thread=PROMPTS[1], sampling=GREEDY)
        wide = await client.op("wide", "generate", thread=PROMPTS[1], sampling=GREEDY)
        assert wide["completion_ids"] == single["completion_ids"]


async def test_tp2_telemetry_on_two_devices(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        single = await spawn(client, "single", QWEN, 1)
        sharded = await spawn(client, "sharded", QWEN, 2)
        telemetry = await spawn_telemetry(client, "sharded")

        assert telemetry["tp"] == 2
        assert len(set(telemetry["devices"])) == 2
        assert [rank["device"] for rank in telemetry["ranks"]] == telemetry["devices"]
        pids = [rank["pid"] for rank in telemetry["ranks"]]
        assert len(set(pids)) == 2 and all(pid_alive(pid) for pid in pids)

        full_weights = single["plan"]["components"]["weights"]
        for rank, planned in zip(telemetry["ranks"], sharded["plan"]["ranks"], strict=True):
            assert rank["plan"] == planned["components"]
            # Every layer but the norms is split, so a rank plans just over half the weights.
            assert full_weights // 2 <= rank["plan"]["weights"] < full_weights * 0.51
            assert rank["process_bytes"] > 0

        subscribed = await client.call("subscribe", topics=["telemetry"])
        assert subscribed["interval_s"] > 0
        event = await asyncio.wait_for(client.events.get(), 10)
        devices = {device["id"]: device for device in event["data"]["devices"]}
        for rank in telemetry["ranks"]:
            assert devices[rank["device"]]["used_bytes"] >= sum(rank["plan"].values())


async def test_tp3_rejected_with_valid_tp(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await spawn(client, "three", QWEN, 3)
    assert error.value.type == "spawn_refused"
    assert "tp=3 does not divide" in error.value.message
    assert "4 attention heads" in error.value.message
    assert error.value.data is not None
    assert error.value.data["valid_tp"] == [1, 2, 4]


# -- training -----------------------------------------------------------------------------


async def test_tp2_training_step_matches_tp1(engine):
    """Full fine-tuning with a value head: LM and MSE losses, one AdamW step, then save."""
    async with EngineClient.connect(engine.url, engine.token) as client:
        steps, scores, saved = {}, {}, {}
        for name, tp in (("single", 1), ("sharded", 2)):
            await spawn(client, name, LLAMA, tp, kind="train", scoring=True)
            before = (await client.op(name, "logprobs", thread=FACT))["logprob"]
            await client.op(name, "train_language_modelling", thread=FACT)
            await client.op(name, "train_mse", thread=FACT, target=2.0)
            steps[name] = await client.op(name, "optim_step", lr=1e-2, wd=0.01, max_grad_norm=1.0)
            after = (await client.op(name, "logprobs", thread=FACT))["logprob"]
            scores[name] = (before, after, (await client.op(name, "score_last_token", thread=FACT))["score"])
            saved[name] = await client.op(name, "save", model_name=f"tp test {name}")

        single, sharded = steps["single"], steps["sharded"]
        assert sharded["loss"] == pytest.approx(single["loss"], rel=1e-5)
        assert sharded["losses"] == pytest.approx(single["losses"], rel=1e-5)
        assert sharded["grad_norm"] == pytest.approx(single["grad_norm"], rel=1e-4)
        assert single["grad_norm"] > 1.0  # so the step clipped, and clipping is compared too
        assert scores["sharded"] == pytest.approx(scores["single"], abs=1e-3)
        assert scores["single"][1] > scores["single"][0]  # the step changed the weights

        # The tp=2 save is one unsharded checkpoint with the tp=1 save's tensors.
        single_weights = load_file(str(engine.models_dir / saved["single"]["key"] / "model.safetensors"))
        sharded_weights = load_file(str(engine.models_dir / saved["sharded"]["key"] / "model.safetensors"))
        assert sharded_weights.keys() == single_weights.keys()
        for name, tensor in single_weights.items():
            assert sharded_weights[name].shape == tensor.shape, name
            torch.testing.assert_close(sharded_weights[name], tensor, atol=1e-4, rtol=1e-4, msg=name)
        single_head = load_file(str(engine.models_dir / saved["single"]["key"] / "value_head.safetensors"))
        sharded_head = load_file(str(engine.models_dir / saved["sharded"]["key"] / "value_head.safetensors"))
        torch.testing.assert_close(sharded_head["weight"], single_head["weight"], atol=1e-4, rtol=1e-4)


async def test_tp2_adapter_training_matches_tp1(engine):
    """LoRA under tp=2 with DPO (no dropout), a frozen copy, and the gathered adapter reloaded."""
    async with EngineClient.connect(engine.url, engine.token) as client:
        steps, logprobs, frozen = {}, {}, {}
        for name, tp in (("single", 1), ("sharded", 2)):
            result = await spawn(client, name, QWEN, tp, kind="train", use_adapter=True)
            assert result["adapter"] is True
            reference = [(await client.op(name, "logprobs", thread=t))["logprob"] for t in (FACT, WRONG)]
            for step in range(2):
                await client.op(
                    name,
                    "train_dpo",
                    pos=FACT,
                    neg=WRONG,
                    ref_logprobs_pos=reference[0],
                    ref_logprobs_neg=reference[1],
                    beta=0.1,
                )
                steps[name] = await client.op(name, "optim_step", lr=1e-2, wd=0.0, max_grad_norm=1.0)
                if step == 0:  # a frozen copy of the adapter after one step
                    await client.op(name, "clone_inf", name=f"{name}-frozen")
                    frozen[name] = [(await client.op(name, "logprobs", thread=FACT))["logprob"]]
            logprobs[name] = (await client.op(name, "logprobs", thread=FACT))["logprob"]
            frozen[name].append((await client.op(f"{name}-frozen", "logprobs", thread=FACT))["logprob"])
            generated = await client.op(f"{name}-frozen", "generate", thread=PROMPTS[0], sampling=GREEDY)
            frozen[name].append(generated["completion_ids"])

        assert steps["sharded"]["loss"] == pytest.approx(steps["single"]["loss"], rel=1e-4)
        assert steps["sharded"]["grad_norm"] == pytest.approx(steps["single"]["grad_norm"], rel=1e-4)
        assert logprobs["sharded"] == pytest.approx(logprobs["single"], abs=1e-3)
        # The frozen copy keeps the weights of step 1 while the policy takes step 2.
        assert frozen["sharded"][1] == pytest.approx(frozen["sharded"][0], abs=1e-4)
        assert frozen["sharded"][1] != pytest.approx(logprobs["sharded"], abs=1e-4)
        assert frozen["sharded"][1] == pytest.approx(frozen["single"][1], abs=1e-3)
        # After training, the top tokens of the tiny model are nearly tied, so greedy tokens
        # are not compared across tp here; the copy must still generate in lockstep.
        assert 0 < len(frozen["sharded"][2]) <= GREEDY["max_gen_len"]

        saved = await client.op("sharded", "save", model_name="tp adapter")
        folder = engine.models_dir / saved["key"]
        assert (folder / "adapter_model.safetensors").is_file()
        for name, tp in (("reloaded", 1), ("reloaded-sharded", 2)):
            await spawn(client, name, saved["key"], tp)
            reloaded = (await client.op(name, "logprobs", thread=FACT))["logprob"]
            assert reloaded == pytest.approx(logprobs["sharded"], abs=1e-3)


# -- failure ------------------------------------------------------------------------------


async def test_killed_rank_raises_worker_died(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await spawn(client, "doomed", QWEN, 2, kv_cache_len=4096, tokens_to_generate=4000)
        ranks = (await spawn_telemetry(client, "doomed"))["ranks"]
        pids = [rank["pid"] for rank in ranks]
        used_before = await used_bytes(client)

        long_generation = asyncio.create_task(
            client.op("doomed", "generate", thread=PROMPTS[0], sampling={"min_gen_len": 3990})
        )
        await asyncio.sleep(1.0)
        os.kill(pids[1], signal.SIGKILL)
        with pytest.raises(EngineCallError) as error:
            await long_generation
        assert error.value.type == "worker_died"
        assert str(pids[1]) in error.value.message
        with pytest.raises(EngineCallError) as later:
            await client.op("doomed", "logprobs", thread=FACT)
        assert later.value.type == "worker_died"
        assert "spawn it again" in later.value.message

        # Rank 0 ends with its spawn, and both devices get their planned memory back.
        assert await wait_until(lambda: not any(pid_alive(pid) for pid in pids), seconds=30)

        def released(used: dict[str, int]) -> bool:
            # Kept spawns of earlier tests may expire meanwhile, which only frees more.
            return all(
                used[rank["device"]] <= used_before[rank["device"]] - sum(rank["plan"].values())
                for rank in ranks
            )

        for _ in range(100):  # the reservation ends just after the workers do
            used_after = await used_bytes(client)
            if released(used_after):
                break
            await asyncio.sleep(0.1)
        assert released(used_after), (used_before, used_after)

        assert (await client.call("health"))["ok"] is True
        await spawn(client, "again", QWEN, 2, tokens_to_generate=4)
        result = await client.op("again", "generate", thread=PROMPTS[0], sampling={"temperature": 0.0})
        assert 0 < len(result["completion_ids"]) <= 4
