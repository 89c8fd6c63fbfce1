"""Sessions and spawns: create, run ops on, keep warm and release the engine's spawns.

A session is one client connection. Its spawn names are unique within it. When it closes,
its inference spawns are kept for the keep-warm TTL, and a later session that spawns an
identical inference configuration gets one back at once (``reused=True``). Training spawns
are released right away, because no other session could reuse their trained state. A kept
spawn is also released early when an admission needs its memory.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from galley.engine.admission import Admission
from galley.engine.errors import InvalidRequest, NotFound, SpawnRefused, WorkerDied
from galley.engine.launcher import Launcher, WorkerHandle
from galley.engine.registry import Registry, key_change_note
from galley.engine.spawns import Spawn
from galley.engine.spec import LoadSpec, ResolvedSpawn, model_key_of, resolve_spawn
from galley.protocol import ModelRecord, NewModel, OpParams, PlanParams, SpawnParams

log = logging.getLogger("galley.engine")

# Keys a worker adds to generation results for the engine's throughput counters.
INTERNAL_RESULT_KEYS = ("generated_tokens", "seconds")


@dataclass(eq=False)
class Session:
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    spawns: dict[str, Spawn] = field(default_factory=dict)
    run_id: str | None = None
    recipe_hash: str | None = None
    opened_at: float = field(default_factory=time.time)
    subscribed: bool = False  # telemetry events are being pushed to this session
    # Spawns whose worker died, by name, with how it died. Later ops on the name raise it as
    # WorkerDied, with advice to spawn again.
    died: dict[str, str] = field(default_factory=dict)
    # The tasks of this connection's requests still running, by request id (for "cancel").
    requests: dict[int, asyncio.Task] = field(default_factory=dict)


class SpawnManager:
    def __init__(
        self,
        registry: Registry,
        admission: Admission,
        launcher: Launcher,
        *,
        keep_warm_s: float,
        models_dir: Path,
    ):
        self.registry = registry
        self.admission = admission
        self.launcher = launcher
        self.keep_warm_s = keep_warm_s
        self.models_dir = models_dir
        self.sessions: dict[str, Session] = {}
        self.spawns: dict[str, Spawn] = {}  # by spawn id: loading, ready and kept spawns
        self.kept: list[Spawn] = []  # oldest first
        self.admission_lock = asyncio.Lock()

    # -- sessions -------------------------------------------------------------------------

    def open_session(self, run_id: str | None = None, recipe_hash: str | None = None) -> Session:
        session = Session(run_id=run_id, recipe_hash=recipe_hash)
        self.sessions[session.id] = session
        log.info("session %s opened%s", session.id, f" for run {run_id}" if run_id else "")
        return session

    async def close_session(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        self.admission.end_dry_run(session.id)
        for spawn in list(session.spawns.values()):
            keep = (
                spawn.parent is None
                and spawn.kind == "inference"
                and spawn.state == "ready"
                and self.keep_warm_s > 0
            )
            if keep:
                self._keep(spawn)
            else:
                await self.release(spawn, "its session closed")
        session.spawns.clear()
        log.info("session %s closed", session.id)

    def _keep(self, spawn: Spawn) -> None:
        spawn.state = "kept"
        spawn.kept_since = time.monotonic()
        self.kept.append(spawn)
        spawn.keep_task = asyncio.create_task(self._expire(spawn), name=f"keep-warm-{spawn.id}")
        log.info("%s kept warm for %.0f s", spawn.describe(), self.keep_warm_s)

    async def _expire(self, spawn: Spawn) -> None:
        await asyncio.sleep(self.keep_warm_s)
        if spawn.state == "kept":
            spawn.keep_task = None  # this task must not cancel itself in release()
            await self.release(spawn, f"keep-warm TTL of {self.keep_warm_s:.0f} s ran out")

    def _take_kept(self, resolved: ResolvedSpawn) -> Spawn | None:
        for spawn in self.kept:
            if spawn.state == "kept" and spawn.resolved.reuse_key() == resolved.reuse_key():
                self.kept.remove(spawn)
                if spawn.keep_task is not None:
                    spawn.keep_task.cancel()
                    spawn.keep_task = None
                return spawn
        return None

    # -- lookups --------------------------------------------------------------------------

    def find(self, session: Session, name: str) -> Spawn:
        spawn = session.spawns.get(name)
        if spawn is None and name in session.died:
            raise WorkerDied(f"{session.died[name]}; spawn it again", {"spawn": name})
        if spawn is None:
            names = ", ".join(sorted(session.spawns)) or "none"
            raise NotFound(f"no spawn named {name!r} in this session; its spawns: {names}", {"spawn": name})
        return spawn

    async def _records(self, path: str) -> tuple[ModelRecord, ModelRecord | None]:
        record = await self.registry.get(model_key_of(path))
        base = (
            await self.registry.get(record.base_key) if record.kind == "adapter" and record.base_key else None
        )
        return record, base

    # -- spawn ----------------------------------------------------------------------------

    async def spawn(self, session: Session, params: SpawnParams) -> dict[str, Any]:
        name = params.name
        if not name.strip():
            raise InvalidRequest("spawn name is empty; give the spawn a name, e.g. spawn_inference('policy')")
        if name in session.spawns:
            raise InvalidRequest(
                f"this session already has a spawn named {name!r}; spawn names are unique per session, "
                f"so choose another name or dealloc() the first one"
            )
        session.died.pop(name, None)
        record, base = await self._records(params.model.path)
        if record.kind == "architecture" or not record.path:
            raise InvalidRequest(
                f"model {record.key!r} is an architecture-only registry entry (config.json, no weights), so it "
                f"can be planned with a dry run but not spawned; import a folder with its weights to run it"
            )
        resolved = resolve_spawn(params.kind, params.model, record, params.max_batch_size)
        if name in session.spawns:  # a concurrent spawn took the name while the registry request ran
            raise InvalidRequest(f"this session already has a spawn named {name!r}; choose another name")

        if resolved.kind == "inference":
            kept = self._take_kept(resolved)
            if kept is not None:
                kept.name, kept.session_id, kept.state, kept.kept_since = name, session.id, "ready", None
                session.spawns[name] = kept
                log.info("reused kept %s for session %s", kept.describe(), session.id)
                return kept.result(reused=True).model_dump()
            if params.model.use_adapter and record.kind != "adapter":
                log.info("spawn %r: .with_adapter() is ignored for inference of a full-weight model", name)

        spawn = Spawn(name=name, session_id=session.id, resolved=resolved, record=record)
        session.spawns[name] = spawn
        self.spawns[spawn.id] = spawn
        try:
            await self._start(spawn, resolved, record, base)
        except BaseException:
            spawn.state = "failed"
            self._forget(spawn, session)
            self.admission.release(spawn.id)
            raise
        return spawn.result().model_dump()

    async def _start(
        self, spawn: Spawn, resolved: ResolvedSpawn, record: ModelRecord, base: ModelRecord | None
    ) -> None:
        async with self.admission_lock:
            spawn.placement = await self._admit(spawn.id, spawn.name, resolved, record, base)
        placement = spawn.placement
        log.info(
            "spawning %s: %s %s, tp=%d on %s",
            spawn.describe(),
            resolved.kind,
            record.key,
            resolved.tp,
            ", ".join(placement.devices),
        )
        specs = [
            LoadSpec(
                spawn_id=spawn.id,
                name=spawn.name,
                kind=resolved.kind,
                model_key=record.key,
                model_path=str(record.path),
                base_path=base.path if base else None,
                base_key=record.key if resolved.new_adapter else record.base_key,
                new_adapter=resolved.new_adapter,
                scoring=resolved.scoring,
                device=placement.worker_devices[rank],
                rank=rank,
                world_size=resolved.tp,
                kv_cache_len=resolved.kv_cache_len,
                tokens_to_generate=resolved.tokens_to_generate,
                max_batch_size=resolved.max_batch_size,
                generation_kv_bytes=_planned_activations(placement.rank_components, rank)
                if resolved.kind == "train"
                else None,
            )
            for rank in range(resolved.tp)
        ]
        environments = [dict(environment) for environment in placement.environments]
        if resolved.tp > 1:
            # The ranks meet through a file store because torch's TCP store listens on every
            # network interface. Gloo and NCCL are set to the loopback interface.
            store = Path(tempfile.mkdtemp(prefix="galley-tp-")) / "store"
            for rank, environment in enumerate(environments):
                environment.update(
                    GALLEY_TP_STORE=str(store),
                    RANK=str(rank),
                    WORLD_SIZE=str(resolved.tp),
                    LOCAL_RANK="0",
                )
                if sys.platform.startswith("linux"):
                    environment.setdefault("GLOO_SOCKET_IFNAME", "lo")
                    environment.setdefault("NCCL_SOCKET_IFNAME", "lo")

        def on_exit(worker: WorkerHandle, code: int | None) -> None:
            asyncio.get_running_loop().create_task(self._worker_died(spawn, worker, code))

        started = time.monotonic()
        spawn.workers = await self.launcher.start(specs, environments, placement.devices, on_exit)
        self.admission.loaded(spawn.id)
        if spawn.state == "loading":
            spawn.state = "ready"
        log.info("%s ready in %.1f s", spawn.describe(), time.monotonic() - started)

    async def _admit(
        self, spawn_id: str, name: str, resolved: ResolvedSpawn, record: ModelRecord, base: ModelRecord | None
    ):
        """Admit the spawn, releasing kept spawns (oldest first) while it does not fit."""
        while True:
            try:
                return self.admission.admit(spawn_id, resolved, record, base, name)
            except SpawnRefused as error:
                # Only memory can be freed; a tp the devices cannot take stays refused.
                if not self.kept or (error.data or {}).get("reason") != "does_not_fit":
                    raise
                victim = self.kept[0]
                log.info("releasing kept %s to make room for a new spawn", victim.describe())
                await self.release(victim, "its memory was needed for a new spawn")

    async def _worker_died(self, spawn: Spawn, worker: WorkerHandle, code: int | None) -> None:
        if spawn.state in ("released", "failed"):
            return
        log.error(
            "%s failed: its rank %d worker (pid %s) exited with code %s",
            spawn.describe(),
            worker.rank,
            worker.pid,
            code,
        )
        spawn.state = "failed"
        owner = self.sessions.get(spawn.session_id)
        if owner is not None:
            for dead in (spawn, *spawn.children):
                owner.died[dead.name] = (
                    f"spawn {dead.name!r} is gone: the rank {worker.rank} worker (pid {worker.pid}) of "
                    f"spawn {spawn.name!r} exited with code {code}"
                )
        await self._stop(spawn)

    # -- release --------------------------------------------------------------------------

    def _forget(self, spawn: Spawn, session: Session | None = None) -> None:
        self.spawns.pop(spawn.id, None)
        if spawn in self.kept:
            self.kept.remove(spawn)
        owner = session or self.sessions.get(spawn.session_id)
        if owner is not None and owner.spawns.get(spawn.name) is spawn:
            del owner.spawns[spawn.name]

    async def _stop(self, spawn: Spawn) -> None:
        """Forget a spawn and its frozen copies, and end its workers."""
        if spawn.keep_task is not None:
            spawn.keep_task.cancel()
            spawn.keep_task = None
        self._forget(spawn)
        for child in list(spawn.children):
            child.state = spawn.state
            self._forget(child)
        spawn.children.clear()
        if spawn.parent is None:
            await asyncio.gather(*(worker.stop() for worker in spawn.workers), return_exceptions=True)
            self.admission.release(spawn.id)

    async def release(self, spawn: Spawn, reason: str) -> None:
        if spawn.state in ("released", "failed"):
            return
        spawn.state = "released"
        parent = spawn.parent
        if parent is not None:
            if spawn in parent.children:
                parent.children.remove(spawn)
            if parent.state in ("ready", "kept"):
                try:
                    await parent.call("drop_view", {"name": spawn.view})
                except Exception as error:  # the parent may be ending; the view goes with it
                    log.warning(
                        "could not drop frozen copy %r of %s: %s", spawn.name, parent.describe(), error
                    )
        await self._stop(spawn)
        log.info("released %s: %s", spawn.describe(), reason)

    async def dealloc(self, session: Session, name: str) -> dict[str, Any]:
        if name not in session.spawns and self.admission.drop_dry_run_spawn(session.id, name):
            return {"name": name, "released": True, "pids": []}  # a dry run's planned spawn
        if name not in session.spawns and name in session.died:
            # The worker's exit already ended the spawn and gave its memory back, so there is
            # nothing left to stop. Forgetting the death frees the name.
            died = session.died.pop(name)
            log.info("dealloc of spawn %r in session %s: already ended (%s)", name, session.id, died)
            return {"name": name, "released": True, "pids": [], "died": died}
        spawn = self.find(session, name)
        pids = [worker.pid for worker in spawn.workers]
        await self.release(spawn, "dealloc")
        return {"name": name, "released": True, "pids": pids}

    async def release_by_id(self, spawn_id: str) -> dict[str, Any]:
        """End a spawn of any session. Its owner's next op on it raises not_found."""
        spawn = self.spawns.get(spawn_id)
        if spawn is None:
            live = ", ".join(sorted(self.spawns)) or "none"
            raise NotFound(
                f"no live spawn with id {spawn_id!r}; live spawn ids: {live}", {"spawn_id": spawn_id}
            )
        if spawn.state == "loading":
            # Its workers are still starting; ending it now would leave them running.
            raise InvalidRequest(f"spawn {spawn.name!r} is still loading; release it once it is ready")
        pids = [worker.pid for worker in spawn.workers]  # empty for a frozen copy: no process ends
        await self.release(spawn, f"a client released it by id (session {spawn.session_id})")
        return {
            "id": spawn_id,
            "name": spawn.name,
            "session": spawn.session_id,
            "released": True,
            "pids": pids,
        }

    async def shutdown(self) -> None:
        spawns = list(self.spawns.values())
        await self.launcher.close()
        await asyncio.gather(
            *(self.release(spawn, "the engine is shutting down") for spawn in spawns), return_exceptions=True
        )

    # -- ops ------------------------------------------------------------------------------

    async def op(self, session: Session, params: OpParams) -> Any:
        spawn = self.find(session, params.spawn)
        if spawn.state == "loading":
            raise InvalidRequest(
                f"spawn {spawn.name!r} is still loading; await its spawn call before using it"
            )
        if params.op == "save":
            return await self._save(session, spawn, params.args)
        if params.op == "clone_inf":
            return await self._clone(session, spawn, params.args)
        if params.op in ("drop_view",):
            raise NotFound(f"unknown op {params.op!r}")
        reply = await spawn.call(params.op, params.args)
        result = reply.get("result")
        if isinstance(result, dict):
            for key in INTERNAL_RESULT_KEYS:
                result.pop(key, None)
        return result

    async def _save(self, session: Session, spawn: Spawn, args: dict[str, Any]) -> dict[str, Any]:
        if spawn.kind != "train" or spawn.parent is not None:
            raise InvalidRequest(f"save needs a training spawn; {spawn.name!r} is an inference spawn")
        model_name = args.get("model_name")
        if not isinstance(model_name, str) or not model_name.strip():
            raise InvalidRequest("save needs model_name, the name of the new registry model")
        inference_only = args.get("inference_only", True)
        if not isinstance(inference_only, bool):
            raise InvalidRequest(f"inference_only must be true or false, got {inference_only!r}")
        key = await self.registry.free_key(
            model_name, taken=lambda candidate: (self.models_dir / candidate).exists()
        )
        folder = self.models_dir / key
        reply = await spawn.call(
            "save", {"folder": str(folder), "model_name": model_name, "inference_only": inference_only}
        )
        metadata = reply["result"]
        adapter = metadata.get("kind") == "adapter"
        kind = "adapter" if adapter else "full"
        if not adapter and metadata.get("scoring"):
            kind = "scoring"
        record = await self.registry.register(
            NewModel(
                key=key,
                name=model_name,
                path=str(folder),
                kind=kind,
                parent_key=spawn.record.key,
                run_id=session.run_id,
                recipe_hash=session.recipe_hash,
                optim_step=metadata.get("optim_step"),
                adapter_base_key=metadata.get("base_key") if adapter else None,
            )
        )
        note = key_change_note(model_name, record.key)
        log.info("%s saved as model %r in %s%s", spawn.describe(), record.key, folder, f" ({note})" if note else "")
        # The SDK shows key_note to the recipe, so a name that became a different key is never silent.
        return {"key": record.key, "path": str(folder), "name": model_name, "key_note": note}

    async def _clone(self, session: Session, parent: Spawn, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest("clone_inf needs a name for the frozen inference copy")
        if name in session.spawns:
            raise InvalidRequest(f"this session already has a spawn named {name!r}; choose another name")
        if parent.kind != "train" or parent.parent is not None:
            raise InvalidRequest(f"clone_inf needs a training spawn; {parent.name!r} is an inference spawn")
        child = Spawn(
            name=name,
            session_id=session.id,
            resolved=parent.resolved.model_copy(update={"kind": "inference", "max_batch_size": None}),
            record=parent.record,
            parent=parent,
            state="loading",
        )
        child.view = child.id
        session.spawns[name] = child
        try:
            await parent.call("clone_inf", {"name": child.view})
        except BaseException:
            self._forget(child, session)
            raise
        child.state = "ready"
        parent.children.append(child)
        self.spawns[child.id] = child
        log.info("made frozen copy %s of %s", child.describe(), parent.describe())
        return child.result().model_dump()

    # -- plan -----------------------------------------------------------------------------

    async def plan(self, session: Session, params: PlanParams) -> dict[str, Any]:
        """Plan and place a spawn without starting it; raise what spawn would raise.

        The plan reserves its bytes against the session's later plans until the session deallocs
        it or closes, so a dry run checks every spawn against what the earlier ones take.
        """
        record, base = await self._records(params.model.path)
        resolved = resolve_spawn(params.kind, params.model, record, params.max_batch_size)
        plan, placement, held = self.admission.plan_dry_run(session.id, params.name, resolved, record, base)
        return {
            "name": params.name,
            "kind": resolved.kind,
            "model_key": record.key,
            "tp": resolved.tp,
            "kv_cache_len": resolved.kv_cache_len,
            "tokens_to_generate": resolved.tokens_to_generate,
            "max_batch_size": resolved.max_batch_size,
            "adapter": resolved.adapter,
            "scalar": resolved.scoring,
            "devices": placement.devices if placement is not None else [],
            "ranks": [rank.to_dict() for rank in placement.ranks] if placement is not None else [],
            "held": [holding.to_dict() for holding in held],
            "plan": plan.to_dict() if plan is not None else None,
        }


def _planned_activations(rank_components: list[dict[str, int] | None], rank: int) -> int | None:
    components = rank_components[rank] if rank < len(rank_components) else None
    return None if components is None else components.get("activations")
