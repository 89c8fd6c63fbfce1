"""Exceptions raised by the SDK.

Errors the engine returns (``protocol.ErrorBody``) become ``EngineError`` subclasses chosen by
the body's ``type``. Each keeps the engine's message and its structured ``data``, which for
a refused spawn contains the plan and the sizes that would fit.
"""

from __future__ import annotations

from typing import Any


class GalleyError(Exception):
    """Base class of every error the SDK raises on purpose."""


class EngineConnectionError(GalleyError):
    """The engine could not be reached, rejected the token, or closed the connection."""


class EngineError(GalleyError):
    """An error the engine returned for a request."""

    type: str = "internal"

    def __init__(self, message: str, data: dict[str, Any] | None = None, *, type: str | None = None):
        super().__init__(message)
        self.message = message
        self.data = data or {}
        if type is not None:
            self.type = type


class InvalidRequest(EngineError):
    """The engine rejected the request's parameters; the message names the field and value."""

    type = "invalid_request"


class NotFound(EngineError):
    """The engine has no spawn, model or method of that name."""

    type = "not_found"


class ModelNotFound(NotFound):
    """The model key is not in the registry; ``known_keys`` lists the registered keys."""

    @property
    def known_keys(self) -> list[str]:
        return list(self.data.get("known_keys", []))


class SpawnRefused(EngineError):
    """The spawn does not fit the free device memory, or its tp is invalid.

    ``data`` contains the plan by component and the largest sizes that would fit.
    """

    type = "spawn_refused"


class ModelLoadError(EngineError):
    """The model folder or its config could not be loaded."""

    type = "model_error"


class OpFailed(EngineError):
    """An op raised inside the spawn's worker; the message is the worker's error."""

    type = "op_failed"


class WorkerDied(EngineError):
    """The spawn's worker process exited; the spawn is gone."""

    type = "worker_died"


class EngineInternalError(EngineError):
    """A bug in the engine; the message points at the engine log."""

    type = "internal"


class StructuredOutputError(GalleyError):
    """The model's completion did not parse as the requested pydantic model after all retries."""

    def __init__(self, message: str, completion: str, errors: list[str]):
        super().__init__(message)
        self.completion = completion
        self.errors = errors


class DryRunStop(BaseException):  # noqa: N818 - a control-flow signal, not an error
    """Stops a recipe at its first compute call under ``galley.run --dry-run``.

    It derives from BaseException so that a recipe's ``except Exception`` does not swallow it.
    """


_ERROR_CLASSES: dict[str, type[EngineError]] = {
    cls.type: cls
    for cls in (
        InvalidRequest,
        NotFound,
        SpawnRefused,
        ModelLoadError,
        OpFailed,
        WorkerDied,
        EngineInternalError,
    )
}


def error_from_wire(error_type: str, message: str, data: dict[str, Any] | None) -> EngineError:
    """Build the exception for an engine error body; unknown types become a plain EngineError."""
    if error_type == "not_found" and data and "known_keys" in data:
        return ModelNotFound(message, data)
    cls = _ERROR_CLASSES.get(error_type)
    if cls is None:
        return EngineError(message, data, type=error_type)
    return cls(message, data)
