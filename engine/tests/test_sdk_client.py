"""The SDK against a real engine: connection, typed errors, concurrent requests and every model op.

The engine is the session-wide ``tiny_engine`` fixture (tiny Llama under
``llama-3.1-8b-instruct``, tiny Qwen3 under ``qwen3-32b``). Each spawn starts a worker
process, so the tests group many checks per spawn.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from galley import (
    EngineConnectionError,
    GalleyError,
    InferenceModel,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    SpawnRefused,
    StringThread,
    StructuredOutputError,
    TokenizedThread,
    TrainingModel,
    WorkerDied,
    get_client,
)

pytestmark = pytest.mark.slow

ENGINE_DIR = Path(__file__).resolve().parents[1]
LLAMA = "model_registry://llama-3.1-8b-instruct"
QWEN = "model_registry://qwen3-32b"


class Recorder:
    def __init__(self):
        self.events: list[dict] = []

    def emit(self, event: dict) -> None:
        self.events.append(event)


def question() -> StringThread:
    return StringThread([("system", "Answer briefly."), ("user", "What is the capital of France?")])


async def test_connect_and_session_info(tiny_engine):
    async with await get_client(tiny_engine.url, api_key=tiny_engine.token) as client:
        health = await client.health()
        info = await client.session_info()
    assert health["ok"] is True
    assert info["protocol_version"] == 1
    assert client.closed


async def test_token_from_environment(tiny_engine, monkeypatch):
    monkeypatch.setenv("GALLEY_ENGINE_URL", tiny_engine.url)
    monkeypatch.setenv("GALLEY_ENGINE_TOKEN", tiny_engine.token)
    client = await get_client()
    try:
        assert (await client.health())["ok"] is True
    finally:
        await client.close()


async def test_wrong_token_is_rejected(tiny_engine):
    with pytest.raises(EngineConnectionError, match="rejected the token \\(HTTP 401\\)"):
        await get_client(tiny_engine.url, api_key="wrong-token")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("http://127.0.0.1:1/", "is HTTP; the engine speaks WebSocket"),
        ("127.0.0.1:1", "must start with ws://"),
        ("ws://127.0.0.1:9/", "could not connect to the engine at ws://127.0.0.1:9/"),
    ],
)
async def test_bad_addresses_are_explained(address, expected):
    with pytest.raises(EngineConnectionError, match=expected):
        await get_client(address, api_key="token")


async def test_num_gpus_beyond_devices_is_rejected(tiny_engine):
    with pytest.raises(GalleyError, match="num_gpus=64, but the engine at .* has 1 device"):
        await get_client(tiny_engine.url, num_gpus=64, api_key=tiny_engine.token)


async def test_engine_errors_are_typed(tiny_engine):
    async with await get_client(tiny_engine.url, api_key=tiny_engine.token) as client:
        with pytest.raises(ModelNotFound) as unknown:
            await client.model("model_registry://no-such-model").spawn_inference("x")
        with pytest.raises(SpawnRefused, match="tp=3 does not divide"):
            await client.model(QWEN).tp(3).spawn_inference("y")
        with pytest.raises(NotFound):
            await client.op("no-such-spawn", "tokenize", {"text": "hi"})
        with pytest.raises(NotFound):
            await client.call("no_such_method")
    # Models saved by other tests of the session may be registered too.
    assert {"llama-3.1-8b-instruct", "qwen3-32b"} <= set(unknown.value.known_keys)
    assert "no-such-model" in unknown.value.message
    assert unknown.value.type == "not_found"


async def test_inference_model_ops(tiny_engine):
    events = Recorder()
    async with await get_client(tiny_engine.url, api_key=tiny_engine.token, events=events) as client:
        model = await client.model(LLAMA, kv_cache_len=1024, tokens_to_generate=6).spawn_inference("reader")
        assert isinstance(model, InferenceModel)
        assert model.info is not None
        assert model.info.model_key == "llama-3.1-8b-instruct"
        assert model.info.kv_cache_len == 1024
        assert model.get_builder_args()["kv_cache_len"] == 1024
        assert events.events[0] == {
            "type": "spawn",
            "name": "reader",
            "kind": "inference",
            "model_key": "llama-3.1-8b-instruct",
        }

        # Generation: greedy is deterministic, and tokens_to_generate caps the reply.
        greedy = model.temperature(0.0)
        first = await greedy.generate(question())
        second = await greedy.generate(question())
        assert first == second
        assert first.get_turns()[:-1] == question().get_turns()
        assert first.get_turns()[-1].role == "assistant"
        short = await greedy.max_gen_len(2).generate_tokens(question())
        assert isinstance(short, TokenizedThread)
        assert 1 <= short.len_last_turn() <= 2
        assert model.sampling.max_gen_len is None  # views are copies

        # Concurrent requests on one connection are matched to their callers.
        texts = [f"number {i} " * (i + 1) for i in range(6)]
        one_by_one = [await model.tokenize(text) for text in texts]
        together = await asyncio.gather(*(model.tokenize(text) for text in texts))
        assert together == one_by_one
        assert await model.detokenize(one_by_one[2]) == texts[2]

        # Threads and token ids.
        tokenized = await model.tokenize_thread(first)
        assert [turn.role for turn in tokenized.get_turns()] == ["system", "user", "assistant"]
        assert (await model.detokenize_thread(tokenized)).get_turns()[:2] == first.get_turns()[:2]
        ids, images, weights = await model.serialize_thread(first)
        assert images == []
        assert len(ids) == len(weights)
        assert 0 < sum(weights) < len(weights)

        # Log-probabilities: the sum over weighted tokens equals the per-token list's sum.
        total = await model.logprobs(first)
        per_token = await model.logprobs_per_token(first)
        assert len(per_token) == int(sum(weights))
        assert total == pytest.approx(sum(per_token), rel=1e-4)
        assert len(await model.raw_logprobs(ids[:5])) == 4

        # A model without a value head refuses scores before any request.
        assert model.is_scalar() is False
        with pytest.raises(GalleyError, match="has no value head; build it with .into_scoring_model\\(\\)"):
            await model.score_last_token(first)

        await model.dealloc()
        with pytest.raises(GalleyError, match="'reader' was deallocated"):
            await model.tokenize("again")


class Capital(BaseModel):
    city: str


async def test_generate_and_validate_retries_then_raises(tiny_engine):
    # A random-weight model does not write JSON, so every attempt fails to parse.
    async with await get_client(tiny_engine.url, api_key=tiny_engine.token) as client:
        model = await client.model(LLAMA, kv_cache_len=1024, tokens_to_generate=6).spawn_inference("json")
        with pytest.raises(StructuredOutputError) as caught:
            await model.temperature(0.0).generate_and_validate(question(), Capital, max_parsing_retries=2)
    assert len(caught.value.errors) == 3
    assert "did not validate as Capital after 3 attempt(s)" in str(caught.value)


async def test_training_model_ops(tiny_engine):
    events = Recorder()
    async with await get_client(tiny_engine.url, api_key=tiny_engine.token, events=events) as client:
        builder = (
            client.model(QWEN, kv_cache_len=1024, tokens_to_generate=4).with_adapter().into_scoring_model()
        )
        model = await builder.spawn_train("critic", max_batch_size=256)
        assert isinstance(model, TrainingModel)
        assert model.is_scalar() is True
        assert model.info is not None
        assert model.info.adapter is True

        good = StringThread([("user", "Can you help?"), ("assistant", "Of course, happy to help.")])
        bad = StringThread([("user", "Can you help?"), ("assistant", "No.")])
        before = await model.score_last_token(good)
        scores = await model.score(good)
        assert len(scores) >= 1

        added = await model.train_mse(good, 1.0)
        assert added["tokens"] > 0
        await model.train_ranking(good, bad)
        stats = await model.optim_step(lr=1e-2, wd=0.0, max_grad_norm=1.0)
        for key in ("loss", "grad_norm", "samples", "tokens", "samples_dropped"):
            assert key in stats
        assert stats["samples"] == 2  # one mse sample and one ranking pair
        assert await model.get_optim_step() == 1
        after = await model.score_last_token(good)
        assert after != before

        # Language modelling on the same spawn, and the step counter.
        await model.train_language_modelling(good.with_weight_last_assistant_turn())
        await model.optim_step(lr=1e-3, wd=0.0, max_grad_norm=1.0)
        await model.set_optim_step(10)
        assert await model.get_optim_step() == 10

        # inf() shares the spawn; clone_inf() makes a frozen copy with its own name.
        view = model.inf()
        assert isinstance(view, InferenceModel)
        assert not isinstance(view, TrainingModel)
        assert await view.score_last_token(good) == await model.score_last_token(good)
        reference = await model.clone_inf()
        assert reference.name == "critic-ref"
        assert reference.info is not None
        assert await reference.logprobs(good) == pytest.approx(await model.logprobs(good), rel=1e-4)

        key = await model.save("sdk-test-critic")
        assert isinstance(key, str)
        assert key
    assert {"type": "spawn", "name": "critic", "kind": "train", "model_key": "qwen3-32b"} in events.events
    assert {
        "type": "artifact",
        "name": "sdk-test-critic",
        "kind": "model",
        "uri": f"model_registry://{key}",
    } in (events.events)


async def test_duplicate_spawn_name_is_invalid(tiny_engine):
    async with await get_client(tiny_engine.url, api_key=tiny_engine.token) as client:
        builder = client.model(LLAMA, kv_cache_len=1024, tokens_to_generate=6)
        await builder.spawn_inference("twice")
        with pytest.raises(InvalidRequest, match="twice"):
            await builder.spawn_inference("twice")


async def test_generation_cut_by_kv_cache_is_flagged(tiny_engine, caplog):
    long_prompt = StringThread([("user", "word " * 40)])
    async with await get_client(tiny_engine.url, api_key=tiny_engine.token) as client:
        model = await client.model(LLAMA, kv_cache_len=64, tokens_to_generate=200).spawn_inference("cramped")
        with caplog.at_level(logging.WARNING, logger="galley.sdk"):
            cut = await model.max_gen_len(200).generate(long_prompt)
            again = await model.generate_tokens(long_prompt)
            fits = await model.max_gen_len(1).generate(long_prompt)
        await model.dealloc()

    assert cut.finish_reason == "kv_cache"
    assert again.finish_reason == "kv_cache"
    assert fits.finish_reason == "length"
    assert long_prompt.finish_reason is None
    assert cut.user("next").finish_reason is None

    # One warning per spawn, naming the spawn, the sizes and the fix.
    warnings = [record.getMessage() for record in caplog.records if "KV cache" in record.getMessage()]
    assert len(warnings) == 1
    (warning,) = warnings
    assert "spawn 'cramped'" in warning
    assert "of 200 requested tokens" in warning
    assert "kv_cache_len=64" in warning
    prompt = re.search(r"the (\d+)-token prompt", warning)
    assert prompt is not None
    prompt_tokens = int(prompt.group(1))
    assert f"spawn it with kv_cache_len >= {prompt_tokens + 200}" in warning


async def test_cancelled_generate_stops_in_engine(tiny_engine, caplog):
    # A 500-token generation fills most of the KV cache. Cancelling it (here by wait_for)
    # must stop it in the worker and free its room, not let it run to its end.
    async with await get_client(tiny_engine.url, api_key=tiny_engine.token) as client:
        model = await client.model(LLAMA, kv_cache_len=600, tokens_to_generate=4).spawn_inference(
            "impatient"
        )
        slow = model.min_gen_len(500).max_gen_len(500)
        with caplog.at_level(logging.DEBUG, logger="galley.sdk"):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(slow.generate(question()), timeout=0.05)
            for _ in range(600):  # until the worker has dropped the request
                if "cancelled by the client" in tiny_engine.log_text():
                    break
                await asyncio.sleep(0.1)
            after = await model.generate(question())
        await model.dealloc()

    cancelled = [line for line in tiny_engine.log_text().splitlines() if "cancelled by the client" in line]
    assert cancelled, "the worker never logged the cancelled generation"
    assert "spawn=impatient" in cancelled[-1]
    assert after.finish_reason in ("eos", "length")
    messages = [record.getMessage() for record in caplog.records]
    assert not [message for message in messages if "unknown request id" in message]


async def test_dealloc_after_worker_died(tiny_engine, caplog):
    async with await get_client(tiny_engine.url, api_key=tiny_engine.token) as client:
        builder = client.model(QWEN, kv_cache_len=256, tokens_to_generate=4)
        model = await builder.spawn_inference("fragile")
        session = (await client.session_info())["session"]

        async def worker_pids() -> list[int]:
            spawns = (await client.call("list_spawns"))["spawns"]
            return [
                rank["pid"]
                for s in spawns
                if s["session"] == session and s["name"] == "fragile"
                for rank in s["ranks"]
            ]

        (pid,) = await worker_pids()
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):  # until the engine has noticed the exit
            if not await worker_pids():
                break
            await asyncio.sleep(0.1)
        with pytest.raises(WorkerDied):
            await model.tokenize("hi")

        with caplog.at_level(logging.WARNING, logger="galley.sdk"):
            await model.dealloc()
        (warning,) = [
            record.getMessage() for record in caplog.records if "had already ended" in record.getMessage()
        ]
        assert "'fragile' had already ended" in warning
        assert "spawn it again" not in warning
        assert warning.endswith("the name 'fragile' is free to spawn again")
        with pytest.raises(GalleyError, match="'fragile' was deallocated"):
            await model.tokenize("again")

        # The name is free again.
        respawned = await builder.spawn_inference("fragile")
        assert len(await respawned.tokenize("hi")) > 0
        await respawned.dealloc()


async def test_telemetry_reaches_listeners(tiny_engine):
    received: asyncio.Queue = asyncio.Queue()

    async def on_event(event):
        await received.put(event)

    async with await get_client(tiny_engine.url, api_key=tiny_engine.token) as client:
        client.add_event_listener(on_event)
        subscription = await client.subscribe_telemetry()
        event = await asyncio.wait_for(received.get(), timeout=30)
    assert subscription["topics"] == ["telemetry"]
    assert event.event == "telemetry"
    assert len(event.data["devices"]) >= 1
    assert "spawns" in event.data


async def test_closed_client_rejects_requests(tiny_engine):
    client = await get_client(tiny_engine.url, api_key=tiny_engine.token)
    await client.close()
    with pytest.raises(EngineConnectionError, match="is closed"):
        await client.health()


def test_sdk_imports_no_torch():
    code = "import sys, galley, galley.runtime, adaptive_harmony.runtime; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ENGINE_DIR, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
