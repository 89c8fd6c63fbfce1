"""Expected engine failures, each carrying the wire error type of ``galley.protocol``.

Code anywhere in the engine (server, registry, worker, threads) raises these; the server and
the worker turn them into ``ErrorBody(type, message, data)``. Anything else that escapes is a
bug and is reported as ``internal``.
"""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    type = "internal"

    def __init__(self, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.data = data

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "data": self.data}


class InvalidRequest(EngineError, ValueError):
    type = "invalid_request"


class NotFound(EngineError, LookupError):
    type = "not_found"


class SpawnRefused(EngineError):
    type = "spawn_refused"


class ModelError(EngineError):
    type = "model_error"


class OpFailed(EngineError):
    type = "op_failed"


class WorkerDied(EngineError):
    type = "worker_died"


ERROR_CLASSES: dict[str, type[EngineError]] = {
    cls.type: cls for cls in (InvalidRequest, NotFound, SpawnRefused, ModelError, OpFailed, WorkerDied)
}


def error_from_wire(body: dict[str, Any]) -> EngineError:
    """Rebuild the exception a worker reported, so the server can re-raise it."""
    cls = ERROR_CLASSES.get(body.get("type", ""), EngineError)
    return cls(body.get("message", "unknown error"), body.get("data"))
