"""The tenant's RBAC for Applications setup as `migrator grant`/`revoke` plan on it (pure: built from an Observed).

apps -> their `Application SMTP.SendAsApp` role assignments -> management scopes -> the groups their filters name
(`MemberOfGroup -eq '<DN>'`) -> the groups' direct members. An app's RBAC reach is the union of those members. A
filter with any other term (an attribute, a DN of no known group, -and/-not) is not *understood*: its reach cannot
be computed from groups alone, so no change is planned for an app that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrator.errors import InputError
from migrator.model import norm_id
from migrator.planner.opath import member_of_anywhere, member_of_dns


@dataclass(frozen=True)
class GroupState:
    name: str  # as the tenant spells it
    dn: str
    members: frozenset[str]


@dataclass(frozen=True)
class ScopeState:
    name: str
    filter: str
    groups: tuple[str, ...]  # lower-case names of the groups its MemberOfGroup terms name
    understood: bool  # the filter is only MemberOfGroup terms of known groups, joined by -or


@dataclass(frozen=True)
class AssignmentState:
    name: str
    app_id: str
    scope: str  # lower-case scope name


@dataclass
class Setup:
    groups: dict[str, GroupState] = field(default_factory=dict)  # lower name -> group
    scopes: dict[str, ScopeState] = field(default_factory=dict)  # lower name -> scope
    assignments: dict[str, AssignmentState] = field(default_factory=dict)  # lower name -> SMTP role assignment
    claims: frozenset[str] = frozenset()  # apps whose Entra SMTP.SendAsApp assignment is present
    legacy: frozenset[tuple[str, str, str]] = frozenset()  # (app, mailbox, right) per-mailbox grants held now
    app_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # app id -> names, display name first
    mailbox_names: dict[str, str] = field(default_factory=dict)  # lower name/alias/UPN/address -> address
    ambiguous_mailbox_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # lower name -> addresses
    # apps that hold another `Application ...` role (Mail.Send, ...) on a group: adding a member would widen theirs
    other_users: dict[str, set[str]] = field(default_factory=dict)  # group (lower) -> "<app id> (<role>)"
    # scopes another `Application ...` role assignment uses: a revoke's copy-on-write never plans their removal
    other_scopes: dict[str, set[str]] = field(default_factory=dict)  # scope (lower) -> "<app id> (<role>)"

    def app_assignments(self, app_id: str) -> list[AssignmentState]:
        return sorted((a for a in self.assignments.values() if a.app_id == app_id), key=lambda a: a.name.lower())

    def scope_groups(self, scope: str) -> tuple[str, ...]:
        found = self.scopes.get(scope.lower())
        return found.groups if found else ()

    def app_groups(self, app_id: str) -> list[str]:
        return sorted({g for a in self.app_assignments(app_id) for g in self.scope_groups(a.scope)})

    def users(self, group: str) -> set[str]:
        """Apps holding an SMTP role assignment whose scope names the group, and apps holding another Application
        role scoped on it (a group only one app's SMTP assignment names may still serve another app's Mail.Send)."""
        smtp = {a.app_id for a in self.assignments.values() if group in self.scope_groups(a.scope)}
        return smtp | self.other_users.get(group, set())

    def rbac_reach(self, app_id: str) -> frozenset[str]:
        out: set[str] = set()
        for g in self.app_groups(app_id):
            out |= self.groups[g].members
        return frozenset(out)

    def display_name(self, app_id: str) -> str:
        names = self.app_names.get(app_id, ())
        return names[0] if names else app_id


def filter_groups(text: str, dn_to_group: dict[str, str]) -> tuple[tuple[str, ...], bool]:
    """(group names the filter's MemberOfGroup terms name, whether the filter is nothing but such terms, -or'ed, all
    of known groups). For another shape the groups are those it names anywhere: what it depends on."""
    dns = member_of_dns(text or "")
    understood = dns is not None
    named = [dn_to_group.get(dn.lower()) for dn in (dns if dns is not None else member_of_anywhere(text or ""))]
    if any(g is None for g in named):
        understood = False
    return tuple(dict.fromkeys(g for g in named if g is not None)), understood


def setup_from_observed(obs) -> Setup:
    """The Setup of an `audit.observed.Observed` (read_observed)."""
    dn_to_group = {dn.lower(): name for name, dn in obs.group_dns.items() if dn}
    setup = Setup()
    for lower, members in obs.groups.items():
        setup.groups[lower] = GroupState(obs.group_names.get(lower, lower), obs.group_dns.get(lower, ""),
                                         frozenset(members))
    for lower, scope in obs.scopes.items():
        groups, understood = filter_groups(scope.filter, dn_to_group)
        setup.scopes[lower] = ScopeState(scope.name, scope.filter, groups, understood and not scope.exclusive)
    for lower, assignment in obs.assignments.items():
        app_id = obs.principal_app.get(assignment.assignee)
        if app_id is not None:
            setup.assignments[lower] = AssignmentState(assignment.name, app_id, assignment.scope.lower())
    for app_id, role, scope_type, scope, text in obs.other_roles:
        if scope_type == "group":
            named = [obs.group_ids[scope.lower()]] if scope.lower() in obs.group_ids else []
        else:
            named = list(filter_groups(text, dn_to_group)[0])
            if scope_type == "custom" and scope:
                setup.other_scopes.setdefault(scope.lower(), set()).add(f"{app_id} ({role})")
        for group in named:
            # named with its role: the app itself holding Mail.Send on the group makes it no "own" group either
            setup.other_users.setdefault(group, set()).add(f"{app_id} ({role})")
    setup.claims = frozenset(obs.claims)
    setup.legacy = frozenset(obs.grants)
    setup.app_names = dict(obs.app_names)
    setup.mailbox_names = dict(obs.mailbox_names)
    setup.ambiguous_mailbox_names = dict(obs.ambiguous_mailbox_names)
    return setup


def resolve_app(setup: Setup, name: str) -> str:
    """The app id an admin means by `name` (app id, object id, or the Exchange pointer's display name)."""
    wanted = norm_id(name)
    found = sorted(app for app, names in setup.app_names.items() if wanted in {norm_id(n) for n in names})
    if not found:
        raise InputError(f"no app (service principal) named {name!r} in the tenant; give its application (client) "
                         "id, its object id or its Exchange display name", field="APP", value=name)
    if len(found) > 1:
        raise InputError(f"{name!r} names {len(found)} apps ({', '.join(found)}); give the application id",
                         field="APP", value=name)
    return found[0]


def resolve_mailboxes(setup: Setup, names: list[str]) -> tuple[str, ...]:
    """The primary SMTP addresses of `names` (address, alias, UPN or name); InputError names the unknown ones."""
    unknown = [n for n in names if norm_id(n) not in setup.mailbox_names]
    if unknown:
        raise InputError(f"no mailbox named {', '.join(repr(u) for u in unknown[:10])} in the tenant",
                         field="MAILBOX", value=unknown[0])
    for n in names:
        if (found := setup.ambiguous_mailbox_names.get(norm_id(n))) is not None:
            raise InputError(f"{n!r} names {len(found)} mailboxes ({', '.join(found[:5])}); give the primary SMTP "
                             "address", field="MAILBOX", value=n)
    return tuple(sorted({setup.mailbox_names[norm_id(n)] for n in names}))
