"""What the tenant should hold, according to applied plans and their journals (pure: no tenant call).

A batch whose journal says `done` is migrated: its apps reach exactly their planned mailboxes through their role
assignment and scope, hold no Entra `SMTP.SendAsApp` claim, and keep only the legacy grants the plan kept. Every
other batch (never run, rolled back) leaves its apps on their legacy grants, as the plan's inventory had them.
A batch half-way (waiting, failed, stopped) is reported as such and its apps are not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from migrator.model import norm_id
from migrator.planner.naming import DEFAULT_PREFIX
from migrator.planner.plan import KIND_GRAPH_EWS, KIND_SMTP, MIGRATE, NEW, Plan

DONE = "done"
LEGACY_STATES = frozenset({"new", "rolled_back"})


@dataclass(frozen=True)
class AppExpect:
    app_id: str
    name: str
    plan: str  # the plan folder's name
    batch: int
    migrated: bool
    reach: frozenset[str]  # SMTP reach the plan gives the app (the mailboxes of its grants with a batch)
    legacy: frozenset[tuple[str, str]]  # (mailbox, right) legacy grants that should still be there
    assignment: str = ""  # role assignment name (migrated apps)
    scope: str = ""  # management scope name
    groups: tuple[str, ...] = ()  # names of the groups the scope matches
    # existing assignments the plan reused (existing.csv, action reuse): (name, scope, its filter as read, the
    # mailboxes they reached)
    held: tuple[tuple[str, str, str, frozenset[str]], ...] = ()


@dataclass(frozen=True)
class MailExpect:
    """A Graph/EWS app a done batch moved off its access policies: its consents and policies must stay gone, its
    `Application <permission>` assignments stay as made."""

    app_id: str
    name: str
    plan: str
    batch: int
    permissions: frozenset[str]  # the Entra permissions whose consent the batch removed
    policies: frozenset[str]  # the policies it removed (Identity, lower case)
    assignments: tuple[tuple[str, str, str], ...]  # (name, role, scope name)


@dataclass
class Expected:
    apps: dict[str, AppExpect] = field(default_factory=dict)
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # group name -> members (migrated batches)
    group_apps: dict[str, set[str]] = field(default_factory=dict)  # group name -> migrated apps using it
    scopes: dict[str, str] = field(default_factory=dict)  # scope name -> filter the executor set ('' unknown)
    scope_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # scope name -> group names
    assignments: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # name -> (app_id, role, scope)
    source_grants: set[tuple[str, str, str]] = field(default_factory=set)  # (app, mailbox, right) planned from
    existing: dict[str, str] = field(default_factory=dict)  # lower name of an assignment a plan knew of -> app id
    tool_names: set[str] = field(default_factory=set)  # every object name the plans make
    prefixes: set[str] = field(default_factory=set)  # the plans' name prefixes (tool-made objects)
    notes: list[str] = field(default_factory=list)
    mail: dict[str, MailExpect] = field(default_factory=dict)  # Graph/EWS apps of done batches, by app id


def batch_states(plan_dir: Path) -> tuple[dict[int, str], dict[str, str]]:
    """({batch: state}, {scope name: filter as created}) from the plan's journal, read-only; empty when none."""
    from migrator.executor.journal import Journal

    if not (plan_dir / "journal.db").exists():
        return {}, {}
    with Journal(plan_dir, readonly=True) as journal:
        states = {b: s for b, (s, _) in journal.batch_states().items()}
        filters = {o.name: str((o.detail or {}).get("filter", "")) for o in journal.objects("scope")}
    return states, filters


def expected_state(plans: list[Plan]) -> Expected:
    exp = Expected()
    # the change plans of `migrator grant`/`revoke` after the plans they change, in the order they were applied,
    # whatever the order given (two changes may be planned within the same second)
    changes = sorted((p for p in plans if isinstance(p.meta.get("change"), dict)),
                     key=lambda p: (_applied_at(Path(p.path) if p.path else Path(".")), p.meta["created"]))
    for plan in [p for p in plans if not isinstance(p.meta.get("change"), dict)] + changes:
        folder = Path(plan.path) if plan.path else Path(".")
        states, filters = batch_states(folder)
        if plan in changes:
            add_change(exp, plan, folder.name, states.get(1, "new"), filters)
        else:
            add_plan(exp, plan, folder.name, states, filters)
    return exp


def _applied_at(plan_dir: Path) -> float:
    """When the plan's journal last finished a step (0 without a journal)."""
    from migrator.executor.journal import Journal

    if not (plan_dir / "journal.db").exists():
        return 0.0
    with Journal(plan_dir, readonly=True) as journal:
        return max((r.finished_at or 0.0 for r in journal.steps()), default=0.0)


def add_change(exp: Expected, plan: Plan, label: str, state: str, filters: dict[str, str]) -> None:
    """Fold an applied change plan (`migrator grant`/`revoke`, docs/design.md §8) into `exp`: the app's assignments,
    scopes and groups become the change's (its old assignments it removed are no longer expected), and its reach the
    change's. A change never applied, or rolled back, changes nothing; one half-way is noted and its app not judged."""
    change = plan.meta["change"]
    app_id = norm_id(change["app_id"])
    if state in LEGACY_STATES:
        return
    exp.tool_names |= {g.name for g in plan.groups if g.status == NEW}
    exp.tool_names |= {s.name for s in plan.scopes if s.note == "new"}
    exp.tool_names |= {a.name for a in plan.assignments if a.name in change.get("new_assignment_names", [])}
    if state != DONE:
        exp.notes.append(f"{label}: the change is {state.replace('_', ' ')}: its app is not audited until it is done "
                         "or rolled back")
        exp.apps.pop(app_id, None)
        return
    for name in change.get("removed_assignment_names", []):
        exp.assignments.pop(name, None)
    for name in change.get("removed_scope_names", []):  # removed last; kept when a role assignment used it then
        if not any(scope.lower() == name.lower() for _app, _role, scope in exp.assignments.values()):
            exp.scopes.pop(name, None)
            exp.scope_groups.pop(name, None)
    groups = {g.key: g for g in plan.groups}
    scopes = {s.key: s for s in plan.scopes}
    held = []
    for a in plan.assignments:
        scope = scopes[a.scope]
        names = tuple(groups[k].name for k in scope.groups)
        exp.assignments[a.name] = (app_id, a.role, scope.name)
        if filters.get(scope.name) or scope.name not in exp.scopes:
            exp.scopes[scope.name] = filters.get(scope.name, "")
        exp.scope_groups[scope.name] = names
        members: frozenset[str] = frozenset()
        for key in scope.groups:
            exp.groups[groups[key].name] = groups[key].members
            exp.group_apps.setdefault(groups[key].name, set()).add(app_id)
            members |= groups[key].members
        held.append((a.name, scope.name, filters.get(scope.name, ""), members))  # filter as set ("" unknown)
    before = exp.apps.get(app_id)
    reach = frozenset(norm_id(g.mailbox) for g in plan.grants)
    exp.apps[app_id] = AppExpect(app_id, change.get("app_name", ""), label, 1, True, reach,
                                 before.legacy if before else frozenset(), held=tuple(held))


def add_plan(exp: Expected, plan: Plan, label: str, states: dict[int, str], filters: dict[str, str]) -> None:
    """Fold one plan (and its batch states) into `exp`."""
    options = plan.meta.get("options", {}) if isinstance(plan.meta.get("options"), dict) else {}
    exp.prefixes.add(str(options.get("prefix") or DEFAULT_PREFIX).lower())
    exp.tool_names |= {g.name for g in plan.groups if g.status == NEW}
    exp.tool_names |= {s.name for s in plan.scopes} | {a.name for a in plan.assignments}
    groups = {g.key: g for g in plan.groups}
    scopes = {s.key: s for s in plan.scopes}
    # the SMTP role's assignments (a Graph/EWS one, kind graph-ews, serves another role: not audited here yet)
    assignment_of = {a.app_id: a for a in plan.assignments if a.kind == KIND_SMTP}
    held_of: dict[str, list] = {}  # app -> the existing assignments the plan built on (planner/existing.py)
    for e in plan.existing:  # every one the plan knew of is expected there (the ones it left alone too)
        exp.existing[e.assignment.lower()] = norm_id(e.app_id)
        if e.action == "reuse":
            held_of.setdefault(e.app_id, []).append(e)
    batch_of = {a: b.number for b in plan.batches for a in b.apps}
    grants_of: dict[str, list] = {}
    for g in plan.grants:
        grants_of.setdefault(g.app_id, []).append(g)
        exp.source_grants.add((norm_id(g.app_id), norm_id(g.mailbox), str(g.right)))
    for b in plan.batches:
        state = states.get(b.number, "new")
        if state not in LEGACY_STATES and state != DONE:
            exp.notes.append(f"{label}: batch {b.number} is {state.replace('_', ' ')}: its apps are not audited "
                             "until it is done or rolled back")
    for app_id, rows in grants_of.items():
        batch = batch_of.get(app_id, 0)
        state = states.get(batch, "new")
        if state not in LEGACY_STATES and state != DONE:
            continue
        migrated = state == DONE and (app_id in assignment_of or app_id in held_of)
        # its RBAC set: SendAs, and FullAccess of an app holding SMTP.SendAsApp (the grants with a batch)
        reach = frozenset(norm_id(g.mailbox) for g in rows if g.batch is not None)
        legacy = frozenset((norm_id(g.mailbox), str(g.right)) for g in rows
                           if not migrated or g.action != MIGRATE)
        held = tuple((e.assignment, e.scope, e.filter, e.members) for e in held_of.get(app_id, ()))
        entry = AppExpect(norm_id(app_id), rows[0].app_name, label, batch, migrated, reach, legacy, held=held)
        if migrated and app_id in assignment_of:
            a = assignment_of[app_id]
            scope = scopes[a.scope]
            names = tuple(groups[k].name for k in scope.groups if k in groups)
            entry = AppExpect(entry.app_id, entry.name, label, batch, True, reach, legacy, a.name, scope.name, names,
                              held)
            exp.assignments[a.name] = (entry.app_id, a.role, scope.name)
            exp.scopes[scope.name] = filters.get(scope.name, "")
            exp.scope_groups[scope.name] = names
            for key in scope.groups:
                group = groups[key]
                exp.groups[group.name] = group.members
                exp.group_apps.setdefault(group.name, set()).add(entry.app_id)
        if migrated:  # what the app's reach rests on is watched like the tool's own: gone, moved, filter edited
            for e in held_of.get(app_id, ()):
                if e.filter or not e.scope:  # a management scope, or none (a group-scoped one shows a hidden scope)
                    exp.assignments[e.assignment] = (entry.app_id, e.role, e.scope)
                if e.filter:
                    exp.scopes[e.scope] = e.filter
        exp.apps[entry.app_id] = entry
    _add_mail(exp, plan, label, states, filters)


def _add_mail(exp: Expected, plan: Plan, label: str, states: dict[int, str], filters: dict[str, str]) -> None:
    """The Graph/EWS apps of the plan's done batches (mail_access.csv): their assignments, scopes and groups are
    watched like the SMTP ones, their removed consents and policies must not come back."""
    groups = {g.key: g for g in plan.groups}
    scopes = {s.key: s for s in plan.scopes}
    for app_id in plan.mail_apps():
        rows = [m for m in plan.mail_access if m.app_id == app_id]
        batch = rows[0].batch
        if states.get(batch, "new") != DONE:
            continue  # not moved (yet, or rolled back): its consents and policies are the tenant's as before
        held = []
        for a in plan.assignments:
            if a.app_id != app_id or a.kind != KIND_GRAPH_EWS:
                continue
            scope = scopes[a.scope]
            held.append((a.name, a.role, scope.name))
            exp.scopes[scope.name] = filters.get(scope.name, "")
            names = tuple(groups[k].name for k in scope.groups if k in groups)
            exp.scope_groups[scope.name] = names
            for key in scope.groups:
                exp.groups[groups[key].name] = groups[key].members
                exp.group_apps.setdefault(groups[key].name, set()).add(norm_id(app_id))
        exp.mail[norm_id(app_id)] = MailExpect(
            norm_id(app_id), rows[0].app_name, label, batch, frozenset(m.permission for m in rows),
            frozenset(p.identity.lower() for p in plan.policies if p.app_id == app_id), tuple(held))
