"""Run events (stages, progress, metrics, artifacts, errors, spawns) for the control plane.

With ``GALLEY_EVENTS_FD`` set (the run manager passes a pipe), each event is one JSON object
per line on that file descriptor. docs/contracts.md lists the event types. Without it, as in
a plain terminal, events are printed as readable lines on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, Protocol, TextIO

EVENTS_FD_ENV = "GALLEY_EVENTS_FD"


class EventSink(Protocol):
    def emit(self, event: dict[str, Any]) -> None: ...


class JsonLinesSink:
    """Writes one JSON object per line to a stream, flushing after each.

    Besides events, it carries the recipe's output as ``{"type": "output", "stream", "text"}``
    records (see ``galley.run.output``), so that output and events arrive in one order.
    """

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._lock = threading.Lock()
        self._broken = False

    def emit(self, event: dict[str, Any]) -> None:
        if not self._write_record(event):
            # The original stderr, not sys.stderr, which the runner may route back here.
            StderrSink(sys.__stderr__).emit(event)

    def emit_output(self, stream: str, text: str) -> None:
        """Write a piece of the recipe's stdout or stderr as an output record."""
        if self._write_record({"type": "output", "stream": stream, "text": text}):
            return
        original = sys.__stdout__ if stream == "stdout" else sys.__stderr__
        if original is not None:
            original.write(text)
            original.flush()

    def _write_record(self, record: dict[str, Any]) -> bool:
        """Write one line; return False once the reader is gone, so the caller falls back to stderr."""
        line = json.dumps(record, allow_nan=False) + "\n"
        with self._lock:
            if self._broken:
                return False
            try:
                self._stream.write(line)
                self._stream.flush()
                return True
            except (BrokenPipeError, OSError) as error:
                # The reader (the control plane) went away; keep the recipe running and
                # keep its events and output visible on stderr instead.
                self._broken = True
                failure = error
        if sys.__stderr__ is not None:
            print(
                f"galley: cannot write run events ({failure}); printing them on stderr", file=sys.__stderr__
            )
        return False


class StderrSink:
    """Prints events as readable lines on stderr."""

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream

    def emit(self, event: dict[str, Any]) -> None:
        stream = self._stream or sys.stderr
        print(f"[galley] {format_event(event)}", file=stream, flush=True)


def format_event(event: dict[str, Any]) -> str:
    """Render one event as a line for a terminal."""
    kind = event.get("type")
    if kind == "stages":
        return "stages: " + ", ".join(event["stages"])
    if kind == "progress":
        total, done = event["total"], event["done"]
        percent = f" ({100 * done / total:.0f}%)" if total else ""
        return f"progress {event['stage']}: {done}/{total}{percent}"
    if kind == "metric":
        step = "" if event.get("step") is None else f" step={event['step']}"
        return f"metric {event['name']}={event['value']:.6g}{step}"
    if kind == "artifact":
        return f"artifact {event['kind']} {event['name']}: {event['uri']}"
    if kind == "error":
        return f"error: {event['message']}"
    if kind == "spawn":
        return f"spawned {event['kind']} model {event['name']!r} of {event['model_key']}"
    return json.dumps(event)


def sink_from_environment() -> EventSink:
    """Return the sink that ``GALLEY_EVENTS_FD`` selects, or a stderr sink without it.

    Raises ValueError when the variable is set but names no open file descriptor.
    """
    raw = os.environ.get(EVENTS_FD_ENV, "").strip()
    if not raw:
        return StderrSink()
    try:
        fd = int(raw)
        stream = os.fdopen(fd, "w", encoding="utf-8", buffering=1, closefd=False)
    except (ValueError, OSError) as error:
        raise ValueError(
            f"{EVENTS_FD_ENV}={raw!r} is not an open file descriptor ({error}); "
            f"unset it to print events on stderr, or pass the number of a writable pipe"
        ) from None
    return JsonLinesSink(stream)


_default_sink: EventSink | None = None
_default_lock = threading.Lock()


def default_sink() -> EventSink:
    """Return the process-wide sink, created from the environment on first use."""
    global _default_sink
    with _default_lock:
        if _default_sink is None:
            _default_sink = sink_from_environment()
        return _default_sink


def set_default_sink(sink: EventSink | None) -> None:
    """Replace the process-wide sink (the runner sets it; None recreates it from the environment)."""
    global _default_sink
    with _default_lock:
        _default_sink = sink
