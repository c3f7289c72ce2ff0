"""The sandbox's request log: every Exchange cmdlet and Graph call its HTTP side received, and whether it writes.

Read through `Sandbox.requests` (public): tests prove with it what a client sent (a dry run sends no write), and
the demo and benchmarks count with it. Entries are kept in order, up to `limit` (the oldest go first); the
counts cover every request since the start (or the last `clear()`).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class LoggedRequest:
    service: str  # "exchange" | "graph"
    operation: str  # the cmdlet (Exchange) or "METHOD /relative/path" (Graph)
    write: bool  # a cmdlet other than Get-*/Test-*, or a Graph call other than GET (a $batch of GETs reads)


class RequestLog:
    def __init__(self, limit: int = 200_000) -> None:
        self._entries: deque[LoggedRequest] = deque(maxlen=limit)
        self._counts: Counter = Counter()
        self._lock = threading.Lock()

    def record(self, service: str, operation: str, *, write: bool) -> None:
        entry = LoggedRequest(service, operation, write)
        with self._lock:
            self._entries.append(entry)
            self._counts["write" if write else "read"] += 1

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def writes(self) -> list[LoggedRequest]:
        return [e for e in self.entries() if e.write]

    def counts(self) -> dict[str, int]:
        """{"read": n, "write": n} since the start or the last clear()."""
        with self._lock:
            return {"read": self._counts["read"], "write": self._counts["write"]}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._counts.clear()


__all__ = ["LoggedRequest", "RequestLog"]
