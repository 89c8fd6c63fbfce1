"""Errors the runner reports as ``error: FILE:LINE: message`` (docs/contracts.md)."""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


@dataclass
class LoadFailure(Exception):
    """The recipe or its config could not be loaded; nothing of the recipe ran (exit code 2).

    ``details`` are printed before the final error line: a source excerpt with a caret, or
    one line per config problem.
    """

    file: str
    line: int
    message: str
    details: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return error_line(self.file, self.line, self.message)


def error_line(file: str, line: int, message: str) -> str:
    """Format the one-line error that the control plane parses; newlines become spaces."""
    flat = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    return f"error: {file}:{line}: {flat}"


def report(failure: LoadFailure) -> None:
    for detail in failure.details:
        print(detail, file=sys.stderr)
    print(str(failure), file=sys.stderr, flush=True)


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def deepest_line_in(tb: TracebackType | None, path: str) -> int | None:
    """Return the line of the innermost traceback frame that runs code of the file ``path``."""
    line = None
    for frame in traceback.extract_tb(tb):
        if frame.filename and same_file(frame.filename, path):
            line = frame.lineno
    return line


def deepest_line_in_stack(stack: traceback.StackSummary, path: str) -> int | None:
    """Return the line of the innermost frame of ``stack`` that runs code of the file ``path``."""
    for frame in reversed(stack):
        if frame.filename and same_file(frame.filename, path):
            return frame.lineno
    return None


def describe_exception(error: BaseException) -> str:
    """Return ``Type: message`` for an error line, with a fallback for empty messages."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def traceback_from(error: BaseException, file: str | Path) -> list[str]:
    """Format the traceback from the first frame of ``file`` on, leaving out the runner's frames."""
    summary = traceback.TracebackException.from_exception(error)
    frames = list(summary.stack)
    start = next((i for i, frame in enumerate(frames) if same_file(frame.filename, str(file))), 0)
    summary.stack = traceback.StackSummary.from_list(frames[start:])
    return "".join(summary.format()).rstrip("\n").splitlines()
