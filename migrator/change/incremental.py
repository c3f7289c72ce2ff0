"""The smallest exact change that makes an app gain (grant) or lose (revoke) exactly some mailboxes, and no other
app's reach move (pure: no tenant call). docs/design.md §8 gives the rules; in short:

grant M to app A (M' = M minus what A reaches already):
  * A has a group no other app uses (its *own* group): add M' to it. Nothing else changes.
  * otherwise: one new group holding M', a scope on it, an assignment of A on that scope. Nothing is removed,
    so no pair can lose access at any instant. (A copy-on-write of a shared group would copy all its members.)
revoke M from app A (M' = M that A reaches through RBAC):
  * own groups of A holding part of M': remove those members.
  * a shared group holding part of M' (another app uses it): copy-on-write. For each assignment of A whose scope
    names such a group: a new group with those shared groups' members minus M', a new scope naming it and the
    scope's other groups, a new assignment of A on it; the old assignment is removed only after the new one is
    verified and the propagation wait has passed (no gap for A's untouched mailboxes); the shared groups, and so
    the other apps, are not touched. Last, an old scope no role assignment uses any more is removed (recorded
    first; the executor reads every role assignment on it just before and keeps it when any is there).
  * a legacy per-mailbox grant (SendAs or FullAccess) of A on a mailbox of M: refused, with the command that
    removes it (FullAccess may serve IMAP/POP, which RBAC cannot: a person decides).
Refused: an app still holding the Entra SMTP.SendAsApp claim (its tokens are served by legacy grants, not RBAC:
migrate it first), an app whose scope filter is not only MemberOfGroup terms (its reach cannot be computed).

`simulate` applies a change to a Setup; `check_change` proves from the simulation that every app's reach is its
previous reach plus/minus exactly M' (the planner's answer is never trusted). `drift` compares the tenant now with
the change's recorded `before` state, allowing every operation of the change to be done or not yet done.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from migrator.change.setup import AssignmentState, GroupState, ScopeState, Setup
from migrator.errors import InputError, PlanError
from migrator.planner.naming import DEFAULT_PREFIX, Namer, short_hash

GRANT, REVOKE = "grant", "revoke"
NOTHING, OWN_GROUP, NEW_GROUP, COPY_ON_WRITE = "nothing to do", "own group", "new group", "copy-on-write"


@dataclass(frozen=True)
class NewGroup:
    key: str  # N1, N2: the change's own keys (the plan folder renumbers them)
    name: str
    members: frozenset[str]


@dataclass(frozen=True)
class NewScope:
    key: str
    name: str
    groups: tuple[str, ...]  # existing group names (lower) and new group keys


@dataclass(frozen=True)
class NewAssignment:
    key: str
    name: str
    scope: str  # a NewScope key


@dataclass(frozen=True)
class Change:
    kind: str  # grant | revoke
    app_id: str
    app_name: str
    requested: tuple[str, ...]
    effective: tuple[str, ...]  # the mailboxes whose access changes (M')
    unchanged: tuple[str, ...]  # already reached (grant) or not reached (revoke): nothing to do for them
    strategy: str
    member_adds: tuple[tuple[str, str], ...] = ()  # (group lower name, mailbox)
    member_removes: tuple[tuple[str, str], ...] = ()
    new_groups: tuple[NewGroup, ...] = ()
    new_scopes: tuple[NewScope, ...] = ()
    new_assignments: tuple[NewAssignment, ...] = ()
    removed_assignments: tuple[str, ...] = ()  # lower names of A's assignments removed after the wait
    # lower names of the removed assignments' scopes no other assignment uses: removed last (the executor removes
    # one only when the tenant read at that moment shows no role assignment on it)
    removed_scopes: tuple[str, ...] = ()
    kept_assignments: tuple[str, ...] = ()  # lower names of A's assignments left as they are
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.effective


@dataclass
class _Builder:
    setup: Setup
    app_id: str
    prefix: str
    namer: Namer = field(init=False)
    groups: list[NewGroup] = field(default_factory=list)
    scopes: list[NewScope] = field(default_factory=list)
    assignments: list[NewAssignment] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.setup
        taken = [g.name for g in s.groups.values()] + [x.name for x in s.scopes.values()]
        taken += [a.name for a in s.assignments.values()] + list(s.mailbox_names)
        self.namer = Namer(self.prefix, taken)

    def _name(self, letter: str, *content: str) -> str:
        return self.namer.name(f"{self.app_id[:8]}-{letter}", short_hash(self.app_id, *content))

    def group(self, members: frozenset[str]) -> str:
        for g in self.groups:
            if g.members == members:
                return g.key
        key = f"N{len(self.groups) + 1}"
        self.groups.append(NewGroup(key, self._name("g", *sorted(members)), members))
        return key

    def scope_and_assignment(self, groups: tuple[str, ...]) -> None:
        for s in self.scopes:
            if s.groups == groups:
                return
        content = [self._group_content(g) for g in groups]
        key = f"S{len(self.scopes) + 1}"
        self.scopes.append(NewScope(key, self._name("s", *content), groups))
        a_key = f"A{len(self.assignments) + 1}"
        self.assignments.append(NewAssignment(a_key, self._name("a", *content), key))

    def _group_content(self, g: str) -> str:
        new = next((n for n in self.groups if n.key == g), None)
        return new.name if new else self.setup.groups[g].dn


def plan_change(setup: Setup, kind: str, app_id: str, mailboxes: tuple[str, ...], *,
                prefix: str = DEFAULT_PREFIX) -> Change:
    """The exact change for `kind` (grant/revoke) of `mailboxes` (resolved addresses) to `app_id`."""
    if kind not in (GRANT, REVOKE):
        raise ValueError(kind)
    name = setup.display_name(app_id)
    _refuse_unsupported(setup, app_id, name)
    reach = setup.rbac_reach(app_id)
    requested = tuple(sorted(set(mailboxes)))
    if kind == GRANT:
        effective = tuple(m for m in requested if m not in reach)
        unchanged = tuple(m for m in requested if m in reach)
    else:
        _refuse_legacy(setup, app_id, name, requested)
        effective = tuple(m for m in requested if m in reach)
        unchanged = tuple(m for m in requested if m not in reach)
    base = Change(kind, app_id, name, requested, effective, unchanged, NOTHING,
                  kept_assignments=tuple(a.name.lower() for a in setup.app_assignments(app_id)))
    if not effective:
        return base
    build = _Builder(setup, app_id, prefix)
    change = _grant(setup, base, build) if kind == GRANT else _revoke(setup, base, build)
    check_change(setup, change)
    return change


def _refuse_unsupported(setup: Setup, app_id: str, name: str) -> None:
    if app_id in setup.claims:
        raise InputError(f"app {name} ({app_id}) still holds the Entra SMTP.SendAsApp permission: its tokens are "
                         "served by per-mailbox grants, not by RBAC. Migrate it first (`migrator plan`, `migrator "
                         "execute`), or give it the grant the legacy way", field="APP", value=app_id)
    for a in setup.app_assignments(app_id):
        scope = setup.scopes.get(a.scope)
        if scope is None or not scope.understood:
            what = "is missing" if scope is None else f"has the filter {scope.filter!r}"
            raise InputError(f"app {name}: the scope of its role assignment {a.name!r} {what}; migrator grant and "
                             "revoke change only scopes made of MemberOfGroup terms (an attribute term's reach "
                             "cannot be computed from groups). Change it by hand or re-plan",
                             field="APP", value=app_id)


def _refuse_legacy(setup: Setup, app_id: str, name: str, requested: tuple[str, ...]) -> None:
    wanted = set(requested)
    held = sorted((m, r) for a, m, r in setup.legacy if a == app_id and m in wanted)
    if not held:
        return
    lines = "; ".join(f"{r} on {m}" for m, r in held[:10])
    commands = "; ".join(
        (f"Remove-RecipientPermission -Identity '{m}' -Trustee '{app_id}' -AccessRights SendAs -Confirm:$false"
         if r == "SendAs" else
         f"Remove-MailboxPermission -Identity '{m}' -User '{app_id}' -AccessRights FullAccess -Confirm:$false")
        for m, r in held[:3])
    raise InputError(f"app {name} also holds per-mailbox grants there ({lines}): revoking RBAC alone would leave "
                     "them. FullAccess may serve IMAP/POP, which RBAC cannot; remove them deliberately first "
                     f"({commands}), then run revoke again", field="MAILBOX", value=held[0][0])


def _grant(setup: Setup, base: Change, build: _Builder) -> Change:
    app = base.app_id
    own = [g for g in setup.app_groups(app) if setup.users(g) == {app}]
    if own:
        target = own[0]  # the first by name: deterministic
        return replace(base, strategy=OWN_GROUP, member_adds=tuple((target, m) for m in base.effective),
                       notes=(f"adds {len(base.effective)} member(s) to {setup.groups[target].name!r}, which only "
                              "this app uses",))
    key = build.group(frozenset(base.effective))
    build.scope_and_assignment((key,))
    shared = setup.app_groups(app)
    note = (f"its groups ({', '.join(setup.groups[g].name for g in shared)}) serve other apps too: a new group"
            if shared else "it has no RBAC group yet: a new group")
    return replace(base, strategy=NEW_GROUP, new_groups=tuple(build.groups), new_scopes=tuple(build.scopes),
                   new_assignments=tuple(build.assignments), notes=(note + ", scope and assignment for it",))


def _revoke(setup: Setup, base: Change, build: _Builder) -> Change:
    app = base.app_id
    gone = set(base.effective)
    removes: set[tuple[str, str]] = set()
    removed, kept = [], []
    for a in setup.app_assignments(app):
        groups = setup.scope_groups(a.scope)
        hit = [g for g in groups if setup.groups[g].members & gone]
        shared = [g for g in hit if setup.users(g) != {app}]
        removes |= {(g, m) for g in hit if g not in shared for m in setup.groups[g].members & gone}
        if not shared:
            kept.append(a.name.lower())
            continue
        rest: set[str] = set()
        for g in shared:
            rest |= setup.groups[g].members
        rest -= gone
        terms = tuple(g for g in groups if g not in shared)
        if rest:
            terms += (build.group(frozenset(rest)),)
        if terms:
            build.scope_and_assignment(terms)
        removed.append(a.name.lower())
    strategy = COPY_ON_WRITE if removed else OWN_GROUP
    left = {a.scope for k, a in setup.assignments.items() if k not in set(removed)}
    left |= set(setup.other_scopes)
    scopes_gone = sorted({setup.assignments[k].scope for k in removed} - left)
    notes = []
    if removes:
        notes.append(f"removes {len(removes)} member(s) from group(s) only this app uses")
    if removed:
        notes.append(f"{len(removed)} assignment(s) of the app name groups other apps share: copy-on-write (new "
                     "group(s) without the mailboxes, new scope and assignment; the old assignment is removed after "
                     "the new one is verified and has propagated; the shared groups are left as they are)")
    if scopes_gone:
        notes.append(f"{len(scopes_gone)} old scope(s) no other role assignment uses: removed last, only if the "
                     "tenant then shows no role assignment on them")
    return replace(base, strategy=strategy, member_removes=tuple(sorted(removes)), new_groups=tuple(build.groups),
                   new_scopes=tuple(build.scopes), new_assignments=tuple(build.assignments),
                   removed_assignments=tuple(removed), kept_assignments=tuple(kept), notes=tuple(notes),
                   removed_scopes=tuple(scopes_gone))


def simulate(setup: Setup, change: Change) -> Setup:
    """The Setup once the change is applied (new groups get the DN `new:<key>`)."""
    groups = dict(setup.groups)
    for g, m in change.member_adds:
        groups[g] = replace(groups[g], members=groups[g].members | {m})
    for g, m in change.member_removes:
        groups[g] = replace(groups[g], members=groups[g].members - {m})
    new_keys = {n.key: f"\x00{n.key}" for n in change.new_groups}  # never a tenant group's name
    for n in change.new_groups:
        groups[new_keys[n.key]] = GroupState(n.name, f"new:{n.key}", n.members)
    scopes = {k: v for k, v in setup.scopes.items() if k not in set(change.removed_scopes)}
    for s in change.new_scopes:
        scopes[s.name.lower()] = ScopeState(s.name, "", tuple(new_keys.get(g, g) for g in s.groups), True)
    assignments = {k: v for k, v in setup.assignments.items() if k not in set(change.removed_assignments)}
    scope_names = {s.key: s.name.lower() for s in change.new_scopes}
    for a in change.new_assignments:
        assignments[a.name.lower()] = AssignmentState(a.name, change.app_id, scope_names[a.scope])
    return replace(setup, groups=groups, scopes=scopes, assignments=assignments)


def check_change(setup: Setup, change: Change) -> None:
    """PlanError unless, after the change, the app's reach is its reach plus/minus exactly the effective mailboxes
    and every other app's reach is what it was."""
    after = simulate(setup, change)
    apps = {a.app_id for a in setup.assignments.values()} | {change.app_id}
    problems = []
    for app in sorted(apps):
        before, now = setup.rbac_reach(app), after.rbac_reach(app)
        want = set(before)
        if app == change.app_id:
            want = want | set(change.effective) if change.kind == GRANT else want - set(change.effective)
        if now != want:
            problems.append(f"app {app}: gains {sorted(now - want)[:3]}, loses {sorted(want - now)[:3]}")
    if problems:
        raise PlanError("the planned change is not exact (a bug; nothing was written): " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------------------------
# The state before, recorded with the change, and drift against it
# ---------------------------------------------------------------------------------------------------------------

def before_state(setup: Setup, change: Change) -> dict:
    """What the change relies on: the groups it touches or names, the scopes and assignments (of any app) naming
    them, and the app's own assignments. Stored in plan.json; `drift` compares the tenant with it."""
    watched = {g for g, _ in change.member_adds + change.member_removes}
    watched |= set(setup.app_groups(change.app_id))
    for s in change.new_scopes:
        watched |= {g for g in s.groups if g in setup.groups}
    assignments = {k: a for k, a in setup.assignments.items()
                   if a.app_id == change.app_id or set(setup.scope_groups(a.scope)) & watched}
    scopes = {a.scope for a in assignments.values()}
    return {
        "groups": {g: {"name": setup.groups[g].name, "dn": setup.groups[g].dn,
                       "members": sorted(setup.groups[g].members)} for g in sorted(watched)},
        "scopes": {s: setup.scopes[s].filter for s in sorted(scopes) if s in setup.scopes},
        "assignments": {k: {"name": a.name, "app_id": a.app_id, "scope": a.scope}
                        for k, a in sorted(assignments.items())},
    }


def drift(before: dict, change: dict, now: Setup) -> list[str]:
    """Differences between the tenant `now` and the recorded `before` that the change's own operations do not
    explain (each may be done or not yet: a resumed run). `change`: the plan.json section (folder.py)."""
    from migrator.executor.steps import normalise_filter

    diffs: list[str] = []
    app = change["app_id"]
    touched: dict[str, set[str]] = {}
    for g, m in change["member_adds"] + change["member_removes"]:
        touched.setdefault(g, set()).add(m)
    for g, was in before["groups"].items():
        cur = now.groups.get(g)
        if cur is None:
            diffs.append(f"group {was['name']!r} is gone")
            continue
        if cur.dn.lower() != was["dn"].lower():
            diffs.append(f"group {was['name']!r}: DN is now {cur.dn!r}")
        skip = touched.get(g, set())
        old, new = set(was["members"]) - skip, set(cur.members) - skip
        diffs += [f"group {was['name']!r}: member added: {m}" for m in sorted(new - old)]
        diffs += [f"group {was['name']!r}: member removed: {m}" for m in sorted(old - new)]
    scopes_gone = set(change.get("removed_scopes", []))  # older change plans have no such key
    for s, text in before["scopes"].items():
        cur_scope = now.scopes.get(s)
        if cur_scope is None:
            if s not in scopes_gone:
                diffs.append(f"scope {s!r} is gone")
        elif normalise_filter(cur_scope.filter) != normalise_filter(text):
            diffs.append(f"scope {cur_scope.name!r}: filter is now {cur_scope.filter!r}")
    removed = set(change["removed_assignments"])
    for k, was in before["assignments"].items():
        cur_a = now.assignments.get(k)
        if cur_a is None:
            if k not in removed:
                diffs.append(f"role assignment {was['name']!r} is gone")
        elif (cur_a.app_id, cur_a.scope) != (was["app_id"], was["scope"]):
            diffs.append(f"role assignment {was['name']!r} changed")
    ours = {a.lower() for a in change["new_assignment_names"]}
    watched = set(before["groups"])
    for k, a in now.assignments.items():
        if k in before["assignments"] or k in ours:
            continue
        if a.app_id == app or set(now.scope_groups(a.scope)) & watched:
            diffs.append(f"role assignment {a.name!r} (app {a.app_id}) is new since the change was planned")
    if app in now.claims:
        diffs.append(f"app {app} holds the Entra SMTP.SendAsApp permission again")
    return diffs

