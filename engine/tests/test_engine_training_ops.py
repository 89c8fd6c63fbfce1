"""Training spawns through the engine: save and register, the adapter rule, frozen copies."""

from __future__ import annotations

import json

import pytest
from engine_harness import EngineCallError, EngineClient, inference_model, start_engine, string_thread

FACT = string_thread(("user", "Capital of Freedonia?"), ("assistant", "Fredville."))


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_llama_dir, tiny_qwen3_dir):
    models = {"llama-3.1-8b-instruct": tiny_llama_dir, "qwen3-32b": tiny_qwen3_dir}
    with start_engine(models, tmp_path_factory.mktemp("engine-training"), keep_warm=30) as engine:
        yield engine


async def train_steps(client: EngineClient, spawn: str, steps: int, lr: float = 1e-2) -> list[float]:
    losses = []
    for _ in range(steps):
        await client.op(spawn, "train_language_modelling", thread=FACT)
        stats = await client.op(spawn, "optim_step", lr=lr, wd=0.0, max_grad_norm=1.0)
        losses.append(stats["loss"])
    return losses


async def test_saved_adapter_is_registered_and_reloads_identically(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        spawned = await client.call(
            "spawn",
            name="policy",
            kind="train",
            max_batch_size=256,
            model=inference_model(
                "llama-3.1-8b-instruct", kv_cache_len=512, tokens_to_generate=4, use_adapter=True
            ),
        )
        assert spawned["adapter"] is True
        losses = await train_steps(client, "policy", 4)
        assert losses[-1] < losses[0]
        trained = (await client.op("policy", "logprobs", thread=FACT))["logprob"]

        saved = await client.op("policy", "save", model_name="Freedonia Adapter", inference_only=True)
        assert saved["key"] == "freedonia-adapter"
        folder = engine.models_dir / "freedonia-adapter"
        metadata = json.loads((folder / "galley.json").read_text())
        assert metadata["kind"] == "adapter"
        assert metadata["base_key"] == "llama-3.1-8b-instruct"
        assert metadata["optim_step"] == 4

        again = await client.op("policy", "save", model_name="Freedonia Adapter")
        assert again["key"] == "freedonia-adapter-2"

        reloaded = await client.call(
            "spawn",
            name="tuned",
            kind="inference",
            model=inference_model(saved["key"], kv_cache_len=512, tokens_to_generate=4),
        )
        assert reloaded["adapter"] is True
        assert reloaded["model_key"] == "freedonia-adapter"
        assert (await client.op("tuned", "logprobs", thread=FACT))["logprob"] == pytest.approx(
            trained, abs=1e-4
        )


async def test_adapter_model_keeps_training_its_adapter(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await client.call(
            "spawn",
            name="base",
            kind="train",
            max_batch_size=256,
            model=inference_model("qwen3-32b", kv_cache_len=256, use_adapter=True),
        )
        await train_steps(client, "base", 1)
        key = (await client.op("base", "save", model_name="qwen adapter", inference_only=False))["key"]

        with pytest.raises(EngineCallError) as error:
            await client.call(
                "spawn",
                name="full",
                kind="train",
                max_batch_size=256,
                model=inference_model(key, use_adapter=False),
            )
        assert error.value.type == "invalid_request"
        assert "is itself an adapter" in error.value.message
        assert ".with_adapter(False)" in error.value.message

        resumed = await client.call(
            "spawn",
            name="resumed",
            kind="train",
            max_batch_size=256,
            model=inference_model(key, kv_cache_len=256),
        )
        assert resumed["adapter"] is True
        # inference_only=False saved the optimizer state and step, which the new spawn resumes.
        assert (await client.op("resumed", "get_optim_step"))["step"] == 1
        await train_steps(client, "resumed", 1)
        assert (await client.op("resumed", "get_optim_step"))["step"] == 2


async def test_frozen_copy_keeps_its_weights_while_policy_trains(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await client.call(
            "spawn",
            name="policy",
            kind="train",
            max_batch_size=256,
            model=inference_model("qwen3-32b", kv_cache_len=256, tokens_to_generate=4),
        )
        reference = await client.op("policy", "clone_inf", name="reference")
        assert reference["name"] == "reference"
        assert reference["kind"] == "inference"

        before = (await client.op("reference", "logprobs", thread=FACT))["logprob"]
        await train_steps(client, "policy", 2, lr=1e-3)
        policy_after = (await client.op("policy", "logprobs", thread=FACT))["logprob"]
        reference_after = (await client.op("reference", "logprobs", thread=FACT))["logprob"]
        assert policy_after != pytest.approx(before, abs=1e-3)
        assert reference_after == pytest.approx(before, abs=1e-5)

        generated = await client.op(
            "reference", "generate", thread=string_thread(("user", "Hi")), sampling={}
        )
        assert len(generated["completion_ids"]) <= 4

        with pytest.raises(EngineCallError) as error:
            await client.op("reference", "optim_step", lr=1e-3)
        assert error.value.type == "invalid_request"

        await client.call("dealloc", spawn="reference")
        assert (await client.op("policy", "get_optim_step"))["step"] == 2
        with pytest.raises(EngineCallError):
            await client.op("reference", "logprobs", thread=FACT)


async def test_save_on_inference_spawn_is_invalid(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await client.call(
            "spawn",
            name="server",
            kind="inference",
            model=inference_model("qwen3-32b", kv_cache_len=256, tokens_to_generate=4),
        )
        with pytest.raises(EngineCallError) as error:
            await client.op("server", "save", model_name="nope")
    assert error.value.type == "invalid_request"
    assert "training spawn" in error.value.message


async def test_saved_scoring_adapter_reloads_its_value_head(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        spawned = await client.call(
            "spawn",
            name="reward",
            kind="train",
            max_batch_size=256,
            model=inference_model("qwen3-32b", kv_cache_len=256, use_adapter=True, scoring=True),
        )
        assert spawned["scalar"] is True
        before = (await client.op("reward", "score_last_token", thread=FACT))["score"]
        for _ in range(3):
            await client.op("reward", "train_mse", thread=FACT, target=before + 1.0)
            await client.op("reward", "optim_step", lr=1e-2, wd=0.0, max_grad_norm=1.0)
        trained = (await client.op("reward", "score_last_token", thread=FACT))["score"]
        assert abs(trained - (before + 1.0)) < abs(before - (before + 1.0))

        key = (await client.op("reward", "save", model_name="reward model"))["key"]
        reloaded = await client.call(
            "spawn", name="judge", kind="inference", model=inference_model(key, kv_cache_len=256)
        )
        assert reloaded["scalar"] is True  # the folder's value head, without .into_scoring_model()
        assert (await client.op("judge", "score_last_token", thread=FACT))["score"] == pytest.approx(
            trained, abs=1e-4
        )


async def test_training_spawn_generates_within_planned_activations(engine):
    """A training spawn has no KV cache in its plan, so its generation cache fits its planned activations."""
    async with EngineClient.connect(engine.url, engine.token) as client:
        spawned = await client.call(
            "spawn",
            name="small-batch",
            kind="train",
            max_batch_size=16,
            model=inference_model("qwen3-32b", kv_cache_len=100_000, tokens_to_generate=4),
        )
        (rank,) = spawned["plan"]["ranks"]
        assert "kv_cache" not in rank["components"]
        short = await client.op("small-batch", "generate", thread=string_thread(("user", "Hi")))
        assert short["completion_ids"]

        long_thread = string_thread(("user", "word " * 4000))
        with pytest.raises(EngineCallError, match="training spawn generates within its planned activation"):
            await client.op("small-batch", "generate", thread=long_thread)
