"""The ``release`` RPC: any session ends a spawn by its telemetry id (the workbench's Release
button), against the shared tiny engine."""

from __future__ import annotations

import asyncio

import pytest
from engine_harness import EngineCallError, EngineClient, inference_model, pid_alive, wait_until

MODEL = "llama-3.1-8b-instruct"


async def find_spawn(client: EngineClient, name: str, session: str | None = None) -> dict | None:
    for spawn in (await client.call("list_spawns"))["spawns"]:
        if spawn["name"] == name and (session is None or spawn["session"] == session):
            return spawn
    return None


async def test_release_ends_another_sessions_spawn(tiny_engine):
    async with (
        EngineClient.connect(tiny_engine.url, tiny_engine.token) as owner,
        EngineClient.connect(tiny_engine.url, tiny_engine.token) as workbench,
    ):
        await owner.call(
            "spawn",
            name="victim",
            kind="inference",
            model=inference_model(MODEL, kv_cache_len=192, tokens_to_generate=2),
        )
        session = (await owner.call("session_info"))["session"]
        spawn = await find_spawn(workbench, "victim", session)
        assert spawn is not None
        assert spawn["kv_cache_len"] == 192
        (pid,) = [rank["pid"] for rank in spawn["ranks"]]

        released = await workbench.call("release", spawn_id=spawn["id"])
        assert released == {
            "id": spawn["id"],
            "name": "victim",
            "session": session,
            "released": True,
            "pids": [pid],
        }
        assert await wait_until(lambda: not pid_alive(pid), seconds=10)
        assert await find_spawn(workbench, "victim", session) is None

        with pytest.raises(EngineCallError) as gone:
            await owner.op("victim", "tokenize", text="hi")
        assert gone.value.type == "not_found"
        assert (await owner.call("session_info"))["spawns"] == []


async def test_release_ends_a_kept_spawn(tiny_engine):
    model = inference_model(MODEL, kv_cache_len=160, tokens_to_generate=2)
    async with EngineClient.connect(tiny_engine.url, tiny_engine.token) as owner:
        await owner.call("spawn", name="kept", kind="inference", model=model)
    async with EngineClient.connect(tiny_engine.url, tiny_engine.token) as workbench:
        spawn = await wait_for_kept(workbench, "kept")
        assert spawn is not None, "the closed session's spawn was not kept warm"
        await workbench.call("release", spawn_id=spawn["id"])
        assert await find_spawn(workbench, "kept") is None
        # The configuration is no longer kept, so the next spawn starts a new worker.
        again = await workbench.call("spawn", name="kept", kind="inference", model=model)
        assert again["reused"] is False
        await workbench.call("dealloc", spawn="kept")


async def wait_for_kept(client: EngineClient, name: str, seconds: float = 10.0) -> dict | None:
    for _ in range(int(seconds / 0.1)):
        spawn = await find_spawn(client, name)
        if spawn is not None and spawn["state"] == "kept":
            return spawn
        await asyncio.sleep(0.1)
    return None


async def test_release_unknown_id_lists_live_ids(tiny_engine):
    async with EngineClient.connect(tiny_engine.url, tiny_engine.token) as client:
        with pytest.raises(EngineCallError) as missing:
            await client.call("release", spawn_id="no-such-id")
        assert missing.value.type == "not_found"
        assert "no live spawn with id 'no-such-id'" in missing.value.message
        assert missing.value.data == {"spawn_id": "no-such-id"}
