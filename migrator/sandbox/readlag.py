"""Read-after-write lag of the admin reads (Exchange's Get-* cmdlets, Graph's appRoleAssignments).

Exchange Online answers a read from whichever domain controller or replica serves the request, so right after a
write a Get-* may still return the previous state for a while; Graph replicates app-role assignments the same way.
The model: each write to an object draws a delay (seeded: `mean +/- jitter`, uniform, never below zero; one draw
per write, in request order, so a seed and a request sequence always give the same delays). Until it has elapsed
(on the sandbox clock, so tests fast-forward it), reads of that object show the state from before the write.
Writes to one object become visible in the order they were made (a later write is never visible before an
earlier one), so a read shows the state before the first write still hidden, or the live state once none is.

Only the admin reads lag. Writes always act on the live state (a New-* of an object a lagging read cannot see yet
still answers "already exists"), and the data plane and the timeline checker follow the live state.

Objects (kind, key): ("sendas", mailbox guid) and ("fullaccess", mailbox guid): the mailbox's permission rows;
("scope", lower name); ("assignment", lower name); ("group", guid): the group with its members; ("pointer",
app id): the Exchange service-principal pointer; ("app_roles", principal SP object id): its app-role assignments;
("policy", lower Identity): an Application Access Policy's Get-ApplicationAccessPolicy row.
The snapshot kept for each is whatever the reading cmdlet needs (a copy, or None for "did not exist").
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stale:
    """What a lagging read sees of one object: `before`, the snapshot taken before its first hidden write."""

    before: Any  # a snapshot whose type depends on the kind of object


class ReadLag:
    """Pending (not yet visible) writes per object. Inactive (every read is live) until configured."""

    def __init__(self, now: Callable[[], float], *, mean: float = 0.0, jitter: float = 0.0, seed: int = 0) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, object], list[tuple[float, object]]] = {}
        self.configure(mean, jitter, seed)

    def configure(self, mean: float, jitter: float = 0.0, seed: int = 0) -> None:
        if mean < 0 or jitter < 0:
            raise ValueError("read lag and its jitter must not be negative")
        with self._lock:
            self.mean, self.jitter = float(mean), float(jitter)
            # Its own generator: the fault injector's draws (and so every other seeded fault) stay as they were.
            self._rng = random.Random(f"read-lag-{seed}")
            self.writes = 0  # lagged writes recorded (for tests and the debug endpoint)

    @property
    def active(self) -> bool:
        return self.mean > 0 or self.jitter > 0

    def _delay(self) -> float:
        u = self._rng.random()
        return max(0.0, self.mean + (2 * u - 1) * self.jitter)

    def wrote(self, kind: str, key: object, before: object) -> None:
        """A write to (kind, key) is about to change it; `before` is what reads show until it is visible."""
        if not self.active:
            return
        with self._lock:
            now = self._now()
            entries = self._pending.setdefault((kind, key), [])
            visible_at = now + self._delay()
            if entries:
                visible_at = max(visible_at, entries[-1][0])  # never visible before an earlier write
            entries.append((visible_at, before))
            self.writes += 1

    def stale(self, kind: str, key: object) -> Stale | None:
        """The snapshot a read of (kind, key) shows now, or None: the read sees the live state."""
        if not self._pending:
            return None
        with self._lock:
            entries = self._pending.get((kind, key))
            if not entries:
                return None
            now = self._now()
            while entries and entries[0][0] <= now:
                entries.pop(0)
            if not entries:
                del self._pending[(kind, key)]
                return None
            return Stale(entries[0][1])

    def stale_of(self, kind: str) -> dict[Any, Any]:
        """key -> snapshot, for every object of `kind` whose reads are stale now (scans substitute these)."""
        if not self._pending:
            return {}
        with self._lock:
            keys = [k for (kd, k) in self._pending if kd == kind]
        out = {}
        for key in keys:
            hit = self.stale(kind, key)
            if hit is not None:
                out[key] = hit.before
        return out

    def any_stale(self, *kinds: str) -> bool:
        return any(self.stale_of(kind) for kind in kinds)

    def visible_by(self) -> float | None:
        """When every write made so far is visible (None: none is pending)."""
        with self._lock:
            times = [e[-1][0] for e in self._pending.values() if e]
        return max(times) if times else None
