"""Sessions, spawns and their processes, against a real engine subprocess with tiny models."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from engine_harness import (
    EngineCallError,
    EngineClient,
    inference_model,
    pid_alive,
    start_engine,
    string_thread,
    wait_until,
)
from websockets.exceptions import InvalidStatus

KEEP_WARM_S = 3.0
MODEL = "llama-3.1-8b-instruct"
ARCHITECTURE_CONFIG = (
    Path(__file__).resolve().parents[2] / "resources/architectures/Llama-3.1-70B-Instruct/config.json"
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_llama_dir, tiny_qwen3_dir):
    models = {MODEL: tiny_llama_dir, "qwen3-32b": tiny_qwen3_dir}
    extra = ["--architecture", f"llama-3.1-70b-instruct={ARCHITECTURE_CONFIG}"]
    with start_engine(
        models, tmp_path_factory.mktemp("engine-sessions"), keep_warm=KEEP_WARM_S, extra_args=extra
    ) as engine:
        yield engine


async def spawn_pids(client: EngineClient, name: str) -> list[int]:
    spawns = (await client.call("list_spawns"))["spawns"]
    session = (await client.call("session_info"))["session"]
    return [
        rank["pid"] for s in spawns if s["name"] == name and s["session"] == session for rank in s["ranks"]
    ]


# -- connection ---------------------------------------------------------------------------


async def test_connection_without_token_gets_401(engine):
    with pytest.raises(InvalidStatus) as error:
        async with EngineClient.connect(engine.url, None):
            pass
    assert error.value.response.status_code == 401


async def test_connection_with_wrong_token_gets_401(engine):
    with pytest.raises(InvalidStatus) as error:
        async with EngineClient.connect(engine.url, "not-the-token"):
            pass
    assert error.value.response.status_code == 401


async def test_each_connection_is_its_own_session(engine):
    async with (
        EngineClient.connect(engine.url, engine.token) as first,
        EngineClient.connect(engine.url, engine.token) as second,
    ):
        one = await first.call("session_info")
        two = await second.call("session_info")
        assert one["session"] != two["session"]
        assert (await first.call("health"))["ok"] is True


async def test_unknown_method_is_not_found(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call("teleport")
    assert error.value.type == "not_found"
    assert "teleport" in error.value.message


# -- spawn errors that need no worker -----------------------------------------------------


async def test_unknown_model_key_lists_known_keys(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call("spawn", name="x", kind="inference", model=inference_model("gpt-17"))
    assert error.value.type == "not_found"
    assert "'gpt-17'" in error.value.message
    assert MODEL in error.value.message
    assert "qwen3-32b" in error.value.message
    assert set(error.value.data["known_keys"]) == {MODEL, "qwen3-32b", "llama-3.1-70b-instruct"}


async def test_model_path_without_registry_scheme_is_invalid(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call("spawn", name="x", kind="inference", model={"path": "/models/llama"})
    assert error.value.type == "invalid_request"
    assert "model_registry://" in error.value.message


async def test_architecture_only_model_cannot_be_spawned(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call(
                "spawn", name="x", kind="inference", model=inference_model("llama-3.1-70b-instruct")
            )
    assert error.value.type == "invalid_request"
    assert "architecture-only" in error.value.message
    assert "dry run" in error.value.message


async def test_train_spawn_without_max_batch_size_is_invalid(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.call("spawn", name="x", kind="train", model=inference_model(MODEL))
    assert error.value.type == "invalid_request"
    assert "max_batch_size" in error.value.message


async def test_op_on_unknown_spawn_lists_session_spawns(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        with pytest.raises(EngineCallError) as error:
            await client.op("ghost", "tokenize", text="hi")
    assert error.value.type == "not_found"
    assert "'ghost'" in error.value.message


# -- spawn, dealloc, keep warm ------------------------------------------------------------


async def test_dealloc_ends_the_worker_process(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        result = await client.call(
            "spawn",
            name="short",
            kind="inference",
            model=inference_model(MODEL, kv_cache_len=256, tokens_to_generate=4),
        )
        assert result["reused"] is False
        assert result["kv_cache_len"] == 256
        (pid,) = await spawn_pids(client, "short")
        assert pid_alive(pid)

        with pytest.raises(EngineCallError) as duplicate:
            await client.call("spawn", name="short", kind="inference", model=inference_model(MODEL))
        assert duplicate.value.type == "invalid_request"
        assert "already has a spawn named 'short'" in duplicate.value.message

        released = await client.call("dealloc", spawn="short")
        assert released["pids"] == [pid]
        assert not pid_alive(pid)
        assert await spawn_pids(client, "short") == []
        with pytest.raises(EngineCallError) as gone:
            await client.op("short", "tokenize", text="hi")
        assert gone.value.type == "not_found"


async def test_kept_spawn_reused_then_expires(engine):
    model = inference_model(MODEL, kv_cache_len=320, tokens_to_generate=4)
    async with EngineClient.connect(engine.url, engine.token) as first:
        await first.call("spawn", name="warm", kind="inference", model=model)
        (pid,) = await spawn_pids(first, "warm")

    async with EngineClient.connect(engine.url, engine.token) as second:
        result = await second.call("spawn", name="again", kind="inference", model=model)
        assert result["reused"] is True
        assert result["name"] == "again"
        assert await spawn_pids(second, "again") == [pid]
        ids = (await second.op("again", "tokenize", text="Hello"))["ids"]
        assert ids

    # Kept again when the second session closed; the TTL then ends the process.
    assert pid_alive(pid)
    assert await wait_until(lambda: not pid_alive(pid), seconds=KEEP_WARM_S + 15)


async def test_different_configuration_is_not_reused(engine):
    async with EngineClient.connect(engine.url, engine.token) as first:
        await first.call(
            "spawn",
            name="a",
            kind="inference",
            model=inference_model(MODEL, kv_cache_len=352, tokens_to_generate=4),
        )
        (pid,) = await spawn_pids(first, "a")
    async with EngineClient.connect(engine.url, engine.token) as second:
        result = await second.call(
            "spawn",
            name="b",
            kind="inference",
            model=inference_model(MODEL, kv_cache_len=352, tokens_to_generate=5),
        )
        assert result["reused"] is False
        assert await spawn_pids(second, "b") != [pid]
        await second.call("dealloc", spawn="b")


async def test_training_spawn_is_released_when_session_closes(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        result = await client.call(
            "spawn",
            name="trainer",
            kind="train",
            max_batch_size=128,
            model=inference_model(MODEL, kv_cache_len=128, tokens_to_generate=4),
        )
        assert result["kind"] == "train"
        (pid,) = await spawn_pids(client, "trainer")
    assert await wait_until(lambda: not pid_alive(pid), seconds=15)


# -- generation limits ----------------------------------------------------------------------


async def test_generation_cut_by_kv_cache_is_reported(engine):
    prompt = string_thread(("user", "word " * 40))
    async with EngineClient.connect(engine.url, engine.token) as client:
        await client.call(
            "spawn",
            name="small-cache",
            kind="inference",
            model=inference_model(MODEL, kv_cache_len=64, tokens_to_generate=200),
        )
        cut = await client.op("small-cache", "generate", thread=prompt, sampling={"max_gen_len": 200})
        room = 64 - cut["prompt_tokens"]
        assert 0 < room < 200
        assert cut["finish_reason"] == "kv_cache"
        assert cut["kv_cache_len"] == 64
        assert len(cut["completion_ids"]) == room

        # The spawn's tokens_to_generate is cut the same way when the call sets no max_gen_len.
        default = await client.op("small-cache", "generate_tokens", thread=prompt, sampling={})
        assert default["finish_reason"] == "kv_cache"

        # A request that fits the cache ends with "length", also when it fills the cache exactly.
        for length in (1, room):
            fits = await client.op("small-cache", "generate", thread=prompt, sampling={"max_gen_len": length})
            assert fits["finish_reason"] == "length", length
            assert len(fits["completion_ids"]) == length
            assert "kv_cache_len" not in fits
        await client.call("dealloc", spawn="small-cache")


# -- failures -----------------------------------------------------------------------------


async def test_killed_worker_engine_serves_on(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await client.call(
            "spawn",
            name="doomed",
            kind="inference",
            model=inference_model("qwen3-32b", kv_cache_len=256, tokens_to_generate=4),
        )
        (pid,) = await spawn_pids(client, "doomed")
        os.kill(pid, signal.SIGKILL)
        assert await wait_until(lambda: not pid_alive(pid), seconds=10)

        with pytest.raises(EngineCallError) as error:
            await client.op("doomed", "generate", thread=string_thread(("user", "Hi")))
        # The op races the engine noticing the exit: either the spawn is reported dead, or
        # it is already removed.
        assert error.value.type in ("worker_died", "not_found")
        assert await wait_until(lambda: True)
        assert await spawn_pids(client, "doomed") == []

        assert (await client.call("health"))["ok"] is True
        await client.call(
            "spawn",
            name="doomed",
            kind="inference",
            model=inference_model("qwen3-32b", kv_cache_len=256, tokens_to_generate=4),
        )
        result = await client.op("doomed", "generate", thread=string_thread(("user", "Hi")))
        assert len(result["completion_ids"]) <= 4
    assert "exited" in engine.log_text() or "killed" in engine.log_text()


async def test_killed_worker_fails_pending_call(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await client.call(
            "spawn",
            name="victim",
            kind="inference",
            model=inference_model("qwen3-32b", kv_cache_len=4096, tokens_to_generate=4000),
        )
        (pid,) = await spawn_pids(client, "victim")
        long_generation = asyncio.create_task(
            client.op(
                "victim",
                "generate",
                thread=string_thread(("user", "Tell me everything")),
                sampling={"min_gen_len": 3990},
            )
        )
        await asyncio.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EngineCallError) as error:
            await long_generation
        assert error.value.type == "worker_died"
        assert str(pid) in error.value.message
        assert "spawn 'victim'" in error.value.message


async def test_dealloc_of_dead_worker_frees_name(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await client.call(
            "spawn",
            name="crashed",
            kind="inference",
            model=inference_model("qwen3-32b", kv_cache_len=256, tokens_to_generate=4),
        )
        (pid,) = await spawn_pids(client, "crashed")
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):  # until the engine has noticed the exit
            if await spawn_pids(client, "crashed") == []:
                break
            await asyncio.sleep(0.1)
        with pytest.raises(EngineCallError) as died:
            await client.op("crashed", "tokenize", text="hi")
        assert died.value.type == "worker_died"
        assert died.value.message.endswith("; spawn it again")

        released = await client.call("dealloc", spawn="crashed")
        assert released["released"] is True
        assert released["pids"] == []
        assert str(pid) in released["died"]
        assert "spawn it again" not in released["died"]

        # The name is forgotten: a second dealloc finds nothing, and a new spawn may take it.
        with pytest.raises(EngineCallError) as gone:
            await client.call("dealloc", spawn="crashed")
        assert gone.value.type == "not_found"
        await client.call(
            "spawn",
            name="crashed",
            kind="inference",
            model=inference_model("qwen3-32b", kv_cache_len=256, tokens_to_generate=4),
        )
        await client.call("dealloc", spawn="crashed")


# -- telemetry ----------------------------------------------------------------------------


async def test_subscribe_pushes_telemetry_with_spawn_memory(engine):
    async with EngineClient.connect(engine.url, engine.token) as client:
        await client.call(
            "spawn",
            name="watched",
            kind="inference",
            model=inference_model(MODEL, kv_cache_len=256, tokens_to_generate=4),
        )
        session = (await client.call("session_info"))["session"]
        subscribed = await client.call("subscribe", topics=["telemetry"])
        assert subscribed["interval_s"] > 0
        event = await client.events.get()
        assert event["event"] == "telemetry"
        data = event["data"]
        assert data["devices"][0]["id"] == "cpu"
        (spawn,) = [s for s in data["spawns"] if s["name"] == "watched" and s["session"] == session]
        assert spawn["state"] == "ready"
        assert spawn["model_key"] == MODEL
        (rank,) = spawn["ranks"]
        assert rank["process_bytes"] > 100 * 2**20  # a worker with torch loaded
        assert rank["plan"]["weights"] > 0
        worker_processes = [p for p in data["devices"][0]["processes"] if p["pid"] == rank["pid"]]
        assert worker_processes and worker_processes[0]["spawn"] == "watched"
        await client.call("dealloc", spawn="watched")
