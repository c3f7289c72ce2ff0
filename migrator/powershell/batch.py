"""The slice of a plan that one batch touches: its apps, groups, scopes, assignments and legacy grants.

Shared by the PowerShell export and the report, so both show the same objects for a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrator.errors import PlanError
from migrator.model import Right
from migrator.planner import opath
from migrator.planner.plan import MIGRATE, NEW, REUSE


@dataclass(frozen=True)
class BatchSlice:
    number: int
    note: str
    apps: tuple[tuple[str, str], ...]          # (app_id, app_name), sorted by name then id
    groups: tuple                              # PlanGroup, in key order
    scopes: tuple                              # PlanScope, in key order
    assignments: tuple                         # PlanAssignment, in key order
    sendas: tuple[tuple[str, str], ...]        # (app_id, mailbox) legacy SendAs grants migrated in this batch
    expected: dict                             # app_id -> sorted mailboxes it must reach through RBAC
    probes: dict                               # app_id -> sorted mailboxes (of the plan) it must NOT reach
    kept: int                                  # grants of the batch's apps the plan keeps (e.g. FullAccess)
    existing: tuple = ()                       # PlanExisting the batch reuses (existing.csv, action reuse)


def split_filter(template: str) -> list[str | tuple[str, str]]:
    """Split a scope filter into OPATH text and ("dn", group key) parts, the DN going where the placeholder's
    quoted value was (between the OPATH quotes). Placeholders are found as planner/opath.py finds them: a whole
    quoted value after `MemberOfGroup -eq`, so an attribute value that merely contains `{dn:...}` stays text."""
    if "\x00" in template:
        raise ValueError("a scope filter cannot contain a NUL character")
    keys = opath.placeholders(template)
    if not keys:
        return [template] if template else []
    marks = {key: f"\x00{i}\x00" for i, key in enumerate(dict.fromkeys(keys))}
    filled = opath.fill_dns(template, marks)  # each placeholder becomes '<mark>' (a mark has no quote to double)
    by_mark = {mark.strip("\x00"): key for key, mark in marks.items()}
    parts: list[str | tuple[str, str]] = []
    for i, piece in enumerate(filled.split("\x00")):
        if i % 2:
            parts.append(("dn", by_mark[piece]))
        elif piece:
            parts.append(piece)
    return parts


def filter_group_keys(template: str) -> list[str]:
    return opath.placeholders(template)


def batch_numbers(plan) -> list[int]:
    return sorted({b.number for b in plan.batches})


def batch_slice(plan, number: int, *, probes_per_app: int = 3) -> BatchSlice:
    """Everything batch `number` creates, checks and removes. PlanError when the plan cannot support it."""
    where = str(plan.path)
    batch = next((b for b in plan.batches if b.number == number), None)
    if batch is None:
        raise PlanError(f"no batch {number}; the plan has batches {batch_numbers(plan) or 'none'}",
                        path=where, field="batch", value=str(number))
    names: dict[str, str] = {}
    for g in plan.grants:
        names.setdefault(g.app_id, g.app_name)
    for a in plan.assignments:
        names.setdefault(a.app_id, a.app_name)
    app_ids = set(batch.apps) | {a.app_id for a in plan.assignments if a.batch == number}
    for app_id in app_ids:
        if not app_id.strip():
            raise PlanError("empty app id", path=where, field="app_id", value=app_id)
    apps = tuple(sorted(((a, names.get(a, "")) for a in app_ids), key=lambda x: (x[1].lower(), x[0])))

    assignments = tuple(sorted((a for a in plan.assignments if a.batch == number), key=lambda a: a.key))
    scopes_by_key = {s.key: s for s in plan.scopes}
    groups_by_key = {g.key: g for g in plan.groups}
    scope_keys: list[str] = []
    for a in assignments:
        if not (a.name or "").strip():
            raise PlanError("role assignment without a name", path=where, field="assignment", value=a.key)
        if a.scope not in scopes_by_key:
            raise PlanError("assignment names an unknown scope", path=where, field="scope", value=a.scope)
        if a.scope not in scope_keys:
            scope_keys.append(a.scope)
    scopes = tuple(sorted((scopes_by_key[k] for k in scope_keys), key=lambda s: s.key))
    group_keys: set[str] = set()
    for s in scopes:
        if not (s.name or "").strip():
            raise PlanError("management scope without a name", path=where, field="scope", value=s.key)
        for key in (*s.groups, *filter_group_keys(s.filter)):
            if key not in groups_by_key:
                raise PlanError("scope names an unknown group", path=where, field="groups", value=key)
            group_keys.add(key)
    groups = tuple(groups_by_key[k] for k in sorted(group_keys))
    for g in groups:
        if not ((g.address or "").strip() or (g.alias or "").strip() or (g.name or "").strip()):
            raise PlanError("group without a name, alias or address", path=where, field="group", value=g.key)
        if g.status == NEW and not (g.name or "").strip():
            raise PlanError("new group without a name", path=where, field="name", value=g.key)
        if g.status not in (NEW, REUSE):
            raise PlanError("group status must be 'new' or 'reuse'", path=where, field="status", value=g.status)

    sendas = tuple(sorted({(g.app_id, g.mailbox) for g in plan.grants
                           if g.batch == number and g.action == MIGRATE and g.right == Right.SEND_AS}))
    removed_fullaccess = [g for g in plan.grants if g.batch == number and g.action == MIGRATE
                          and g.right == Right.FULL_ACCESS]
    if removed_fullaccess:
        raise PlanError("the plan removes FullAccess grants (--remove-fullaccess), which the PowerShell export does "
                        "not do; run this batch with `migrator execute`, or make the plan without that option",
                        path=where, field="batch", value=str(number))
    if any(m.batch == number for m in plan.mail_access):
        raise PlanError("the batch moves Graph/EWS access off Application Access Policies (the Entra consent, then "
                        "the policies, removed after a token wait), which the PowerShell export does not do; run this "
                        "batch with `migrator execute`", path=where, field="batch", value=str(number))
    kept = sum(1 for g in plan.grants if g.app_id in app_ids and g.action != MIGRATE)
    # What each app's scope must reach: its SMTP reach (SendAs, and FullAccess of an app holding SMTP.SendAsApp)
    expected: dict[str, list[str]] = {a: [] for a, _ in apps}
    for app_id, mailbox in sorted({(g.app_id, g.mailbox) for g in plan.grants if g.batch == number}):
        expected.setdefault(app_id, []).append(mailbox)

    held: dict[str, set[str]] = {}  # what the existing assignments the plan reuses reach (existing.csv)
    reused = tuple(e for e in getattr(plan, "existing", ()) if e.action == "reuse" and e.batch == number)
    for e in reused:
        held.setdefault(e.app_id, set()).update(e.members)
    _check_exact_reach(apps, assignments, scopes_by_key, groups_by_key, expected, where, held)
    probes = _probes(plan, apps, groups, probes_per_app)
    return BatchSlice(number, batch.note or "", apps, groups, scopes, assignments, sendas,
                      {k: sorted(v) for k, v in expected.items()}, probes, kept, reused)


def _check_exact_reach(apps, assignments, scopes_by_key, groups_by_key, expected: dict[str, list[str]],
                       where: str, held: dict[str, set[str]] | None = None) -> None:
    """Exactness guard: the union of an app's groups must be its migrated mailboxes (attribute scopes aside, the
    plan holds no member list for them; load_plan checks those against the inventory)."""
    for app_id, _ in apps:
        mine = [scopes_by_key[a.scope] for a in assignments if a.app_id == app_id]
        if mine and all(s.groups or filter_group_keys(s.filter) for s in mine):
            reach: set[str] = set((held or {}).get(app_id, ()))  # existing assignments count, never re-made
            for s in mine:
                for key in set(s.groups) | set(filter_group_keys(s.filter)):
                    reach |= set(groups_by_key[key].members)
            if reach != set(expected.get(app_id, ())):
                extra = sorted(reach - set(expected.get(app_id, ())))[:3]
                missing = sorted(set(expected.get(app_id, ())) - reach)[:3]
                raise PlanError(f"plan is not exact for app {app_id}: groups reach {extra or 'no'} extra and miss "
                                f"{missing or 'no'} mailboxes", path=where, field="app_id", value=app_id)


def _probes(plan, apps, groups, probes_per_app: int) -> dict[str, list[str]]:
    """Out-of-set probes: mailboxes of the plan the app held no SendAs grant on (any batch, any action). Members
    of the batch's own groups come first: a scope bound to the wrong group would reach them."""
    near = sorted({m for g in groups for m in g.members})
    everyone = near + sorted({g.mailbox for g in plan.grants} - set(near))
    had: dict[str, set[str]] = {}
    for g in plan.grants:
        if g.right == Right.SEND_AS:
            had.setdefault(g.app_id, set()).add(g.mailbox)
    return {a: [m for m in everyone if m not in had.get(a, set())][:probes_per_app] for a, _ in apps}
