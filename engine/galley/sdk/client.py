"""The connection to the engine: ``get_client`` and ``HarmonyClient``.

One client is one WebSocket connection, and the engine treats it as one session: spawns
made through it are released when it closes, after the engine's keep-warm time. Requests
may be in flight concurrently (``asyncio.gather`` over model calls); each ``Response`` is
matched to its request by ``id``. Frames without an ``id`` are events, passed to the
listeners added with ``add_event_listener``. The wire format is ``galley.protocol``.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import os
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from galley.protocol import Event, OpParams, Request, Response
from galley.sdk.errors import DryRunStop, EngineConnectionError, GalleyError, error_from_wire
from galley.sdk.events import EventSink, default_sink

if TYPE_CHECKING:
    from galley.sdk.builder import ModelBuilder

log = logging.getLogger(__name__)

ENGINE_URL_ENV = "GALLEY_ENGINE_URL"
ENGINE_TOKEN_ENV = "GALLEY_ENGINE_TOKEN"

# Close code the engine uses for a connection without a valid bearer token.
CLOSE_UNAUTHORIZED = 4401

# Results such as per-token logprobs of long threads exceed websockets' 1 MiB default.
MAX_MESSAGE_BYTES = 1 << 30

EventListener = Callable[[Event], Any]


class HarmonyClient:
    """A connected engine session. Build models with ``client.model(...)``."""

    def __init__(
        self,
        connection: ClientConnection,
        url: str,
        *,
        dry_run: bool = False,
        events: EventSink | None = None,
    ):
        self.url = url
        self.dry_run = dry_run
        # Names of spawns the engine refused during a dry run; the run goes on planning the rest.
        self.dry_run_refused: list[str] = []
        # The call stack of each refused spawn, in the order of dry_run_refused, so the runner
        # can point its error line at the recipe's spawn call.
        self.dry_run_refusal_stacks: list[traceback.StackSummary] = []
        self.dry_run_planned = 0
        self._connection = connection
        self._events = events
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        # Ids of requests whose caller was cancelled before the response came, and the number
        # of such late responses received so far.
        self._abandoned: set[int] = set()
        self.late_responses = 0
        self._listeners: list[EventListener] = []
        # Strong references to listener coroutines in flight; the event loop keeps only weak ones.
        self._listener_tasks: set[asyncio.Future[Any]] = set()
        # Strong references to the "cancel" requests sent for cancelled calls.
        self._cancel_tasks: set[asyncio.Task[None]] = set()
        self._closed_error: EngineConnectionError | None = None
        self._reader = asyncio.get_running_loop().create_task(
            self._read_frames(), name="galley-client-reader"
        )

    # -- building models ------------------------------------------------------------------

    def model(
        self, path: str, kv_cache_len: int | None = None, tokens_to_generate: int | None = None
    ) -> ModelBuilder:
        """Start building a spawn of the registry model at ``path`` (``model_registry://KEY``).

        Parameters left as None take the model's registry defaults, then 131072 and 2048.
        """
        from galley.sdk.builder import ModelBuilder

        return ModelBuilder.create(
            self, path, kv_cache_len=kv_cache_len, tokens_to_generate=tokens_to_generate
        )

    # -- requests -------------------------------------------------------------------------

    async def call(self, method: str, params: BaseModel | dict[str, Any] | None = None) -> Any:
        """Send one request and return its ``result``; raise the typed error on ``error``."""
        if self._closed_error is not None:
            raise self._closed_error
        if isinstance(params, BaseModel):
            params = params.model_dump(mode="json")
        request = Request(id=next(self._ids), method=method, params=params or {})
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request.id] = future
        try:
            await self._connection.send(request.model_dump_json())
        except ConnectionClosed:
            self._pending.pop(request.id, None)
            raise self._connection_lost() from None
        try:
            return await future
        except asyncio.CancelledError:
            # Cancelling the awaiting task cancels the future too, unless the response came first.
            if future.cancelled() or not future.done():
                self._abandoned.add(request.id)
                if method != "cancel" and self._closed_error is None:
                    task = asyncio.get_running_loop().create_task(self._cancel_on_engine(request.id))
                    self._cancel_tasks.add(task)
                    task.add_done_callback(self._cancel_tasks.discard)
            raise
        finally:
            self._pending.pop(request.id, None)

    async def _cancel_on_engine(self, request_id: int) -> None:
        """Ask the engine to stop a request whose caller was cancelled, so a generate frees its batch room."""
        try:
            await self.call("cancel", {"request": request_id})
        except GalleyError as error:  # an engine without "cancel", or a closed connection
            log.debug("could not cancel request %d on the engine: %s", request_id, error)

    async def op(self, spawn: str, op: str, args: dict[str, Any] | None = None) -> Any:
        """Run ``op`` on the spawn named ``spawn``; the arguments and results are in protocol.py."""
        if self.dry_run:
            raise DryRunStop(f"{op} on spawn {spawn!r}")
        return await self.call("op", OpParams(spawn=spawn, op=op, args=args or {}))

    async def health(self) -> Any:
        return await self.call("health")

    async def session_info(self) -> Any:
        return await self.call("session_info")

    async def list_spawns(self) -> Any:
        return await self.call("list_spawns")

    async def devices(self) -> Any:
        return await self.call("devices")

    async def subscribe_telemetry(self) -> Any:
        """Ask the engine to push telemetry events; add a listener to receive them."""
        return await self.call("subscribe", {"topics": ["telemetry"]})

    # -- events ---------------------------------------------------------------------------

    def add_event_listener(self, listener: EventListener) -> None:
        """Call ``listener(event)`` for each event frame; coroutine functions are scheduled."""
        self._listeners.append(listener)

    def remove_event_listener(self, listener: EventListener) -> None:
        self._listeners.remove(listener)

    def emit_run_event(self, event: dict[str, Any]) -> None:
        """Write a run event (docs/contracts.md) for the control plane."""
        (self._events or default_sink()).emit(event)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed_error is not None

    async def close(self) -> None:
        """Close the session; the engine releases its spawns after its keep-warm time."""
        if self._closed_error is None:
            self._closed_error = EngineConnectionError(f"the client for {self.url} is closed")
        await self._connection.close()
        await self._reader
        self._fail_pending(self._closed_error)

    async def __aenter__(self) -> HarmonyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- reading frames -------------------------------------------------------------------

    async def _read_frames(self) -> None:
        try:
            async for message in self._connection:
                self._dispatch(message)
        except ConnectionClosed:
            pass
        error = self._closed_error or self._connection_lost()
        self._closed_error = error
        self._fail_pending(error)

    def _dispatch(self, message: str | bytes) -> None:
        try:
            frame = json.loads(message)
        except ValueError:
            log.warning("ignored a frame from the engine that is not JSON: %.200r", message)
            return
        if isinstance(frame, dict) and "id" in frame:
            self._resolve(frame)
        elif isinstance(frame, dict) and "event" in frame:
            self._deliver_event(frame)
        else:
            log.warning("ignored a frame from the engine with neither id nor event: %.200r", message)

    def _resolve(self, frame: dict[str, Any]) -> None:
        try:
            response = Response.model_validate(frame)
        except ValidationError as error:
            log.warning("ignored a malformed response from the engine: %s", error)
            return
        future = self._pending.get(response.id)
        if future is None and response.id in self._abandoned:
            # A request cancelled here is cancelled on the engine too, but its response can
            # cross the cancel on the wire.
            self._abandoned.discard(response.id)
            self.late_responses += 1
            log.debug(
                "ignored the response to request id %d, whose caller was cancelled (%d such responses so far)",
                response.id,
                self.late_responses,
            )
            return
        if future is None or future.done():
            log.warning("ignored a response for unknown request id %d", response.id)
            return
        if response.error is not None:
            body = response.error
            future.set_exception(error_from_wire(body.type, body.message, body.data))
        else:
            future.set_result(response.result)

    def _deliver_event(self, frame: dict[str, Any]) -> None:
        try:
            event = Event.model_validate(frame)
        except ValidationError as error:
            log.warning("ignored a malformed event from the engine: %s", error)
            return
        if event.event == "log":
            _log_engine_message(event.data)
        for listener in list(self._listeners):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._listener_tasks.add(task)
                    task.add_done_callback(self._listener_done)
            except Exception:
                log.exception("event listener %r failed on a %s event", listener, event.event)

    def _listener_done(self, task: asyncio.Future[Any]) -> None:
        self._listener_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("an event listener failed", exc_info=task.exception())

    def _connection_lost(self) -> EngineConnectionError:
        if self._closed_error is not None:
            return self._closed_error
        code = self._connection.close_code
        reason = self._connection.close_reason
        if code == CLOSE_UNAUTHORIZED:
            return EngineConnectionError(
                f"the engine at {self.url} rejected the token (close code 4401); "
                f"set {ENGINE_TOKEN_ENV} or pass api_key= with the engine's token"
            )
        detail = f" (code {code}{': ' + reason if reason else ''})" if code is not None else ""
        return EngineConnectionError(
            f"the connection to the engine at {self.url} closed{detail}; the session's spawns are gone "
            f"after the engine's keep-warm time. Check the engine log"
        )

    def _fail_pending(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self._abandoned.clear()


def _log_engine_message(data: dict[str, Any]) -> None:
    level = logging.getLevelName(str(data.get("level", "INFO")).upper())
    if not isinstance(level, int):
        level = logging.INFO
    log.log(level, "engine: %s", data.get("message", data))


async def get_client(
    addr: str | None = None,
    num_gpus: int | None = None,
    api_key: str | None = None,
    *,
    open_timeout: float = 10.0,
    dry_run: bool = False,
    events: EventSink | None = None,
    headers: dict[str, str] | None = None,
) -> HarmonyClient:
    """Connect to the engine at ``addr`` (``ws://127.0.0.1:PORT/``) and return the client.

    ``addr`` defaults to ``$GALLEY_ENGINE_URL`` and ``api_key`` (the engine's bearer token)
    to ``$GALLEY_ENGINE_TOKEN``. With ``num_gpus``, the engine must have at least that many
    devices. ``dry_run`` plans spawns instead of starting them and stops at the first op.
    ``headers`` go with the WebSocket upgrade (the runner sends the run id and recipe hash).
    """
    url = _engine_url(addr)
    token = api_key if api_key is not None else os.environ.get(ENGINE_TOKEN_ENV)
    headers = dict(headers or {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection = await connect(
            url,
            additional_headers=headers,
            open_timeout=open_timeout,
            # The engine is on this machine or behind an SSH tunnel; never route it through
            # an HTTP proxy from the environment.
            proxy=None,
            # A recipe may block its event loop for a long while (loading data); a missed
            # pong must not end the session and release its spawns.
            ping_interval=None,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,
        )
    except InvalidStatus as error:
        status = error.response.status_code
        if status in (401, 403):
            raise EngineConnectionError(
                f"the engine at {url} rejected the token (HTTP {status}); set {ENGINE_TOKEN_ENV} "
                f"or pass api_key= with the token from the engine's --token-file"
            ) from None
        raise EngineConnectionError(f"the engine at {url} refused the connection (HTTP {status})") from None
    except (OSError, TimeoutError, InvalidHandshake) as error:
        raise EngineConnectionError(
            f"could not connect to the engine at {url}: {error or type(error).__name__}. Start one with "
            f"`python -m galley.engine` and set {ENGINE_URL_ENV} to the URL it prints"
        ) from None
    client = HarmonyClient(connection, url, dry_run=dry_run, events=events)
    if num_gpus is not None:
        try:
            await _check_device_count(client, num_gpus)
        except BaseException:
            await client.close()
            raise
    return client


def _engine_url(addr: str | None) -> str:
    url = addr if addr is not None else os.environ.get(ENGINE_URL_ENV)
    if not url:
        raise EngineConnectionError(
            f"no engine address: pass get_client('ws://127.0.0.1:PORT/') or set {ENGINE_URL_ENV}"
        )
    if url.startswith(("http://", "https://")):
        raise EngineConnectionError(f"engine address {url!r} is HTTP; the engine speaks WebSocket, use ws://")
    if not url.startswith(("ws://", "wss://")):
        raise EngineConnectionError(
            f"engine address {url!r} must start with ws:// (e.g. ws://127.0.0.1:8765/)"
        )
    try:
        from websockets.uri import parse_uri

        parse_uri(url)
    except InvalidURI as error:
        raise EngineConnectionError(f"engine address {url!r} is not a valid WebSocket URL: {error}") from None
    return url


async def _check_device_count(client: HarmonyClient, num_gpus: int) -> None:
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 1:
        raise ValueError(f"num_gpus must be an int >= 1 or None, got {num_gpus!r}")
    result = await client.devices()
    devices = result.get("devices", []) if isinstance(result, dict) else list(result or [])
    if len(devices) < num_gpus:
        names = ", ".join(str(device.get("id", device)) for device in devices) or "none"
        raise GalleyError(
            f"num_gpus={num_gpus}, but the engine at {client.url} has {len(devices)} device(s): {names}; "
            f"lower num_gpus or start the engine on a machine with more GPUs"
        )
