"""Split the migrating apps into batches: a pilot first, then waves. An app is never split across batches.

Order is "smallest blast radius first": an app that can send as fewer mailboxes, then one that needs fewer new
groups, goes earlier (ties by app id, for determinism). The pilot takes the first `pilot` apps so a mistake
found there touches as little as possible; the waves follow in the same order, `batch_size` apps each, so
confidence grows with each wave before the largest apps move. A group or scope is created in the first batch
that needs it (build.py derives that from these batches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from migrator.errors import InputError


@dataclass(frozen=True)
class AppRadius:
    app_id: str
    mailboxes: int  # SendAs mailboxes the app migrates
    new_groups: int  # groups the plan must create for this app


def blast_order(apps: Sequence[AppRadius]) -> list[str]:
    return [a.app_id for a in sorted(apps, key=lambda a: (a.mailboxes, a.new_groups, a.app_id))]


def make_batches(apps: Sequence[AppRadius], *, pilot: int, batch_size: int) -> list[tuple[str, ...]]:
    """App ids per batch, in batch order; the first holds the pilot when `pilot` > 0."""
    if pilot < 0:
        raise InputError("must be 0 or more", field="--pilot", value=str(pilot))
    if batch_size < 1:
        raise InputError("must be 1 or more", field="--batch-size", value=str(batch_size))
    order = blast_order(apps)
    batches: list[tuple[str, ...]] = []
    if pilot and order:
        batches.append(tuple(order[:pilot]))
        order = order[pilot:]
    for start in range(0, len(order), batch_size):
        batches.append(tuple(order[start:start + batch_size]))
    return batches


def first_batch(batches: Sequence[Sequence[str]], uses: Mapping[str, Sequence[object]]) -> dict[object, int]:
    """For every object some app uses: the number (1-based) of the first batch with an app that uses it."""
    first: dict[object, int] = {}
    for number, apps in enumerate(batches, start=1):
        for app in apps:
            for obj in uses.get(app, ()):
                first.setdefault(obj, number)
    return first
