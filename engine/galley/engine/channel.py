"""Messages between the engine and a worker: one JSON object per line on a socket.

The engine creates a socket pair, keeps one end and passes the other to the worker process
(its file descriptor number is in ``GALLEY_WORKER_FD``). Nothing else can connect to it.

Engine -> worker:
    the LoadSpec (first message), then ``{"id", "op", "args", "view"}`` requests and
    ``{"op": "shutdown"}``.
Worker -> engine:
    ``{"event": "ready", "pid", "memory", "info"}`` or ``{"event": "load_failed", "error"}``
    once, then ``{"id", "result" | "error", "memory"}`` replies in any order.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

WORKER_FD_ENV = "GALLEY_WORKER_FD"


class Channel:
    """The worker's end: blocking reads on one thread, sends from any thread."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.send_lock = threading.Lock()

    def read(self) -> dict[str, Any] | None:
        """Return the next message, or None when the engine closed its end."""
        try:
            line = self.reader.readline()
        except OSError:
            return None
        return json.loads(line) if line else None

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        with self.send_lock:
            self.sock.sendall(data)
