"""Two ways to start a worker process, behind one small interface.

- ``forkserver`` (default where the platform has it): a fork server process imports torch,
  transformers and peft once. Every worker is forked from it, so it starts in milliseconds
  instead of the seconds those imports take. The server never initializes CUDA or runs
  torch ops, so a forked worker is in the same state as a fresh process.
- ``subprocess``: ``python -m galley.engine.worker``, a fresh interpreter per worker, for
  platforms without fork. The launcher keeps spare processes started ahead to hide the imports.

Either way the worker gets its end of a socket pair and reads its assignment from it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import sys
from multiprocessing.process import BaseProcess
from typing import Protocol

from galley.engine.channel import WORKER_FD_ENV

log = logging.getLogger("galley.engine.launcher")

START_METHODS = ("forkserver", "subprocess")

# Modules the fork server imports once, so that forked workers start with them loaded.
WORKER_PRELOAD = [
    "torch",
    "transformers",
    "peft",
    "galley.engine.modeling",
    "galley.engine.seams",
    "galley.engine.worker",
]


class WorkerProcess(Protocol):
    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, sig: int) -> None: ...


def default_start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "subprocess"


class ForkedProcess:
    """A worker forked by the fork server (a ``multiprocessing.Process``)."""

    def __init__(self, process: BaseProcess):
        self.process = process
        self.pid = process.pid or 0
        self.joined: asyncio.Future[None] | None = None

    @property
    def returncode(self) -> int | None:
        if self.joined is not None and not self.joined.done():
            return None  # a join is reading the exit status; polling now would read it twice
        return self.process.exitcode

    async def wait(self) -> int:
        # One join for all waiters: the exit status is read once from the fork server's pipe,
        # and a second concurrent read finds it empty and reports 255.
        if self.joined is None:
            self.joined = asyncio.ensure_future(asyncio.to_thread(self.process.join))
        await asyncio.shield(self.joined)
        code = self.process.exitcode
        return code if code is not None else -1

    def send_signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass


class ProcessStarter:
    def __init__(self, method: str):
        if method not in START_METHODS:
            raise ValueError(f"worker start method {method!r} is invalid; use {' or '.join(START_METHODS)}")
        if method == "forkserver" and "forkserver" not in multiprocessing.get_all_start_methods():
            raise ValueError("this platform has no fork server; use the subprocess start method")
        self.method = method
        self.context = None
        if method == "forkserver":
            # A CUDA availability check during the preload imports then asks NVML instead of
            # initializing CUDA, which a forked child could not use.
            os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
            self.context = multiprocessing.get_context("forkserver")
            self.context.set_forkserver_preload(WORKER_PRELOAD)

    def warm_up(self) -> None:
        """Start the fork server and its imports in the background (no-op for subprocesses)."""
        if self.context is None:
            return

        def start_server() -> None:
            from multiprocessing import forkserver

            forkserver.ensure_running()
            log.info("worker fork server is running; workers start from its preloaded imports")

        asyncio.get_running_loop().run_in_executor(None, start_server)

    async def start(self, child: socket.socket) -> WorkerProcess:
        """Start a worker that talks over ``child`` (the caller closes its copy afterwards)."""
        if self.context is not None:
            from galley.engine.worker import forked_main

            process = self.context.Process(target=forked_main, args=(child,), name="galley-worker")
            # start() blocks until the fork server replies, which takes seconds while it imports.
            await asyncio.to_thread(process.start)
            return ForkedProcess(process)

        env = {
            **os.environ,
            WORKER_FD_ENV: str(child.fileno()),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "galley.engine.worker",
            stdin=asyncio.subprocess.DEVNULL,
            # The engine's stdout carries only the READY line, so worker output goes to stderr.
            stdout=sys.stderr.fileno(),
            pass_fds=(child.fileno(),),
            env=env,
            # Ctrl-C in the engine's terminal must not reach the workers: the engine stops them.
            start_new_session=True,
        )  # type: ignore[return-value]
