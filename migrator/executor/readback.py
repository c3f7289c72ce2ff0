"""Reading back the tool's own writes (docs/exchange.md §2, "Read-after-write lag").

Exchange Online answers a Get-* from whichever domain controller or replica serves the request, and Graph replicates
app-role assignments: right after a write, a read may still show the state from before it. So a read-back of a
write this run (or a crashed earlier run) made reads again, bounded, until the write shows. A lagging read is never
taken as drift, as "absent", or as a reason for a write that would change the outcome (the writes the steps repeat
on a stale read are idempotent: a create answered "already exists", a removal answered "not there", a membership
replaced by the same list).

The wait is bounded by `replication_timeout` (default 900 s): the first look again after 1 s, then backing off to
`replication_poll`. When the time runs out, the item fails with a message naming what is still not visible: the
batch stops resumable (exit 11), nothing more is written for that item, and the next run reads again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TypeVar

from migrator.errors import MigratorError

T = TypeVar("T")


class NotVisible(MigratorError):
    """A write of this tool not visible to reads within replication_timeout (the item fails; resumable)."""


def first_pause(ctx) -> float:
    """Replication lag is often a second or two: look again soon, then back off to replication_poll."""
    return min(1.0, ctx.settings.replication_poll)


def settle(ctx, read: Callable[[], T], left: Callable[[T], Collection]) -> tuple[T, Collection]:
    """Read until `left(value)` (what the reads do not show yet) is empty, or replication_timeout has passed.
    Returns the last value read and what was still not shown. A failed read raises at once (never "absent").
    A dry run reads once: it wrote nothing to wait for."""
    deadline = ctx.now() + ctx.settings.replication_timeout
    pause = first_pause(ctx)
    while True:
        value = read()
        rest = left(value)
        if not rest or ctx.dry_run or ctx.now() >= deadline:
            return value, rest
        ctx.control.check()
        ctx.sleep(pause)
        pause = min(pause * 2, ctx.settings.replication_poll)


def await_read(ctx, read: Callable[[], T], problem: Callable[[T], str | None], what: str) -> T:
    """Read until `problem(value)` is None; NotVisible (naming `what` and the problem) when the time runs out."""
    value, rest = settle(ctx, read, lambda v: [p] if (p := problem(v)) else [])
    if rest:
        raise NotVisible(f"{what}: {next(iter(rest))} {ctx.settings.replication_timeout:g} s after the write "
                         "(reads lag behind writes; nothing more was written: run the same command again to resume)")
    return value
