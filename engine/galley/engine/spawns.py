"""A spawn in the engine server: its workers, state, counters and telemetry.

A spawn's ops go to every rank in the same order, because tensor-parallel ranks must run the
same collective ops. The reply of rank 0 is the result. A frozen copy made by ``clone_inf`` is a
spawn too: it has no workers of its own and sends its ops to its parent's workers under its
view name.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from galley.engine.admission import SpawnPlacement
from galley.engine.errors import WorkerDied
from galley.engine.launcher import WorkerHandle
from galley.engine.spec import ResolvedSpawn
from galley.protocol import ModelRecord, RankMemory, SpawnResult, SpawnTelemetry


class ThroughputMeter:
    """Generated tokens per second over the last ``window`` seconds."""

    def __init__(self, window: float = 10.0):
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, tokens: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.samples.append((now, tokens))
        self.total += tokens
        self._trim(now)

    def rate(self, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if not self.samples:
            return None
        return sum(tokens for _, tokens in self.samples) / self.window

    def _trim(self, now: float) -> None:
        while self.samples and self.samples[0][0] < now - self.window:
            self.samples.popleft()


SpawnState = Literal["loading", "ready", "busy", "kept", "failed", "released"]


def new_spawn_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(eq=False)
class Spawn:
    name: str
    session_id: str
    resolved: ResolvedSpawn
    record: ModelRecord
    id: str = field(default_factory=new_spawn_id)
    placement: SpawnPlacement | None = None
    workers: list[WorkerHandle] = field(default_factory=list)
    state: SpawnState = "loading"
    created_at: float = field(default_factory=time.time)
    kept_since: float | None = None
    last_op: str | None = None
    op_counts: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    throughput: ThroughputMeter = field(default_factory=ThroughputMeter)
    # clone_inf: the training spawn whose workers run this frozen copy, and the view name there.
    parent: Spawn | None = None
    view: str | None = None
    children: list[Spawn] = field(default_factory=list)
    keep_task: asyncio.Task | None = None

    @property
    def kind(self) -> str:
        return self.resolved.kind

    @property
    def ranks(self) -> list[WorkerHandle]:
        return self.parent.ranks if self.parent is not None else self.workers

    @property
    def devices(self) -> list[str]:
        if self.parent is not None:
            return self.parent.devices
        return self.placement.devices if self.placement else []

    @property
    def info(self) -> dict[str, Any]:
        ranks = self.ranks
        return ranks[0].info if ranks else {}

    def describe(self) -> str:
        pids = ", ".join(str(worker.pid) for worker in self.ranks)
        return f"spawn {self.name!r} (id {self.id}, session {self.session_id}, pid {pids or 'none'})"

    # -- ops ------------------------------------------------------------------------------

    async def call(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Send an op to every rank, in the same order on each, and return rank 0's reply."""
        ranks = self.ranks
        if not ranks or self.state in ("failed", "released"):
            raise WorkerDied(f"spawn {self.name!r} is gone (state {self.state}); spawn it again")
        self.in_flight += 1
        self.last_op = op
        self.op_counts[op] += 1
        try:
            # Creating every rank's call before awaiting keeps the send order equal across ranks.
            calls = [asyncio.ensure_future(worker.call(op, args, self.view)) for worker in ranks]
            replies = await asyncio.gather(*calls, return_exceptions=True)
        finally:
            self.in_flight -= 1
        _raise_rank_error(replies)
        reply: dict[str, Any] = replies[0]  # type: ignore[assignment]  # not an exception: checked above
        result = reply.get("result")
        if isinstance(result, dict) and result.get("generated_tokens"):
            self.throughput.add(int(result["generated_tokens"]))
        return reply

    # -- views ----------------------------------------------------------------------------

    def current_state(self) -> SpawnState:
        if self.state == "ready" and self.in_flight > 0:
            return "busy"
        return self.state

    def result(self, *, reused: bool = False) -> SpawnResult:
        info = self.info
        return SpawnResult(
            name=self.name,
            kind=self.resolved.kind,
            model_key=self.resolved.model_key,
            tp=self.resolved.tp,
            kv_cache_len=self.resolved.kv_cache_len,
            tokens_to_generate=self.resolved.tokens_to_generate,
            adapter=bool(info.get("adapter", self.resolved.adapter)),
            scalar=bool(info.get("scalar", self.resolved.scoring)),
            devices=self.devices,
            plan=self.placement.plan if self.placement else None,
            reused=reused,
        )

    def telemetry(self, measured: dict[int, int], on_gpu: bool) -> SpawnTelemetry:
        """Telemetry of this spawn; ``measured`` maps worker PIDs to bytes from the device readings.

        Off the GPU, a PID missing from the readings falls back to the RSS the worker reported
        after its last op. On a GPU it stays None: RSS is not GPU memory.
        """
        ranks: list[RankMemory] = []
        components = self.placement.rank_components if self.placement else []
        devices = self.devices
        for rank_index in range(self.resolved.tp):
            worker = self.ranks[rank_index] if rank_index < len(self.ranks) else None
            memory = worker.memory if worker is not None else {}
            pid = worker.pid if worker is not None else None
            process_bytes = measured.get(pid) if pid is not None else None
            if process_bytes is None and not on_gpu:
                process_bytes = memory.get("process_bytes")
            # A frozen copy shares its parent's memory, so only the parent shows the plan.
            plan = components[rank_index] if rank_index < len(components) and self.parent is None else None
            ranks.append(
                RankMemory(
                    rank=rank_index,
                    device=devices[rank_index] if rank_index < len(devices) else "unplaced",
                    pid=pid,
                    process_bytes=process_bytes,
                    torch_allocated=memory.get("torch_allocated"),
                    torch_reserved=memory.get("torch_reserved"),
                    torch_peak=memory.get("torch_peak"),
                    plan=plan,
                )
            )
        return SpawnTelemetry(
            id=self.id,
            name=self.name,
            session=self.session_id,
            kind=self.resolved.kind,  # type: ignore[arg-type]
            model_key=self.resolved.model_key,
            tp=self.resolved.tp,
            devices=devices,
            ranks=ranks,
            state=self.current_state(),
            last_op=self.last_op,
            op_counts=dict(self.op_counts),
            tokens_per_second=self.throughput.rate(),
            created_at=self.created_at,
            kv_cache_len=self.resolved.kv_cache_len,
            tokens_to_generate=self.resolved.tokens_to_generate,
            max_batch_size=self.resolved.max_batch_size,
        )


def _raise_rank_error(replies: list[Any]) -> None:
    """Raise the error of a failed rank: a dead worker first, else the lowest rank's error.

    A rank that dies in a collective usually makes the other ranks' ops fail too (a broken
    connection), and the dead worker is the cause the caller needs to see.
    NOTE: if only some ranks fail an op, the others may wait in a collective until the
    process group times out. The spawn then stays up with its ranks out of step.
    """
    errors = [reply for reply in replies if isinstance(reply, BaseException)]
    if not errors:
        return
    died = [error for error in errors if isinstance(error, WorkerDied)]
    raise (died or errors)[0]
