"""Token counters for telemetry: a running total and a rate over a recent window."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class ThroughputMeter:
    """Counts generated tokens; thread-safe, so telemetry can read while the compute thread records."""

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        if window_s <= 0:
            raise ValueError(f"window_s={window_s} is invalid; use a positive number of seconds")
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._events: deque[tuple[float, int]] = deque()  # (time, tokens)
        self._total = 0

    def record(self, tokens: int) -> None:
        now = self._clock()
        with self._lock:
            self._total += tokens
            self._events.append((now, tokens))
            self._drop_before(now - self.window_s)

    @property
    def total(self) -> int:
        with self._lock:
            return self._total

    def tokens_per_second(self) -> float:
        """Tokens recorded in the last ``window_s`` seconds, divided by the window.

        Dividing by the whole window, not by the span of the events in it, makes the rate
        fall to zero while nothing is generated.
        """
        now = self._clock()
        with self._lock:
            self._drop_before(now - self.window_s)
            return sum(tokens for _, tokens in self._events) / self.window_s

    def _drop_before(self, cutoff: float) -> None:
        while self._events and self._events[0][0] < cutoff:
            self._events.popleft()
