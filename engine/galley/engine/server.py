"""The engine's WebSocket RPC server (wire format: ``galley.protocol``).

Each connection is a session. Requests on one connection run concurrently (a recipe's
``asyncio.gather`` sends many at once), and each response carries its request's id.
The HTTP upgrade must carry ``Authorization: Bearer <token>``; anything else gets HTTP 401
before the WebSocket opens.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest

from galley.engine.admission import Admission
from galley.engine.devices import DeviceInventory
from galley.engine.errors import EngineError, InvalidRequest, NotFound
from galley.engine.launcher import LocalLauncher
from galley.engine.manager import Session, SpawnManager
from galley.engine.registry import Registry
from galley.protocol import (
    METHODS,
    PROTOCOL_VERSION,
    CancelParams,
    DeallocParams,
    Event,
    OpParams,
    PlanParams,
    ReleaseParams,
    Request,
    SpawnParams,
    SubscribeParams,
    Telemetry,
)

log = logging.getLogger("galley.engine")

# Optional upgrade headers that the recipe runner sets, recorded as lineage of saved models.
RUN_ID_HEADER = "X-Galley-Run-Id"
RECIPE_HASH_HEADER = "X-Galley-Recipe-Hash"
CLOSE_UNAUTHORIZED = 4401
MAX_FRAME_BYTES = 256 * 1024 * 1024


@dataclass
class EngineConfig:
    host: str
    port: int
    token: str
    keep_warm_s: float
    telemetry_interval_s: float
    models_dir: Path
    devices: str | None = None
    spare_workers: int | None = None  # None: the launcher's default for its start method
    worker_start: str | None = None  # "forkserver" or "subprocess"; None: forkserver where available


class EngineServer:
    def __init__(self, config: EngineConfig, registry: Registry, inventory: DeviceInventory):
        self.config = config
        self.inventory = inventory
        self.manager = SpawnManager(
            registry,
            Admission(inventory),
            LocalLauncher(config.worker_start, spares=config.spare_workers),
            keep_warm_s=config.keep_warm_s,
            models_dir=config.models_dir,
        )
        self.started_at = time.time()
        self.connections: set[ServerConnection] = set()

    # -- connection -----------------------------------------------------------------------

    def authorize(self, connection: ServerConnection, request: HttpRequest):
        """Reject the upgrade with 401 unless it carries the engine's bearer token."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.config.token.encode()
        ):
            return None
        log.warning(
            "rejected a connection from %s: %s",
            connection.remote_address,
            "no bearer token" if not header else "wrong token",
        )
        return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token\n")

    async def handle_connection(self, connection: ServerConnection) -> None:
        headers = connection.request.headers if connection.request else {}
        session = self.manager.open_session(headers.get(RUN_ID_HEADER), headers.get(RECIPE_HASH_HEADER))
        self.connections.add(connection)
        tasks: set[asyncio.Task] = set()
        try:
            async for frame in connection:
                task = asyncio.create_task(self.handle_frame(connection, session, frame, tasks))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(connection)
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.manager.close_session(session)

    async def handle_frame(self, connection: ServerConnection, session: Session, frame: Any, tasks) -> None:
        request_id = -1
        try:
            try:
                message = json.loads(frame)
                request_id = message.get("id", -1) if isinstance(message, dict) else -1
                request = Request.model_validate(message)
            except (ValueError, ValidationError) as error:
                raise InvalidRequest(f"invalid request frame: {error}") from None
            current = asyncio.current_task()
            if current is not None:
                session.requests[request.id] = current
            try:
                result = await self.dispatch(connection, session, request, tasks)
            finally:
                session.requests.pop(request.id, None)
            response: dict[str, Any] = {"id": request.id, "result": result}
        except EngineError as error:
            response = {"id": request_id, "error": error.to_wire()}
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug: log it with the ids and keep the session alive
            log.exception("internal error in request %s of session %s", request_id, session.id)
            response = {
                "id": request_id,
                "error": {
                    "type": "internal",
                    "message": f"unexpected engine error ({type(error).__name__}: "
                    f"{error}); see the engine log",
                    "data": None,
                },
            }
        try:
            await connection.send(json.dumps(response))
        except ConnectionClosed:
            log.info("session %s closed before response %s was sent", session.id, request_id)

    # -- methods --------------------------------------------------------------------------

    async def dispatch(self, connection: ServerConnection, session: Session, request: Request, tasks) -> Any:
        if request.method not in METHODS:
            raise NotFound(f"unknown method {request.method!r}; methods: {', '.join(METHODS)}")
        model = METHODS[request.method]
        params = None
        if model is not None:
            try:
                params = model.model_validate(request.params)
            except ValidationError as error:
                raise InvalidRequest(
                    f"invalid params for {request.method}: {_describe_validation(error)}"
                ) from None

        match request.method:
            case "health":
                return {
                    "ok": True,
                    "protocol_version": PROTOCOL_VERSION,
                    "pid": os.getpid(),
                    "uptime_s": time.time() - self.started_at,
                }
            case "session_info":
                return {
                    "session": session.id,
                    "protocol_version": PROTOCOL_VERSION,
                    "keep_warm_s": self.config.keep_warm_s,
                    "device_kind": self.inventory.kind,
                    "spawns": sorted(session.spawns),
                }
            case "spawn":
                assert isinstance(params, SpawnParams)
                return await self.manager.spawn(session, params)
            case "op":
                assert isinstance(params, OpParams)
                return await self.manager.op(session, params)
            case "dealloc":
                assert isinstance(params, DeallocParams)
                return await self.manager.dealloc(session, params.spawn)
            case "release":
                assert isinstance(params, ReleaseParams)
                return await self.manager.release_by_id(params.spawn_id)
            case "cancel":
                assert isinstance(params, CancelParams)
                target = session.requests.get(params.request)
                if target is None or target is asyncio.current_task():
                    return {"cancelled": False}
                log.info("session %s cancelled request %s", session.id, params.request)
                target.cancel()
                return {"cancelled": True}
            case "plan":
                assert isinstance(params, PlanParams)
                return await self.manager.plan(session, params)
            case "list_spawns":
                return {"spawns": [s.model_dump() for s in self.telemetry().spawns]}
            case "devices":
                return {"devices": [d.model_dump() for d in self.telemetry().devices]}
            case "subscribe":
                assert isinstance(params, SubscribeParams)
                if not session.subscribed:  # a second subscribe keeps the one stream
                    session.subscribed = True
                    task = asyncio.create_task(self.push_telemetry(connection, session))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                return {"topics": params.topics, "interval_s": self.config.telemetry_interval_s}
        raise NotFound(f"method {request.method!r} is not implemented")

    # -- telemetry ------------------------------------------------------------------------

    def telemetry(self) -> Telemetry:
        spawns = list(self.manager.spawns.values())
        pids = {worker.pid: spawn.name for spawn in spawns for worker in spawn.workers if worker.pid}
        devices = self.inventory.devices(pids)
        measured: dict[int, int] = {}
        for device in devices:
            for process in device.processes:
                measured[process.pid] = measured.get(process.pid, 0) + process.bytes
        return Telemetry(
            time=time.time(),
            devices=devices,
            spawns=[spawn.telemetry(measured, self.inventory.kind == "cuda") for spawn in spawns],
        )

    async def push_telemetry(self, connection: ServerConnection, session: Session) -> None:
        log.info(
            "session %s subscribed to telemetry every %.2f s", session.id, self.config.telemetry_interval_s
        )
        while True:
            event = Event(event="telemetry", data=self.telemetry().model_dump())
            try:
                await connection.send(event.model_dump_json())
            except ConnectionClosed:
                return
            await asyncio.sleep(self.config.telemetry_interval_s)

    # -- lifecycle ------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        async with serve(
            self.handle_connection,
            self.config.host,
            self.config.port,
            process_request=self.authorize,
            max_size=MAX_FRAME_BYTES,
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            log.info("engine listening on ws://%s:%d/ (pid %d)", self.config.host, port, os.getpid())
            print(f"GALLEY_ENGINE_READY ws://{self.config.host}:{port}/", flush=True)
            self.manager.launcher.refill()
            await stop.wait()
            log.info("engine stopping: closing %d connections", len(self.connections))
            server.close(close_connections=True)
            await server.wait_closed()
        await self.manager.shutdown()
        self.inventory.close()
        log.info("engine stopped")


def _describe_validation(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'params'}: {item['msg']}" for item in error.errors()
    )
