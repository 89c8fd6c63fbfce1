"""Run a real engine subprocess for tests, and talk to it with a minimal RPC client.

    with start_engine({"llama-3.1-8b-instruct": tiny_llama_dir}, tmp_path) as engine:
        async with EngineClient.connect(engine.url, engine.token) as client:
            spawn = await client.call("spawn", name="a", kind="inference",
                                      model={"path": "model_registry://llama-3.1-8b-instruct"})

The engine runs in standalone mode (``--model KEY=PATH``), logs to ``engine.log`` in the
given folder, and is stopped with SIGTERM (then SIGKILL) when the block ends.
``EngineClient`` is deliberately small and independent of the SDK, so engine tests do not
depend on it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

ENGINE_ROOT = Path(__file__).resolve().parents[1]
READY_PREFIX = "GALLEY_ENGINE_READY "
READY_TIMEOUT_S = 60.0


@dataclass
class EngineProcess:
    url: str
    token: str
    process: subprocess.Popen
    log_path: Path
    models_dir: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def start_engine(
    models: dict[str, Path],
    folder: Path,
    *,
    keep_warm: float = 30.0,
    telemetry_interval: float = 0.5,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[EngineProcess]:
    """Start ``python -m galley.engine`` with ``models`` registered; yield once it listens."""
    folder.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    token_file = folder / "engine.token"
    token_file.write_text(token)
    models_dir = folder / "models"
    log_path = folder / "engine.log"

    command = [
        sys.executable,
        "-m",
        "galley.engine",
        "--token-file",
        str(token_file),
        "--models-dir",
        str(models_dir),
        "--keep-warm",
        str(keep_warm),
        "--telemetry-interval",
        str(telemetry_interval),
    ]
    for key, path in models.items():
        command += ["--model", f"{key}={path}"]
    command += extra_args or []

    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        **(env or {}),
    }
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command, cwd=ENGINE_ROOT, env=environment, stdout=subprocess.PIPE, stderr=log_file, text=True
        )
    try:
        url = _wait_until_ready(process, log_path)
        yield EngineProcess(url=url, token=token, process=process, log_path=log_path, models_dir=models_dir)
    finally:
        stop_engine(process)


def _wait_until_ready(process: subprocess.Popen, log_path: Path) -> str:
    """Read stdout lines on a thread until the READY line, the engine's exit, or the timeout."""
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")  # end of output: the engine exited

    threading.Thread(target=read_lines, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line.startswith(READY_PREFIX):
            return line[len(READY_PREFIX) :].strip()
        if line == "":
            process.wait()
            raise RuntimeError(
                f"the engine exited with code {process.returncode} before it was ready; log:\n{log_path.read_text()}"
            )
    raise TimeoutError(
        f"the engine was not ready after {READY_TIMEOUT_S:.0f} s; log:\n{log_path.read_text()}"
    )


def stop_engine(process: subprocess.Popen, timeout: float = 60.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


# ---------------------------------------------------------------------------------------
# Client


class EngineCallError(Exception):
    def __init__(self, type: str, message: str, data: dict[str, Any] | None):
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message
        self.data = data


class EngineClient:
    """One connection (one session): ``await call(method, **params)`` returns the result."""

    def __init__(self, connection: ClientConnection):
        self.connection = connection
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    @staticmethod
    def connect(url: str, token: str | None, headers: dict[str, str] | None = None) -> _Connecting:
        return _Connecting(url, token, headers or {})

    async def _read(self) -> None:
        try:
            async for frame in self.connection:
                message = json.loads(frame)
                if "id" in message:
                    future = self.pending.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                else:
                    await self.events.put(message)
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the engine closed the connection"))

    async def call(self, method: str, **params: Any) -> Any:
        request_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        await self.connection.send(json.dumps({"id": request_id, "method": method, "params": params}))
        message = await future
        if message.get("error"):
            error = message["error"]
            raise EngineCallError(error["type"], error["message"], error.get("data"))
        return message["result"]

    async def op(self, spawn: str, op: str, **args: Any) -> Any:
        return await self.call("op", spawn=spawn, op=op, args=args)

    async def close(self) -> None:
        await self.connection.close()
        await asyncio.gather(self.reader, return_exceptions=True)


class _Connecting:
    def __init__(self, url: str, token: str | None, headers: dict[str, str]):
        self.url = url
        self.headers = dict(headers)
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.client: EngineClient | None = None

    async def __aenter__(self) -> EngineClient:
        connection = await connect(self.url, additional_headers=self.headers, max_size=256 * 1024 * 1024)
        self.client = EngineClient(connection)
        return self.client

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self.client is not None
        await self.client.close()


def inference_model(key: str, **fields: Any) -> dict[str, Any]:
    """A ModelSpec dict for ``model_registry://key``."""
    return {"path": f"model_registry://{key}", **fields}


def string_thread(*turns: tuple[str, str], weights: list[float] | None = None) -> dict[str, Any]:
    thread: dict[str, Any] = {"kind": "string", "turns": [list(turn) for turn in turns]}
    if weights is not None:
        thread["weights"] = weights
    return thread


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists and is not a zombie."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_until(predicate, seconds: float = 30.0, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``seconds`` pass; return its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()
