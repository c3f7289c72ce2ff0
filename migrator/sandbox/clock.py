"""Time for the sandbox: the real clock for a served tenant, a manual one for tests (no sleeping)."""

from __future__ import annotations

import threading
import time


class Clock:
    """Seconds since the epoch. `Clock()` follows real time; `Clock.manual(start)` moves only by `advance()`."""

    def __init__(self, *, manual: bool = False, start: float | None = None) -> None:
        self._manual = manual
        self._lock = threading.Lock()
        # A real clock may still be shifted forward (advance) so a rehearsal can skip a propagation wait.
        self._offset = 0.0
        self._now = float(start if start is not None else time.time())

    @classmethod
    def manual(cls, start: float = 1_767_225_600.0) -> Clock:  # 2026-01-01T00:00:00Z
        return cls(manual=True, start=start)

    @classmethod
    def real(cls) -> Clock:
        return cls()

    @property
    def is_manual(self) -> bool:
        return self._manual

    def now(self) -> float:
        if self._manual:
            with self._lock:
                return self._now
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move time forward (never back); returns the new now()."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            if self._manual:
                self._now += seconds
            else:
                self._offset += seconds
        return self.now()

    def sleep(self, seconds: float) -> None:
        """A time.sleep stand-in for the tool under test: time passes at once, nothing waits."""
        self.advance(seconds)
