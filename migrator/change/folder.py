"""A change (incremental.Change) as a plan folder in `migrator plan`'s shape, so a person reviews it the same way
and the executor applies it with the same journal (docs/design.md §8).

The folder holds the app's RBAC setup *after* the change: groups.csv/memberships.csv the groups its scopes name
(existing ones `reuse`, with their DN and members after the change; new ones `new`), scopes.csv and
assignments.csv its scopes and assignments (existing and new), grants.csv its SMTP reach after the change, one
`SendAs` row per mailbox with reason `granted by this change` or `reached before, kept` (they are *not* legacy
grants: the change removes none), batches.csv one batch holding the app. `load_plan` checks that this is exact.
plan.json's `change` section lists the operations (members added/removed, the objects created, the assignments
removed after the propagation wait, the old scopes removed last) and the `before` state the drift check compares
the tenant with.
"""

from __future__ import annotations

import datetime as _dt

from migrator.change.incremental import GRANT, Change, before_state, simulate
from migrator.change.setup import Setup
from migrator.model import RBAC_ROLE_SMTP_SEND_AS
from migrator.planner.plan import (
    FORMAT,
    MIGRATE,
    NEW,
    REUSE,
    Plan,
    PlanAssignment,
    PlanBatch,
    PlanGrant,
    PlanGroup,
    PlanScope,
    render_filter,
    scope_kind,
)


def change_plan(setup: Setup, change: Change, *, created: str | None = None, source: str = "") -> Plan:
    after = simulate(setup, change)
    app = change.app_id
    new_scope_names = {s.name.lower() for s in change.new_scopes}
    new_assignment_names = {a.name.lower() for a in change.new_assignments}
    target = after.app_assignments(app)
    group_keys: dict[str, str] = {}  # lower name (existing) or "\x00N1" (new) -> G0001
    groups: list[PlanGroup] = []
    named = {g for a in target for g in after.scope_groups(a.scope)}
    for name in sorted(named, key=lambda g: (g.startswith("\x00"), g)):
        state = after.groups[name]
        if not state.members:
            continue  # emptied by this revoke: no scope term needs it any more in the plan's own check
        key = f"G{len(groups) + 1:04d}"
        group_keys[name] = key
        new = name.startswith("\x00")
        users = {a.app_id for a in after.assignments.values() if name in after.scope_groups(a.scope)}
        groups.append(PlanGroup(key, state.name, NEW if new else REUSE, "" if new else state.dn, state.members,
                                alias=state.name if new else "", batch=1, apps=len(users)))
    by_key = {g.key: g for g in groups}
    scopes: list[PlanScope] = []
    scope_keys: dict[str, str] = {}
    assignments: list[PlanAssignment] = []
    for a in target:
        if a.scope not in scope_keys:
            keys = tuple(group_keys[g] for g in after.scope_groups(a.scope) if g in group_keys)
            if not keys:
                continue
            key = f"S{len(scopes) + 1:04d}"
            scope_keys[a.scope] = key
            scopes.append(PlanScope(key, after.scopes[a.scope].name, render_filter(keys, (), by_key), keys,
                                    scope_kind(keys, ()), batch=1,
                                    note="new" if a.scope in new_scope_names else "existing, unchanged"))
        assignments.append(PlanAssignment(f"A{len(assignments) + 1:05d}", app, change.app_name,
                                          RBAC_ROLE_SMTP_SEND_AS, scope_keys[a.scope], 1, a.name))
    reach = after.rbac_reach(app)
    added = set(change.effective) if change.kind == GRANT else set()
    grants = tuple(PlanGrant(app, change.app_name, m, "SendAs", MIGRATE,
                             "granted by this change" if m in added else "reached before, kept", 1)
                   for m in sorted(reach))
    batch = PlanBatch(1, (app,), len(grants), note=f"{change.kind}: {len(change.effective)} mailbox(es)",
                      mailboxes=len(reach), new_groups=len(change.new_groups), scopes=len(change.new_scopes),
                      assignments=len(change.new_assignments))
    section = {
        "kind": change.kind, "app_id": app, "app_name": change.app_name, "strategy": change.strategy,
        "requested": list(change.requested), "effective": list(change.effective),
        "unchanged": list(change.unchanged), "notes": list(change.notes),
        "member_adds": [[g, m] for g, m in change.member_adds],
        "member_removes": [[g, m] for g, m in change.member_removes],
        "group_keys": {("new:" + k[1:] if k.startswith("\x00") else k): v for k, v in group_keys.items()},
        "new_groups": [group_keys[f"\x00{n.key}"] for n in change.new_groups if f"\x00{n.key}" in group_keys],
        "new_scopes": [scope_keys[s] for s in sorted(new_scope_names) if s in scope_keys],
        "new_assignments": [a.key for a in assignments if a.name.lower() in new_assignment_names],
        "new_assignment_names": sorted(a.name for a in change.new_assignments),
        "removed_assignments": list(change.removed_assignments),
        "removed_assignment_names": [setup.assignments[k].name for k in change.removed_assignments],
        "removed_scopes": list(change.removed_scopes),
        "removed_scope_names": [setup.scopes[k].name for k in change.removed_scopes],
        "before": before_state(setup, change),
    }
    meta = {"format": FORMAT, "created": created or _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": {"kind": "tenant", "path": source, "sha256": ""}, "role": RBAC_ROLE_SMTP_SEND_AS,
            "options": {"command": change.kind}, "change": section}
    return Plan(meta, grants, tuple(groups), tuple(scopes), tuple(assignments), (batch,))


def is_change(plan) -> bool:
    return isinstance(plan.meta.get("change"), dict)
