"""What the apps' existing RBAC for Applications assignments mean for the plan (pure: the inventory in, a verdict per
app out).

An app's current SMTP reach is its legacy reach (SendAs, and FullAccess while it holds SMTP.SendAsApp) together with
what its existing assignments of the plan's role reach (inventory/rbac.py). The plan never removes access and never
guesses, so per app holding such an assignment:

- covered: the assignments reach exactly its legacy set. Nothing is created: its legacy grants are removed after the
  executor has verified the existing assignment (the same verify step as a new one), the cut-over and the token wait.
- partial: they reach part of it. Only the rest is covered by new groups/scopes and one new assignment; the existing
  ones stay as they are (reused), so the app never holds a duplicate assignment.
- beyond: they reach a mailbox its legacy grants do not. Moving it would either keep that extra reach (and the
  cut-over would make it usable: an over-grant) or remove it (the planner never removes access): left as it is,
  reported.
- unknown: an assignment whose reach cannot be told exactly (inventory/rbac.py). Left as it is, reported: never a
  guess.
- rbac_only: no legacy SMTP reach at all (already migrated): nothing to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from migrator.inventory.rbac import UNKNOWN, RbacAssignment

COVERED, PARTIAL, BEYOND, UNKNOWN_REACH, RBAC_ONLY = "covered", "partial", "beyond", "unknown", "rbac_only"
PLANNED = frozenset({COVERED, PARTIAL})  # statuses whose app the plan migrates (building on what exists)
LEFT = frozenset({BEYOND, UNKNOWN_REACH})  # statuses whose app the plan leaves as it is


@dataclass(frozen=True)
class AppRbac:
    app_id: str
    status: str  # COVERED | PARTIAL | BEYOND | UNKNOWN_REACH | RBAC_ONLY
    reach: frozenset[str]  # what its existing assignments of the role reach (empty when unknown)
    assignments: tuple[RbacAssignment, ...]  # those assignments, by name
    note: str  # the verdict in words, for plan.json, existing.csv and `migrator plan`


def classify(rbac: tuple[RbacAssignment, ...], role: str, legacy: Mapping[str, frozenset[str]]) -> dict[str, AppRbac]:
    """app id -> AppRbac, for every app holding at least one assignment of `role`. `legacy`: each app's legacy SMTP
    reach (the planner's app sets)."""
    by_app: dict[str, list[RbacAssignment]] = {}
    for a in rbac:
        if a.serves(role):
            by_app.setdefault(a.app_id, []).append(a)
    out: dict[str, AppRbac] = {}
    for app, rows in sorted(by_app.items()):
        rows.sort(key=lambda a: a.name.lower())
        names = ", ".join(repr(a.name) for a in rows)
        have = legacy.get(app, frozenset())
        unknown = [a for a in rows if a.reach == UNKNOWN]
        if unknown:
            a = unknown[0]
            out[app] = AppRbac(app, UNKNOWN_REACH, frozenset(), tuple(rows),
                               f"left as it is: the reach of existing assignment {a.name!r} cannot be told exactly "
                               f"({a.note or 'unknown'}); check it by hand, then re-plan")
            continue
        reach = frozenset().union(*(a.mailboxes for a in rows))
        if not have:
            out[app] = AppRbac(app, RBAC_ONLY, reach, tuple(rows),
                               f"nothing to do: no legacy SMTP reach; {role} through {names} "
                               f"({len(reach)} mailbox(es))")
        elif reach - have:
            extra = sorted(reach - have)
            out[app] = AppRbac(app, BEYOND, reach, tuple(rows),
                               f"left as it is: existing {names} reach(es) {len(extra)} mailbox(es) its legacy grants "
                               f"do not (e.g. {', '.join(extra[:3])}); migrating it would over-grant or remove access")
        elif reach == have:
            out[app] = AppRbac(app, COVERED, reach, tuple(rows),
                               f"already served by {names}: nothing created; legacy grants removed after verification")
        else:
            out[app] = AppRbac(app, PARTIAL, reach, tuple(rows),
                               f"{len(reach)} of {len(have)} mailbox(es) already served by {names} (kept); the "
                               f"other {len(have - reach)} get a new assignment")
    return out
