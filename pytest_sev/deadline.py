"""A deadline object instead of ``started + timeout - time.monotonic()`` by hand.

Why: a wait made of several steps (a boot menu, a login, a shell prompt) must
share one budget, and each step's error must say how long it really waited.
Arithmetic repeated at every call site drifts (one forgets the floor, another
uses wall-clock time); one small type gets it right once, in the spirit of
labgrid's ``util/timeout.py``.
"""

from __future__ import annotations

import math
import time


class Deadline:
    """A point in monotonic time, ``seconds`` from when it was made."""

    def __init__(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a deadline needs a finite, non-negative number of seconds, not {seconds!r}")
        self.seconds = float(seconds)
        self.started = time.monotonic()
        self.end = self.started + self.seconds

    def remaining(self, floor: float = 0.0) -> float:
        """Seconds left, never below *floor* (a last short chance to answer)."""
        return max(floor, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __repr__(self) -> str:
        return f"Deadline({self.seconds:g}s, {self.remaining():.1f}s left)"
