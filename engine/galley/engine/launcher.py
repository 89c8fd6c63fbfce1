"""Starting, reaching and stopping the worker processes of a spawn.

``Launcher.start`` starts one worker per rank and returns a ``WorkerHandle`` for each once
every rank reported "ready". A handle sends ops and awaits their replies by id, and notices
when its process exits. ``LocalLauncher`` runs workers as local processes connected to the
engine by a socket pair. A cluster launcher (Ray placement groups, one node per spawn)
would implement the same two classes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import signal
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from galley.engine.errors import EngineError, ModelError, WorkerDied, error_from_wire
from galley.engine.processes import ProcessStarter, WorkerProcess, default_start_method
from galley.engine.spec import LoadSpec

log = logging.getLogger("galley.engine.launcher")

# Replies can hold long id and logprob lists; the stream's default line limit is 64 KiB.
MAX_MESSAGE_BYTES = 1 << 30
STOP_TIMEOUT_S = 10.0


class WorkerHandle(ABC):
    rank: int
    device: str
    pid: int | None
    memory: dict[str, int | None]
    info: dict[str, Any]

    @abstractmethod
    async def call(self, op: str, args: dict[str, Any], view: str | None = None) -> dict[str, Any]:
        """Run an op; return the worker's reply (``result``, ``memory``). Raise its EngineError."""

    @abstractmethod
    async def stop(self) -> int | None:
        """End the worker (shutdown request, then SIGTERM, then SIGKILL); return its exit code."""

    @property
    @abstractmethod
    def alive(self) -> bool: ...


class Launcher(ABC):
    @abstractmethod
    async def start(
        self,
        specs: list[LoadSpec],
        environments: list[dict[str, str]],
        devices: list[str],
        on_exit: Callable[[WorkerHandle, int | None], None],
    ) -> list[WorkerHandle]:
        """Start one worker per spec (one per rank) on its device and wait until all are ready.

        ``on_exit`` is called once for each worker that exits while the spawn is in use.
        Raises the error of a rank that failed to load, after stopping the others.
        """

    @abstractmethod
    def refill(self) -> None:
        """Start what the launcher keeps ready ahead of spawns, such as spare processes."""

    @abstractmethod
    async def close(self) -> None:
        """Stop what ``refill`` started."""


# ---------------------------------------------------------------------------------------
# Local processes


class LocalWorker(WorkerHandle):
    """A worker child process: started first (possibly as a spare), then assigned a spawn rank."""

    def __init__(self) -> None:
        self.spec: LoadSpec | None = None
        self.rank = 0
        self.device = ""
        self.pid = None
        self.memory = {}
        self.info = {}
        self.on_exit: Callable[[WorkerHandle, int | None], None] | None = None
        self.process: WorkerProcess | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.stopping = False
        self.exit_code: int | None = None
        self.reader_task: asyncio.Task | None = None

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else "(spare)"

    @property
    def label(self) -> str:
        if self.spec is None:
            return f"spare worker (pid {self.pid})"
        return f"spawn {self.spec.name!r} rank {self.rank} (pid {self.pid})"

    async def start_process(self, starter: ProcessStarter) -> None:
        """Start the process; it has torch and transformers imported when it waits for ``assign``."""
        parent, child = socket.socketpair()
        try:
            self.process = await starter.start(child)
        finally:
            child.close()
        self.pid = self.process.pid
        reader, self.writer = await asyncio.open_connection(sock=parent, limit=MAX_MESSAGE_BYTES)
        self.reader_task = asyncio.create_task(self._read(reader), name=f"worker-{self.pid}-reader")

    async def assign(
        self,
        spec: LoadSpec,
        device: str,
        environment: dict[str, str],
        on_exit: Callable[[WorkerHandle, int | None], None],
    ) -> None:
        """Tell the process which spawn rank to load, with the environment it needs (visible GPUs, rendezvous)."""
        self.spec, self.rank, self.device, self.on_exit = spec, spec.rank, device, on_exit
        await self._send({"spec": spec.model_dump(), "env": environment})
        log.info("assigned worker to %s on %s", self.label, device)

    async def _send(self, message: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.write((json.dumps(message) + "\n").encode())
        await self.writer.drain()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                self._receive(json.loads(line))
        except (ConnectionError, ValueError) as error:
            log.warning("connection to %s broke: %s", self.label, error)
        assert self.process is not None
        self.exit_code = await self.process.wait()
        self._exited()

    def _receive(self, message: dict[str, Any]) -> None:
        if "memory" in message:
            self.memory = message["memory"]
        event = message.get("event")
        if event == "ready":
            self.info = message.get("info", {})
            if not self.ready.done():
                self.ready.set_result(message)
            return
        if event == "load_failed":
            if not self.ready.done():
                self.ready.set_exception(error_from_wire(message.get("error", {})))
            return
        future = self.pending.pop(message.get("id", -1), None)
        if future is None or future.done():
            return
        if message.get("error"):
            future.set_exception(error_from_wire(message["error"]))
        else:
            future.set_result(message)

    def _exited(self) -> None:
        code = self.exit_code
        description = _describe_exit(code)
        error = WorkerDied(
            f"the worker of spawn {self.name!r} (rank {self.rank}, pid {self.pid}) {description}; "
            f"the spawn is gone, see the engine log for its last messages",
            {"spawn": self.name, "rank": self.rank, "pid": self.pid, "exit_code": code},
        )
        if not self.ready.done():
            self.ready.set_exception(
                ModelError(
                    f"the worker of spawn {self.name!r} {description} while loading; see the engine log"
                )
            )
            self.ready.exception()  # mark retrieved: a spare that exits unassigned has no waiter
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()
        if not self.stopping:
            log.error("worker of %s %s", self.label, description)
            if self.on_exit is not None:
                self.on_exit(self, code)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def call(self, op: str, args: dict[str, Any], view: str | None = None) -> dict[str, Any]:
        if not self.alive or self.writer is None:
            raise WorkerDied(f"the worker of spawn {self.name!r} (pid {self.pid}) is not running")
        request_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        try:
            await self._send({"id": request_id, "op": op, "args": args, "view": view})
        except (ConnectionError, RuntimeError) as error:
            self.pending.pop(request_id, None)
            raise WorkerDied(
                f"cannot reach the worker of spawn {self.name!r} (pid {self.pid}): {error}"
            ) from None
        try:
            return await future
        except asyncio.CancelledError:
            # The client cancelled the request: let the worker drop it too (a queued or running
            # generation frees its KV cache room). The worker sends no reply to a cancel.
            if self.pending.pop(request_id, None) is not None and self.alive:
                asyncio.ensure_future(self._send_cancel(request_id))
            raise

    async def _send_cancel(self, request_id: int) -> None:
        try:
            await self._send({"op": "cancel", "args": {"request": request_id}})
        except (ConnectionError, RuntimeError, AssertionError) as error:
            log.info("cannot send the cancel of request %s to %s: %s", request_id, self.label, error)

    async def stop(self) -> int | None:
        self.stopping = True
        process = self.process
        if process is None:
            return None
        if process.returncode is None and self.spec is None:
            # An unassigned spare may still be importing torch, and it has no state that needs a clean exit.
            process.send_signal(signal.SIGTERM)
        elif process.returncode is None:
            try:
                await self._send({"op": "shutdown"})
            except (ConnectionError, RuntimeError, AssertionError):
                pass
            for action in (None, signal.SIGTERM, signal.SIGKILL):
                if action is not None and process.returncode is None:
                    log.warning(
                        "worker of %s did not exit in %.0f s; sending %s",
                        self.label,
                        STOP_TIMEOUT_S,
                        action.name,
                    )
                    process.send_signal(action)
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
                    break
                except TimeoutError:
                    continue
        if self.writer is not None:
            self.writer.close()
        if self.reader_task is not None:
            await asyncio.gather(self.reader_task, return_exceptions=True)
        log.info("worker of %s stopped (%s)", self.label, _describe_exit(process.returncode))
        return process.returncode


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class LocalLauncher(Launcher):
    """Workers as local processes (see ``processes.py`` for how they start).

    ``spares`` processes are kept started ahead of spawns. They matter for the subprocess
    start method, because a new process spends seconds importing torch and transformers.
    A forked worker starts with those imports done, so the default there is none. A spare
    uses no GPU memory, only its own RSS (a few hundred MiB).
    """

    def __init__(self, start_method: str | None = None, spares: int | None = None):
        self.starter = ProcessStarter(start_method or default_start_method())
        if spares is None:
            spares = 0 if self.starter.method == "forkserver" else 1
        self.spare_count = spares
        self.spares: list[LocalWorker] = []
        self.starting: set[asyncio.Task] = set()
        self.closed = False
        self.warmed = False

    def refill(self) -> None:
        """Start the fork server, and spares in the background until ``spares`` are alive or starting."""
        if not self.warmed:
            self.warmed = True
            self.starter.warm_up()
        alive = [worker for worker in self.spares if worker.alive]
        self.spares = alive
        while not self.closed and len(self.spares) + len(self.starting) < self.spare_count:
            task = asyncio.get_running_loop().create_task(self._start_spare())
            self.starting.add(task)
            task.add_done_callback(self.starting.discard)

    async def _start_spare(self) -> None:
        worker = LocalWorker()
        try:
            await worker.start_process(self.starter)
        except OSError as error:
            log.warning("cannot start a spare worker: %s", error)
            return
        if self.closed:
            await worker.stop()
            return
        self.spares.append(worker)
        log.info("spare worker started (pid %s)", worker.pid)

    async def _take(self) -> LocalWorker:
        while self.spares:
            worker = self.spares.pop(0)
            if worker.alive:
                return worker
        worker = LocalWorker()
        await worker.start_process(self.starter)
        return worker

    async def start(
        self,
        specs: list[LoadSpec],
        environments: list[dict[str, str]],
        devices: list[str],
        on_exit: Callable[[WorkerHandle, int | None], None],
    ) -> list[WorkerHandle]:
        workers: list[LocalWorker] = []
        try:
            for spec, environment, device in zip(specs, environments, devices, strict=True):
                worker = await self._take()
                workers.append(worker)
                await worker.assign(spec, device, environment, on_exit)
            self.refill()
            await asyncio.gather(*(worker.ready for worker in workers))
        except BaseException as error:
            await asyncio.gather(*(worker.stop() for worker in workers), return_exceptions=True)
            if isinstance(error, EngineError | asyncio.CancelledError):
                raise
            raise ModelError(f"cannot start the workers of spawn {specs[0].name!r}: {error}") from error
        return list(workers)

    async def close(self) -> None:
        self.closed = True
        for task in list(self.starting):
            task.cancel()
        await asyncio.gather(*self.starting, return_exceptions=True)
        await asyncio.gather(*(worker.stop() for worker in self.spares), return_exceptions=True)
        self.spares.clear()
