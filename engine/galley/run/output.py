"""Keeping the recipe's stdout and stderr in the order it wrote them.

A reader of two pipes (the run manager reads stdout and stderr separately) cannot tell which
of two writes came first, and Python block-buffers stdout on a pipe, so a ``print`` before a
traceback can arrive after it. The runner therefore replaces ``sys.stdout`` and
``sys.stderr`` with streams that feed one ``OrderedOutput``: it passes on whole lines as they
are written, and passes on a partial line before the other stream writes, on ``flush()``
and at exit. With ``GALLEY_EVENTS_FD`` each piece becomes a record
``{"type": "output", "stream": "stdout"|"stderr", "text": ...}`` on the events pipe, in
order with the run events. Without it, pieces go to the original streams, flushed.

NOTE: only writes through ``sys.stdout``/``sys.stderr`` are ordered. Output that C code or a
child process writes to file descriptors 1 and 2 still reaches the original pipes, so the run
manager may store it out of order with the rest.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from galley.sdk.events import EventSink, JsonLinesSink

StreamName = str  # "stdout" or "stderr"
Deliver = Callable[[StreamName, str], None]


class OrderedOutput:
    """Serializes the writes of both streams; each piece is delivered in the order written."""

    def __init__(self, deliver: Deliver):
        self._deliver = deliver
        # Reentrant, because delivering can log or print, which writes here again.
        self._lock = threading.RLock()
        self._pending_stream: StreamName | None = None
        self._pending: list[str] = []

    def write(self, stream: StreamName, text: str) -> None:
        if not text:
            return
        with self._lock:
            if self._pending_stream != stream:
                self._flush_locked()
                self._pending_stream = stream
            self._pending.append(text)
            if "\n" in text:
                self._deliver_complete_lines()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Flush pending output and keep other writers out while the caller writes elsewhere."""
        with self._lock:
            self._flush_locked()
            yield

    def _deliver_complete_lines(self) -> None:
        text = "".join(self._pending)
        end = text.rfind("\n") + 1
        self._pending = [text[end:]] if end < len(text) else []
        self._deliver(self._pending_stream or "stdout", text[:end])

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending = []
        self._deliver(self._pending_stream or "stdout", text)


class OrderedStream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of a recipe: a text stream that writes into an OrderedOutput."""

    def __init__(self, output: OrderedOutput, name: StreamName, original: TextIO):
        super().__init__()
        self._output = output
        self._name = name
        self._original = original

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return "backslashreplace"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._output.write(self._name, text)
        return len(text)

    def flush(self) -> None:
        self._output.flush()

    def isatty(self) -> bool:
        return self._original.isatty()

    def fileno(self) -> int:
        # Code that writes to the descriptor itself (faulthandler, subprocess) reaches the
        # original pipe, unordered.
        return self._original.fileno()


class OrderedSink:
    """An event sink that flushes pending output first, so events stay in order with the output."""

    def __init__(self, inner: EventSink, output: OrderedOutput):
        self._inner = inner
        self._output = output

    def emit(self, event: dict[str, Any]) -> None:
        with self._output.holding():
            self._inner.emit(event)


def _to_original_streams(originals: dict[StreamName, TextIO]) -> Deliver:
    def deliver(stream: StreamName, text: str) -> None:
        target = originals[stream]
        target.write(text)
        target.flush()

    return deliver


@contextmanager
def ordered_output(events: EventSink) -> Iterator[EventSink]:
    """Route ``sys.stdout`` and ``sys.stderr`` through one OrderedOutput while the block runs.

    Yields the event sink the recipe should use. On exit, pending output is flushed and the
    original streams are restored.
    """
    originals: dict[StreamName, TextIO] = {"stdout": sys.stdout, "stderr": sys.stderr}
    if isinstance(events, JsonLinesSink):
        deliver: Deliver = events.emit_output
    else:
        deliver = _to_original_streams(originals)
    output = OrderedOutput(deliver)
    sys.stdout = OrderedStream(output, "stdout", originals["stdout"])
    sys.stderr = OrderedStream(output, "stderr", originals["stderr"])
    try:
        yield OrderedSink(events, output)
    finally:
        output.flush()
        sys.stdout, sys.stderr = originals["stdout"], originals["stderr"]
