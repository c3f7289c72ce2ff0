"""The plan folder (docs/design.md §4, a contract): write it atomically, load it with its hashes checked, and check
that it is exact from its own files alone.

Files (UTF-8, RFC 4180, header row; the columns docs/design.md §4 names come first, in that order; extra ones follow):
  grants.csv       app_id, app_name, mailbox, right, action, reason, batch
  groups.csv       group, name, status, dn, members, alias, address, batch, apps
                   (`members` is the member count; the members themselves are in memberships.csv, because a cell
                   holding 100,000 addresses is past what a spreadsheet shows)
  memberships.csv  group, mailbox
  scopes.csv       scope, name, filter, groups, kind, attributes, batch, note
  assignments.csv  assignment, app_id, app_name, role, scope, batch, name
  batches.csv      batch, apps, grants, note, mailboxes, new_groups, scopes, assignments, app_names
  attributes.csv   attribute, value, mailbox: the mailboxes that held each attribute value an attribute scope
                   filters on, at inventory time (what makes an attribute scope checkable from the plan alone)
  rowhashes.json   a 24-bit digest of every row of every CSV, so an edit is reported with its row number
  plan.json        format, created, source, role, options, cover, flagged_apps, counts, files (SHA-256 of each)

`check_exact()` recomputes every app's effective mailbox set from memberships, attribute matches, scopes and
assignments, and compares it with the app's SMTP reach (SendAs rows, and FullAccess rows with a batch: FullAccess
carries SMTP for an app holding SMTP.SendAsApp): no mailbox gained, none lost.
"""

from __future__ import annotations

import base64
import csv
import enum
import hashlib
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from migrator import csvio
from migrator.errors import PlanError
from migrator.model import AAP_PERMISSIONS, FILTERABLE_ATTRIBUTES, Right
from migrator.planner import opath
from migrator.planner.naming import MAX_NAME

FORMAT = 1
PLAN_JSON = "plan.json"
ROWHASH_FILE = "rowhashes.json"

GRANTS = "grants.csv"
GROUPS = "groups.csv"
MEMBERSHIPS = "memberships.csv"
SCOPES = "scopes.csv"
ASSIGNMENTS = "assignments.csv"
BATCHES = "batches.csv"
ATTRIBUTES = "attributes.csv"
EXISTING = "existing.csv"
EXISTING_MEMBERS = "existing_members.csv"
# Graph/EWS access fenced by Application Access Policies, migrated to `Application <permission>` roles (issue 16):
MAIL_ACCESS = "mail_access.csv"  # one row per (app, Entra permission) whose consent the batch replaces and removes
MAIL_REACH = "mail_reach.csv"  # (app, mailbox): what the app's policies let its consent reach today (flattened)
ACCESS_POLICIES = "access_policies.csv"  # the apps' policies, removed after the consent and the token wait

COLUMNS: dict[str, tuple[str, ...]] = {
    GRANTS: ("app_id", "app_name", "mailbox", "right", "action", "reason", "batch"),
    GROUPS: ("group", "name", "status", "dn", "members", "alias", "address", "batch", "apps"),
    MEMBERSHIPS: ("group", "mailbox"),
    SCOPES: ("scope", "name", "filter", "groups", "kind", "attributes", "batch", "note"),
    ASSIGNMENTS: ("assignment", "app_id", "app_name", "role", "scope", "batch", "name"),
    BATCHES: ("batch", "apps", "grants", "note", "mailboxes", "new_groups", "scopes", "assignments"),
    ATTRIBUTES: ("attribute", "value", "mailbox"),
}
# Columns written after the contract's, and not required when a plan is read (plans made before them still load).
EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {
    BATCHES: ("app_names",),  # the apps' display names, ";"-separated in the order of `apps`: people read names
    ASSIGNMENTS: ("kind",),  # smtp | graph-ews; absent in plans made before it (all smtp)
}
CSV_FILES = tuple(COLUMNS)
# Written only when the tenant already has RBAC for Applications assignments of the plan's role for some app: the
# plan builds on them (planner/existing.py). A plan without them (made before them, or with none) still loads.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    EXISTING: ("app_id", "app_name", "assignment", "role", "scope", "filter", "action", "batch", "mailboxes", "note"),
    EXISTING_MEMBERS: ("assignment", "mailbox"),
    MAIL_ACCESS: ("app_id", "app_name", "permission", "resource", "role", "batch"),
    MAIL_REACH: ("app_id", "mailbox"),
    ACCESS_POLICIES: ("policy", "app_id", "app_name", "access_right", "scope", "batch"),
}
# Optional files come in groups: a plan holds all of a group's files or none of them.
OPTIONAL_GROUPS: tuple[tuple[str, ...], ...] = ((EXISTING, EXISTING_MEMBERS),
                                                (MAIL_ACCESS, MAIL_REACH, ACCESS_POLICIES))
# assignments.csv `kind`: what an assignment replaces
KIND_SMTP = "smtp"  # SendAs (and FullAccess that carries SMTP): the plan's role, Application SMTP.SendAsApp
KIND_GRAPH_EWS = "graph-ews"  # an Entra permission fenced by an access policy: `Application <permission>`
ASSIGNMENT_KINDS = (KIND_SMTP, KIND_GRAPH_EWS)

class Action(enum.StrEnum):
    """What the plan does with a legacy grant (grants.csv, column action)."""

    MIGRATE = "migrate"  # replaced by RBAC, then removed
    KEEP = "keep"  # left in place (FullAccess: RBAC has no IMAP/POP role)


class ExistingAction(enum.StrEnum):
    """What the plan does with an existing role assignment of an app (existing.csv, column action)."""

    REUSE = "reuse"  # kept as it is and counted in the app's RBAC set (verified by the executor, never changed)
    LEFT = "left"  # its app is left as it is (reach beyond the legacy grants, or not exactly known)
    NONE = "none"  # its app has no legacy SMTP reach: nothing to do


class GroupStatus(enum.StrEnum):
    """Whether a plan's group is created or an existing one is used (groups.csv, column status)."""

    NEW = "new"
    REUSE = "reuse"


# StrEnum members equal their text, so rows read back from the CSV files compare equal to these.
MIGRATE, KEEP = Action.MIGRATE, Action.KEEP
NEW, REUSE = GroupStatus.NEW, GroupStatus.REUSE
FUTURE_NOTE = "future mailboxes with this value will be in scope"
MAX_PROBLEMS_SHOWN = 10


class PlanGrant(NamedTuple):
    """One row of grants.csv. A NamedTuple, not a dataclass: a tenant has a million of these, and a tuple is
    built several times faster and is smaller than a frozen dataclass."""

    app_id: str
    app_name: str
    mailbox: str
    right: str  # "SendAs" | "FullAccess"
    action: str  # "migrate" (removed after the cut-over) | "keep"
    reason: str
    batch: int | None  # the app's batch when the grant's mailbox is in its RBAC set; None for FullAccess that is not


@dataclass(frozen=True, slots=True)
class PlanGroup:
    key: str  # G0001
    name: str
    status: str  # "new" | "reuse"
    dn: str  # reused groups only; a new group's DN is read back by the executor
    members: frozenset[str]
    alias: str = ""
    address: str = ""
    batch: int = 0  # the first batch that needs it (it is created there)
    apps: int = 0  # how many apps use it


@dataclass(frozen=True, slots=True)
class PlanScope:
    key: str  # S0001
    name: str
    filter: str  # OPATH; `{dn:G0001}` placeholders for new groups (see opath.fill_dns)
    groups: tuple[str, ...]  # group keys it matches
    kind: str  # "group" | "attribute" | "mixed"
    attributes: tuple[tuple[str, str], ...] = ()  # (attribute, value) terms
    batch: int = 0
    note: str = ""


@dataclass(frozen=True, slots=True)
class PlanAssignment:
    key: str  # A00001
    app_id: str
    app_name: str
    role: str
    scope: str  # scope key
    batch: int
    name: str = ""
    kind: str = KIND_SMTP  # ASSIGNMENT_KINDS


@dataclass(frozen=True, slots=True)
class PlanMailAccess:
    """One row of mail_access.csv: an app's Entra application permission (Graph Mail.Read, EWS full_access_as_app,
    ...) that its batch replaces by `role` scoped to exactly the app's mail reach, then removes (consent first,
    then the app's access policies)."""

    app_id: str
    app_name: str
    permission: str  # a key of model.AAP_PERMISSIONS
    resource: str  # Microsoft Graph | Office 365 Exchange Online
    role: str  # the Application role that serves it (model.AAP_PERMISSIONS)
    batch: int


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    """One row of access_policies.csv: an Application Access Policy of a migrated app, removed in its batch after
    the consent is gone and tokens carrying it have expired."""

    identity: str  # the policy's Identity, as Get-ApplicationAccessPolicy showed it
    app_id: str
    app_name: str
    access_right: str  # RestrictAccess (a DenyAccess app is never migrated)
    scope: str  # the scope group's address (or mailbox) as the inventory resolved it
    batch: int


@dataclass(frozen=True, slots=True)
class PlanBatch:
    number: int  # 1 is the pilot (when there is one)
    apps: tuple[str, ...]
    grants: int  # SendAs grants migrated in this batch
    note: str = ""
    mailboxes: int = 0
    new_groups: int = 0
    scopes: int = 0
    assignments: int = 0


@dataclass(frozen=True, slots=True)
class PlanExisting:
    """An app's role assignment that was there before the plan (existing.csv, members in existing_members.csv)."""

    app_id: str
    app_name: str
    assignment: str  # its name in the tenant
    role: str
    scope: str  # its management scope (or group, or "" for the organisation)
    filter: str  # the scope's filter as read
    action: str  # ExistingAction
    batch: int | None  # the app's batch (reuse), else None
    members: frozenset[str]  # the mailboxes it reaches (reuse rows; the others list none)
    note: str = ""


@dataclass(frozen=True)
class Plan:
    meta: dict
    grants: tuple[PlanGrant, ...]
    groups: tuple[PlanGroup, ...]
    scopes: tuple[PlanScope, ...]
    assignments: tuple[PlanAssignment, ...]
    batches: tuple[PlanBatch, ...]
    attributes: tuple[tuple[str, str, str], ...] = ()  # (attribute, value, mailbox)
    path: Path | None = field(default=None, compare=False)
    existing: tuple[PlanExisting, ...] = ()  # the apps' role assignments that were there before (existing.csv)
    # Graph/EWS access moved off Application Access Policies (mail_access.csv, mail_reach.csv, access_policies.csv)
    mail_access: tuple[PlanMailAccess, ...] = ()
    mail_reach: dict[str, frozenset[str]] = field(default_factory=dict, compare=False)  # app id -> its mailboxes
    policies: tuple[PlanPolicy, ...] = ()

    def group(self, key: str) -> PlanGroup:
        return next(g for g in self.groups if g.key == key)

    def mail_apps(self, batch: int | None = None) -> list[str]:
        """The apps whose Graph/EWS access the plan moves (in `batch`, when given), sorted."""
        return sorted({m.app_id for m in self.mail_access if batch is None or m.batch == batch})


# ------------------------------------------------------------------------------------------------ filters


def scope_kind(groups: Sequence[str], attributes: Sequence[tuple[str, str]]) -> str:
    if groups and attributes:
        return "mixed"
    return "attribute" if attributes else "group"


def render_filter(group_keys: Sequence[str], attributes: Sequence[tuple[str, str]],
                  groups: dict[str, PlanGroup]) -> str:
    """The OPATH filter of a scope: one term per group (reused: its DN; new: a DN placeholder), then attributes."""
    terms = []
    for key in group_keys:
        g = groups[key]
        terms.append(opath.member_of(g.dn) if g.status == REUSE else opath.member_of_new(key))
    terms.extend(opath.attribute_eq(a, v) for a, v in attributes)
    return opath.any_of(terms)


def encode_attributes(attributes: Iterable[tuple[str, str]]) -> str:
    return ";".join(f"{a}={v}" for a, v in attributes)


def decode_attributes(text: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in text.split(";") if text else ():
        a, sep, v = item.partition("=")
        if not sep:
            raise ValueError(f"attribute term {item!r} is not ATTRIBUTE=value")
        out.append((a, v))
    return tuple(out)


# ------------------------------------------------------------------------------------------------ exactness


def plan_counts(plan: Plan) -> dict:
    apps = {g.app_id for g in plan.grants}
    cover = plan.meta.get("cover", {})
    return {
        "apps": len(apps),
        "apps_migrating": len({g.app_id for g in plan.grants if g.action == MIGRATE}),
        "apps_flagged": len(plan.meta.get("flagged_apps", [])),
        "mailboxes": len({g.mailbox for g in plan.grants}),
        "grants_migrate": sum(1 for g in plan.grants if g.action == MIGRATE),
        "grants_keep": sum(1 for g in plan.grants if g.action == KEEP),
        "groups": len(plan.groups),
        "groups_new": sum(1 for g in plan.groups if g.status == NEW),
        "groups_reuse": sum(1 for g in plan.groups if g.status == REUSE),
        "attribute_terms": len({t for s in plan.scopes for t in s.attributes}),
        "cover_elements": len(plan.groups) + len({t for s in plan.scopes for t in s.attributes}),
        "lower_bound": cover.get("lower_bound"),
        "optimal": cover.get("optimal"),
        "memberships": sum(len(g.members) for g in plan.groups),
        "scopes": len(plan.scopes),
        "assignments": len(plan.assignments),
        "batches": len(plan.batches),
        # Graph/EWS access (only in plans that move some: plans made before it keep their counts)
        **({"mail_apps": len(plan.mail_apps()), "mail_permissions": len(plan.mail_access),
            "mail_assignments": sum(1 for a in plan.assignments if a.kind == KIND_GRAPH_EWS),
            "access_policies": len(plan.policies)} if plan.mail_access else {}),
    }


def check_exact(plan: Plan) -> list[str]:
    """Every problem that makes the plan unsafe or inconsistent; empty when every app's RBAC access equals exactly
    its SMTP reach: the SendAs grants it migrates and the FullAccess grants that carry SMTP (those with a batch).
    Uses the plan's own content only (no inventory, no tenant).

    One check per table (groups, scopes, grants, assignments), then the access each app ends with, the names the
    executor creates and the batches."""
    problems: list[str] = []
    groups = _check_groups(plan, problems)
    scopes, scope_batch = _check_scopes(plan, groups, problems)
    expected, grant_batches = _check_grants(plan, problems)
    effective, assignment_batches = _check_assignments(plan, scopes, scope_batch, problems)
    _check_existing(plan, effective, assignment_batches, problems)
    _check_access(expected, effective, problems)
    mail_batches = _check_mail(plan, scopes, scope_batch, problems)
    _check_names(plan, problems)
    _check_batches(plan, expected, effective, grant_batches, assignment_batches, problems, mail_batches)
    return problems


def _check_mail(plan: Plan, scopes: dict[str, frozenset[str]], scope_batch: dict[str, int],
                problems: list[str]) -> dict[str, set[int]]:
    """Graph/EWS: each (app, role) of a graph-ews assignment reaches exactly the app's mail reach (mail_reach.csv),
    the role serves a permission the app's consent holds (mail_access.csv), every such permission is served, and
    the app's policies are RestrictAccess rows of its batch. Returns the batches each app's rows name."""
    batches: dict[str, set[int]] = defaultdict(set)
    wanted: dict[tuple[str, str], set[str]] = {}
    for row, m in enumerate(plan.mail_access, start=2):
        where = f"{MAIL_ACCESS} row {row} ({m.app_id}, {m.permission})"
        known = AAP_PERMISSIONS.get(m.permission)
        if known is None:
            problems.append(f"{where}: not a permission an access policy fences")
            continue
        if (m.resource, m.role) != known:
            problems.append(f"{where}: {m.permission} is served by {known[1]!r} on {known[0]}")
        if m.app_id not in plan.mail_reach:
            problems.append(f"{where}: the app has no mailboxes in {MAIL_REACH}")
        wanted[(m.app_id, m.role.lower())] = set(plan.mail_reach.get(m.app_id, ()))
        batches[m.app_id].add(m.batch)
    got: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row, asg in enumerate(plan.assignments, start=2):
        if asg.kind == KIND_SMTP:
            continue
        where = f"{ASSIGNMENTS} row {row} ({asg.key})"
        if asg.kind not in ASSIGNMENT_KINDS:
            problems.append(f"{where}: kind must be one of {', '.join(ASSIGNMENT_KINDS)}, not {asg.kind!r}")
            continue
        if (asg.app_id, asg.role.lower()) not in wanted:
            problems.append(f"{where}: {asg.role!r} serves no permission {MAIL_ACCESS} lists for app {asg.app_id}")
        reached = _assignment_scope(asg, where, scopes, scope_batch, problems)
        if reached is None:
            continue
        got[(asg.app_id, asg.role.lower())] |= reached
        batches[asg.app_id].add(asg.batch)
    for (app, role), want in sorted(wanted.items()):
        have = got.get((app, role), set())
        gained, lost = have - want, want - have
        if gained:
            problems.append(f"app {app} would gain {role!r} on {len(gained)} mailbox(es) its access policy does not "
                            f"allow today, e.g. {', '.join(sorted(gained)[:3])}")
        if lost:
            problems.append(f"app {app} would lose {role!r} on {len(lost)} mailbox(es), e.g. "
                            f"{', '.join(sorted(lost)[:3])}")
    apps = {m.app_id for m in plan.mail_access}
    for app in sorted(set(plan.mail_reach) - apps):
        problems.append(f"{MAIL_REACH}: app {app} has mailboxes but no row in {MAIL_ACCESS}")
    for row, pol in enumerate(plan.policies, start=2):
        where = f"{ACCESS_POLICIES} row {row} ({pol.identity})"
        if pol.access_right != "RestrictAccess":
            problems.append(f"{where}: only RestrictAccess policies are migrated, not {pol.access_right!r}")
        if pol.app_id not in apps:
            problems.append(f"{where}: app {pol.app_id} has no row in {MAIL_ACCESS}")
        batches[pol.app_id].add(pol.batch)
    return batches


def _check_groups(plan: Plan, problems: list[str]) -> dict[str, PlanGroup]:
    """groups.csv: unique keys, a status, a DN exactly when reused, members. Returns the groups by key."""
    groups: dict[str, PlanGroup] = {}
    for row, g in enumerate(plan.groups, start=2):
        where = f"{GROUPS} row {row} ({g.key})"
        if g.key in groups:
            problems.append(f"{where}: duplicate group key")
        groups[g.key] = g
        if g.status not in (NEW, REUSE):
            problems.append(f"{where}: status must be {NEW} or {REUSE}, not {g.status!r}")
        if g.status == REUSE and not g.dn:
            problems.append(f"{where}: a reused group needs its DN")
        if g.status == NEW and g.dn:
            problems.append(f"{where}: a new group has no DN until it is created")
        if not g.members:
            problems.append(f"{where}: has no members")
    return groups


def _check_scopes(plan: Plan, groups: dict[str, PlanGroup],
                  problems: list[str]) -> tuple[dict[str, frozenset[str]], dict[str, int]]:
    """scopes.csv: known groups and filterable attributes, the filter and kind they imply, created no earlier than
    their groups. Returns each scope's mailboxes and batch by key."""
    attr_sets: dict[tuple[str, str], set[str]] = defaultdict(set)
    for attribute, value, mailbox in plan.attributes:
        attr_sets[(attribute, value.casefold())].add(mailbox)  # OPATH -eq compares case-insensitively

    scopes: dict[str, frozenset[str]] = {}
    scope_batch: dict[str, int] = {}
    for row, s in enumerate(plan.scopes, start=2):
        where = f"{SCOPES} row {row} ({s.key})"
        if s.key in scopes:
            problems.append(f"{where}: duplicate scope key")
        unknown = [k for k in s.groups if k not in groups]
        bad_attr = [a for a, _ in s.attributes if a not in FILTERABLE_ATTRIBUTES]
        if unknown:
            problems.append(f"{where}: unknown group(s) {', '.join(unknown)}")
        if bad_attr:
            problems.append(f"{where}: not a filterable attribute: {', '.join(bad_attr)}")
        if not s.groups and not s.attributes:
            problems.append(f"{where}: matches no group and no attribute")
        members: set[str] = set()
        if not unknown and not bad_attr and (s.groups or s.attributes):
            members = _scope_members(s, where, groups, attr_sets, problems)
        scopes[s.key] = frozenset(members)
        scope_batch[s.key] = s.batch
    return scopes, scope_batch


def _scope_members(s: PlanScope, where: str, groups: dict[str, PlanGroup],
                   attr_sets: dict[tuple[str, str], set[str]], problems: list[str]) -> set[str]:
    """The mailboxes of a well-formed scope (its groups' members and its attribute values'), checking its filter,
    its kind and that its groups exist by its batch."""
    try:
        expected_filter: str | None = render_filter(s.groups, s.attributes, groups)
    except ValueError as exc:
        expected_filter = None
        problems.append(f"{where}: {exc}")
    if expected_filter is not None and s.filter != expected_filter:
        problems.append(f"{where}: filter does not match its groups and attributes "
                        f"(expected {expected_filter!r})")
    if s.kind != scope_kind(s.groups, s.attributes):
        problems.append(f"{where}: kind should be {scope_kind(s.groups, s.attributes)!r}")
    members: set[str] = set()
    for k in s.groups:
        members |= groups[k].members
        if groups[k].batch > s.batch:
            problems.append(f"{where}: in batch {s.batch}, but group {k} is only created in batch "
                            f"{groups[k].batch}")
    for a, v in s.attributes:
        matched = attr_sets.get((a, v.casefold()))
        if not matched:
            problems.append(f"{where}: no mailbox recorded in {ATTRIBUTES} for {a} = {v!r}")
        else:
            members |= matched
    return members


def _check_grants(plan: Plan, problems: list[str]) -> tuple[dict[str, set[str]], dict[str, set[int | None]]]:
    """grants.csv: SendAs migrated; FullAccess kept, or in the app's set when it has a batch. Returns each app's
    SMTP reach (the mailboxes its RBAC set must equal) and the batches of those grants."""
    expected: dict[str, set[str]] = defaultdict(set)
    grant_batches: dict[str, set[int | None]] = defaultdict(set)
    for row, grant in enumerate(plan.grants, start=2):
        right, action = grant.right, grant.action
        if right == Right.SEND_AS:
            if action == KEEP and grant.batch is None:
                continue  # its app is left as it is (existing RBAC beyond or not known): in no batch, checked there
            if action != MIGRATE:
                problems.append(f"{_grant_where(row, grant)}: a SendAs grant must be migrated, not {action!r}")
            expected[grant.app_id].add(grant.mailbox)
            grant_batches[grant.app_id].add(grant.batch)
        elif right == Right.FULL_ACCESS:
            # A FullAccess grant with a batch is SMTP reach (its app's token carries SMTP.SendAsApp): its mailbox is
            # in the app's RBAC set. Without a batch it is not, and it is kept. Removal (migrate) needs the batch.
            if action not in (KEEP, MIGRATE):
                problems.append(f"{_grant_where(row, grant)}: action must be {KEEP} or {MIGRATE}, not {action!r}")
            elif grant.batch is not None:
                expected[grant.app_id].add(grant.mailbox)
                grant_batches[grant.app_id].add(grant.batch)
            elif action == MIGRATE:
                problems.append(f"{_grant_where(row, grant)}: a FullAccess grant is removed only when its SMTP reach "
                                "moves to RBAC (it needs the app's batch)")
        else:
            problems.append(f"{_grant_where(row, grant)}: unknown right {right!r}")
    return expected, grant_batches


def _check_assignments(plan: Plan, scopes: dict[str, frozenset[str]], scope_batch: dict[str, int],
                       problems: list[str]) -> tuple[dict[str, set[str]], dict[str, set[int]]]:
    """assignments.csv: the plan's role, a known scope created no later. Returns each app's RBAC reach and the
    batches of its assignments."""
    role = plan.meta.get("role")
    effective: dict[str, set[str]] = defaultdict(set)
    assignment_batches: dict[str, set[int]] = defaultdict(set)
    for row, asg in enumerate(plan.assignments, start=2):
        where = f"{ASSIGNMENTS} row {row} ({asg.key})"
        if asg.kind != KIND_SMTP:
            continue  # Graph/EWS: checked against mail_access.csv (_check_mail)
        if role and asg.role != role:
            problems.append(f"{where}: role {asg.role!r} differs from the plan's role {role!r}")
        reached = _assignment_scope(asg, where, scopes, scope_batch, problems)
        if reached is None:
            continue
        effective[asg.app_id] |= reached
        assignment_batches[asg.app_id].add(asg.batch)
    return effective, assignment_batches


def _assignment_scope(asg: PlanAssignment, where: str, scopes: dict[str, frozenset[str]],
                      scope_batch: dict[str, int], problems: list[str]) -> frozenset[str] | None:
    """The mailboxes of an assignment's scope (None: no such scope), noting a scope created after the assignment."""
    if asg.scope not in scopes:
        problems.append(f"{where}: unknown scope {asg.scope!r}")
        return None
    if scope_batch[asg.scope] > asg.batch:
        problems.append(f"{where}: in batch {asg.batch}, but scope {asg.scope} is only created in batch "
                        f"{scope_batch[asg.scope]}")
    return scopes[asg.scope]


def _check_existing(plan: Plan, effective: dict[str, set[str]], assignment_batches: dict[str, set[int]],
                    problems: list[str]) -> None:
    """existing.csv: a reused assignment has the plan's role and the app's batch, and its mailboxes count in the
    app's RBAC set; the other rows (apps left as they are, or with nothing to do) list no mailboxes."""
    role = plan.meta.get("role")
    seen: set[str] = set()
    for row, e in enumerate(plan.existing, start=2):
        where = f"{EXISTING} row {row} ({e.assignment})"
        if e.assignment.lower() in seen:
            problems.append(f"{where}: listed twice")
        seen.add(e.assignment.lower())
        if e.action not in tuple(ExistingAction):
            problems.append(f"{where}: action must be one of {', '.join(ExistingAction)}, not {e.action!r}")
        elif e.action == ExistingAction.REUSE:
            if role and e.role.lower() != str(role).lower():
                problems.append(f"{where}: role {e.role!r} differs from the plan's role {role!r}")
            if e.batch is None:
                problems.append(f"{where}: a reused assignment needs its app's batch")
                continue
            effective[e.app_id] |= e.members
            assignment_batches[e.app_id].add(e.batch)
        elif e.members or e.batch is not None:
            problems.append(f"{where}: only a reused assignment has a batch and mailboxes")


def _check_access(expected: dict[str, set[str]], effective: dict[str, set[str]], problems: list[str]) -> None:
    """Exactness: each app's RBAC reach equals the mailboxes it migrates (no over-grant, no access lost)."""
    for app in sorted(set(expected) | set(effective)):
        gained = effective[app] - expected[app]
        lost = expected[app] - effective[app]
        if gained:
            problems.append(f"app {app} would gain {len(gained)} mailbox(es) it cannot send as today, e.g. "
                            f"{', '.join(sorted(gained)[:3])}")
        if lost:
            problems.append(f"app {app} would lose {len(lost)} mailbox(es), e.g. {', '.join(sorted(lost)[:3])}")


def _check_names(plan: Plan, problems: list[str]) -> None:
    """What the executor creates must be nameable (New-DistributionGroup -Name takes at most 64 characters) and
    the names distinct."""
    seen_names: dict[str, str] = {}
    named: tuple[tuple[str, Sequence[PlanGroup | PlanScope | PlanAssignment]], ...] = (
        (GROUPS, [g for g in plan.groups if g.status == NEW]), (SCOPES, plan.scopes),
        (ASSIGNMENTS, plan.assignments))
    for kind, objects in named:
        for obj in objects:
            if not obj.name or len(obj.name) > MAX_NAME:
                problems.append(f"{kind} {obj.key}: name must be 1-{MAX_NAME} characters, not {obj.name!r}")
            elif obj.name.lower() in seen_names:
                problems.append(f"{kind} {obj.key}: name {obj.name!r} is also used by {seen_names[obj.name.lower()]}")
            else:
                seen_names[obj.name.lower()] = obj.key


def _check_batches(plan: Plan, expected: dict[str, set[str]], effective: dict[str, set[str]],
                   grant_batches: dict[str, set[int | None]], assignment_batches: dict[str, set[int]],
                   problems: list[str], mail_batches: dict[str, set[int]] | None = None) -> None:
    """batches.csv: numbered in sequence, every migrating app in exactly one batch, its grants and assignments in
    that batch."""
    batch_of: dict[str, int] = {}
    for row, b in enumerate(plan.batches, start=2):
        if b.number != row - 1:
            problems.append(f"{BATCHES} row {row}: batch {b.number} out of sequence (expected {row - 1})")
        for app in b.apps:
            if app in batch_of:
                problems.append(f"{BATCHES} row {row}: app {app} is also in batch {batch_of[app]}")
            batch_of[app] = b.number
        migrated = sum(len(expected[app]) for app in b.apps)
        if b.grants != migrated:
            problems.append(f"{BATCHES} row {row}: grants {b.grants}, but its apps migrate {migrated}")
    for g in plan.grants:
        if g.right == Right.SEND_AS and g.action == KEEP and g.app_id in batch_of:
            problems.append(f"app {g.app_id} keeps SendAs grants (left as it is) but is in batch {batch_of[g.app_id]}")
            break
    for app in sorted(set(expected) | set(effective)):
        if app not in batch_of:
            problems.append(f"app {app} migrates grants but is in no batch")
            continue
        if grant_batches[app] - {batch_of[app]}:
            problems.append(f"app {app}: its grants are not all in batch {batch_of[app]}")
        if assignment_batches[app] - {batch_of[app]}:
            problems.append(f"app {app}: its assignments are not all in batch {batch_of[app]}")
    for app, numbers in sorted((mail_batches or {}).items()):
        if app not in batch_of:
            problems.append(f"app {app} moves Graph/EWS access but is in no batch")
        elif numbers - {batch_of[app]}:
            problems.append(f"app {app}: its Graph/EWS rows are not all in batch {batch_of[app]}")


def _grant_where(row: int, g: PlanGrant) -> str:
    return f"{GRANTS} row {row} ({g.app_id}, {g.mailbox}, {g.right})"


def _raise_if_inexact(plan: Plan, where: Path | str) -> None:
    problems = check_exact(plan)
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
        more = f" (and {len(problems) - MAX_PROBLEMS_SHOWN} more)" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise PlanError(f"the plan is not exact or not consistent: {shown}{more}", path=str(where))


# ------------------------------------------------------------------------------------------------ write


# Row digests: 24 bits of CRC-32 per row, packed and base64-encoded per file (4 characters a row). They only
# locate an edit for the error message; the file's SHA-256 in plan.json is what decides that it was edited.
def _row_digest(cells: Sequence[str]) -> bytes:
    return (zlib.crc32("\x1f".join(cells).encode("utf-8")) & 0xFFFFFF).to_bytes(3, "big")


_US = "\x1f"  # joins a row's cells for the digest; never in our own values
_NEEDS_NEUTRALISING = re.compile("\x1f[" + re.escape("".join(csvio.FORMULA_PREFIXES)) + "]")
_NEEDS_QUOTING = re.compile('[,"\r\n]')


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> tuple[str, str]:
    """Stream a CSV file of string cells, neutralised against formula injection (csvio.neutralise); returns its
    SHA-256 and its row digests (header first, base64).

    A million rows: each row is joined once, and that string is searched for a cell needing neutralising or
    quoting; a row with neither (nearly all) is written as the joined string with commas, which is exactly what
    csv.writer would write, and any other row goes through csv.writer.
    """
    digests = [_row_digest(header)]
    add = digests.append
    needs_neutralising, needs_quoting = _NEEDS_NEUTRALISING.search, _NEEDS_QUOTING.search
    starts = tuple(csvio.FORMULA_PREFIXES)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(header)
        write_row, write = writer.writerow, fh.write
        for cells in rows:
            joined = _US.join(cells)
            if joined.startswith(starts) or needs_neutralising(joined):
                cells = [csvio.neutralise(c) for c in cells]
                joined = _US.join(cells)
            add((zlib.crc32(joined.encode("utf-8")) & 0xFFFFFF).to_bytes(3, "big"))
            if needs_quoting(joined) or joined.count(_US) != len(cells) - 1 or (len(cells) == 1 and not joined):
                write_row(cells)
            else:
                write(joined.replace(_US, ",") + "\r\n")
    return csvio.sha256_file(path), base64.b64encode(b"".join(digests)).decode("ascii")


class _Text(dict):
    """int -> its text, computed once (a million grant rows share a few hundred batch numbers)."""

    def __missing__(self, key):
        self[key] = text = str(key)
        return text


def _file_rows(plan: Plan) -> dict[str, Iterable[Sequence[str]]]:
    batch_text = _Text({None: ""})
    app_names: dict[str, str] = {}
    for a in plan.assignments:
        app_names.setdefault(a.app_id, a.app_name)
    for g in plan.grants:
        app_names.setdefault(g.app_id, g.app_name)
    return {
        GRANTS: ((g.app_id, g.app_name, g.mailbox, g.right, g.action, g.reason,
                  batch_text[g.batch]) for g in plan.grants),
        GROUPS: ((g.key, g.name, g.status, g.dn, str(len(g.members)), g.alias, g.address, str(g.batch), str(g.apps))
                 for g in plan.groups),
        MEMBERSHIPS: ((g.key, m) for g in plan.groups for m in sorted(g.members)),
        SCOPES: ((s.key, s.name, s.filter, ";".join(s.groups), s.kind, encode_attributes(s.attributes), str(s.batch),
                  s.note) for s in plan.scopes),
        ASSIGNMENTS: ((a.key, a.app_id, a.app_name, a.role, a.scope, str(a.batch), a.name, a.kind)
                      for a in plan.assignments),
        BATCHES: ((str(b.number), ";".join(b.apps), str(b.grants), b.note, str(b.mailboxes), str(b.new_groups),
                   str(b.scopes), str(b.assignments), ";".join(app_names.get(a, "").replace(";", ",") for a in b.apps))
                  for b in plan.batches),
        ATTRIBUTES: plan.attributes,
        **({EXISTING: ((e.app_id, e.app_name, e.assignment, e.role, e.scope, e.filter, e.action,
                        batch_text[e.batch], str(len(e.members)), e.note) for e in plan.existing),
            EXISTING_MEMBERS: ((e.assignment, m) for e in plan.existing for m in sorted(e.members))}
           if plan.existing else {}),
        **({MAIL_ACCESS: ((m.app_id, m.app_name, m.permission, m.resource, m.role, str(m.batch))
                          for m in plan.mail_access),
            MAIL_REACH: ((app, mb) for app in sorted(plan.mail_reach) for mb in sorted(plan.mail_reach[app])),
            ACCESS_POLICIES: ((p.identity, p.app_id, p.app_name, p.access_right, p.scope, str(p.batch))
                              for p in plan.policies)}
           if plan.mail_access or plan.mail_reach or plan.policies else {}),
    }


def _columns(name: str) -> tuple[str, ...]:
    return COLUMNS[name] if name in COLUMNS else OPTIONAL_COLUMNS[name]


JOURNAL_FILE = "journal.db"  # written by the executor into the plan folder
UNDO_LOG_FILE = "undo-log.jsonl"  # the executor's second record of every removal, beside the journal


def write_plan(plan: Plan, out: Path, *, overwrite: bool = False) -> Path:
    """Write the plan folder at `out` atomically; refuses (PlanError) a plan that is not exact."""
    out = Path(out)
    _raise_if_inexact(plan, out)
    for record in (JOURNAL_FILE, UNDO_LOG_FILE):
        if (out / record).exists():
            # The journal and the undo log hold the prior state of every grant a run removed: replacing the folder
            # would lose it.
            raise PlanError(f"holds a run's record ({record}); a plan that has run is never replaced. "
                            "Write the new plan to another folder", path=str(out))
    meta = {k: v for k, v in plan.meta.items() if k not in ("counts", "files")}
    meta.setdefault("format", FORMAT)
    meta["counts"] = plan_counts(plan)
    files: dict[str, str] = {}
    rowhashes: dict[str, str] = {}
    with csvio.atomic_folder(out, overwrite=overwrite) as tmp:
        for name, rows in _file_rows(plan).items():
            files[name], rowhashes[name] = _write_csv(tmp / name, _columns(name) + EXTRA_COLUMNS.get(name, ()), rows)
        rh = json.dumps({"format": FORMAT, "digest": "base64 of 3 bytes a row (header first): the low 24 bits of "
                                                    "CRC-32 of the row's cells joined by U+001F",
                         "files": rowhashes}, indent=1) + "\n"
        (tmp / ROWHASH_FILE).write_bytes(rh.encode("utf-8"))
        files[ROWHASH_FILE] = hashlib.sha256(rh.encode("utf-8")).hexdigest()
        meta["files"] = files
        # newline="\n": LF on Windows too, so the file (and the journal's digest of it) is the same everywhere
        (tmp / PLAN_JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8", newline="\n")
    return out


# ------------------------------------------------------------------------------------------------ load


def load_plan(path: Path) -> Plan:
    """Read a plan folder: every file must match its SHA-256 in plan.json (else PlanError naming the file and the
    first changed row), every cell must parse, and the plan must still be exact."""
    path = Path(path)
    meta = _read_meta(path)
    files = meta.get("files")
    optional = [n for n in OPTIONAL_COLUMNS if isinstance(files, dict) and n in files]
    partial = any(0 < sum(n in optional for n in group) < len(group) for group in OPTIONAL_GROUPS)
    if not isinstance(files, dict) or set(files) != set(CSV_FILES) | {ROWHASH_FILE} | set(optional) or partial:
        raise PlanError("the `files` list is missing or incomplete", path=str(path / PLAN_JSON), field="files")
    rowhash_path = path / ROWHASH_FILE
    _verify_hash(rowhash_path, files[ROWHASH_FILE], None)
    rowhashes = json.loads(rowhash_path.read_text(encoding="utf-8")).get("files", {})
    for name in (*CSV_FILES, *optional):
        _verify_hash(path / name, files[name], rowhashes.get(name))

    # the two big files (a million rows each) are read as plain tuples; the others as dicts
    grant_list: list[PlanGrant] = []
    add, new = grant_list.append, tuple.__new__
    batch_numbers: dict[str, int | None] = {"": None}
    for p, n, (app, name, mailbox, right, action, reason, batch) in _read_columns(path, GRANTS):
        number = batch_numbers.get(batch, -1)
        if number == -1:
            number = batch_numbers[batch] = _int({"batch": batch}, "batch", p, n)
        add(new(PlanGrant, (app, name, mailbox, right, action, reason, number)))
    grants = tuple(grant_list)
    members: dict[str, set[str]] = defaultdict(set)
    for _p, _n, (group, mailbox) in _read_columns(path, MEMBERSHIPS):
        members[group].add(mailbox)
    groups = []
    for p, n, r in _read(path, GROUPS):
        g = PlanGroup(r["group"], r["name"], r["status"], r["dn"], frozenset(members.pop(r["group"], ())),
                      r["alias"], r["address"], _int(r, "batch", p, n), _int(r, "apps", p, n))
        if _int(r, "members", p, n) != len(g.members):
            raise PlanError(f"says {r['members']} members, {MEMBERSHIPS} lists {len(g.members)}", path=str(p),
                            row=n, field="members")
        groups.append(g)
    if members:
        raise PlanError(f"memberships of unknown group(s) {', '.join(sorted(members)[:5])}",
                        path=str(path / MEMBERSHIPS))
    scopes = []
    for p, n, r in _read(path, SCOPES):
        try:
            attrs = decode_attributes(r["attributes"])
        except ValueError as exc:
            raise PlanError(str(exc), path=str(p), row=n, field="attributes") from None
        scopes.append(PlanScope(r["scope"], r["name"], r["filter"], tuple(k for k in r["groups"].split(";") if k),
                                r["kind"], attrs, _int(r, "batch", p, n), r["note"]))
    assignments = tuple(PlanAssignment(r["assignment"], r["app_id"], r["app_name"], r["role"], r["scope"],
                                       _int(r, "batch", p, n), r["name"], r.get("kind") or KIND_SMTP)
                        for p, n, r in _read(path, ASSIGNMENTS))
    batches = tuple(PlanBatch(_int(r, "batch", p, n), tuple(a for a in r["apps"].split(";") if a),
                              _int(r, "grants", p, n), r["note"], _int(r, "mailboxes", p, n),
                              _int(r, "new_groups", p, n), _int(r, "scopes", p, n), _int(r, "assignments", p, n))
                    for p, n, r in _read(path, BATCHES))
    attributes = tuple((r["attribute"], r["value"], r["mailbox"]) for _p, _n, r in _read(path, ATTRIBUTES))
    mail_access, mail_reach, policies = _read_mail(path) if MAIL_ACCESS in optional else ((), {}, ())
    plan = Plan(meta, grants, tuple(groups), tuple(scopes), assignments, batches, attributes, path,
                _read_existing(path) if EXISTING in optional else (), mail_access, mail_reach, policies)
    _raise_if_inexact(plan, path)
    counts = plan_counts(plan)
    for key, value in counts.items():
        if meta.get("counts", {}).get(key) != value:
            raise PlanError(f"counts.{key} is {meta.get('counts', {}).get(key)!r}, the files give {value!r}",
                            path=str(path / PLAN_JSON), field=f"counts.{key}")
    return plan


def _read_existing(path: Path) -> tuple[PlanExisting, ...]:
    members: dict[str, set[str]] = defaultdict(set)
    for _p, _n, r in _read(path, EXISTING_MEMBERS):
        members[r["assignment"].lower()].add(r["mailbox"])
    out = []
    for p, n, r in _read(path, EXISTING):
        e = PlanExisting(r["app_id"], r["app_name"], r["assignment"], r["role"], r["scope"], r["filter"], r["action"],
                         _int(r, "batch", p, n) if r["batch"].strip() else None,
                         frozenset(members.pop(r["assignment"].lower(), ())), r["note"])
        if _int(r, "mailboxes", p, n) != len(e.members):
            raise PlanError(f"says {r['mailboxes']} mailboxes, {EXISTING_MEMBERS} lists {len(e.members)}",
                            path=str(p), row=n, field="mailboxes")
        out.append(e)
    if members:
        raise PlanError(f"mailboxes of unknown assignment(s) {', '.join(sorted(members)[:5])}",
                        path=str(path / EXISTING_MEMBERS))
    return tuple(out)


def _read_mail(path: Path) -> tuple[tuple[PlanMailAccess, ...], dict[str, frozenset[str]], tuple[PlanPolicy, ...]]:
    access = tuple(PlanMailAccess(r["app_id"], r["app_name"], r["permission"], r["resource"], r["role"],
                                  _int(r, "batch", p, n)) for p, n, r in _read(path, MAIL_ACCESS))
    reach: dict[str, set[str]] = defaultdict(set)
    for _p, _n, r in _read(path, MAIL_REACH):
        reach[r["app_id"]].add(r["mailbox"])
    policies = tuple(PlanPolicy(r["policy"], r["app_id"], r["app_name"], r["access_right"], r["scope"],
                                _int(r, "batch", p, n)) for p, n, r in _read(path, ACCESS_POLICIES))
    return access, {app: frozenset(m) for app, m in reach.items()}, policies


def _read_meta(path: Path) -> dict:
    meta_path = path / PLAN_JSON
    if not path.is_dir():
        raise PlanError("plan folder not found", path=str(path))
    if not meta_path.exists():
        raise PlanError("missing: not a plan folder", path=str(meta_path))
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlanError(f"not valid JSON ({exc})", path=str(meta_path)) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PlanError(f"unsupported plan format (expected {FORMAT})", path=str(meta_path), field="format")
    return meta


def _verify_hash(file: Path, expected: str, row_digests: str | None) -> None:
    if not file.exists():
        raise PlanError("missing from the plan folder", path=str(file))
    if csvio.sha256_file(file) == expected:
        return
    message = ("changed after the plan was hashed (its SHA-256 differs from plan.json); make a new plan with "
               "`migrator plan` rather than editing this one")
    row = _first_changed_row(file, row_digests) if row_digests is not None else None
    if row is None and row_digests is not None:
        message += " (every row reads the same: line endings, encoding or quoting changed)"
    raise PlanError(message, path=str(file), row=row)


def _first_changed_row(file: Path, row_digests: str) -> int | None:
    try:
        packed = base64.b64decode(row_digests, validate=True)
    except ValueError:
        return None
    stored = [packed[i:i + 3] for i in range(0, len(packed), 3)]
    try:
        with open(file, newline="", encoding="utf-8-sig") as fh:
            actual = [_row_digest(cells) for cells in csv.reader(fh)]
    except (UnicodeDecodeError, csv.Error):
        return None
    for i, (a, s) in enumerate(zip(actual, stored)):
        if a != s:
            return i + 1
    if len(actual) != len(stored):
        return min(len(actual), len(stored)) + 1
    return None


def _read(path: Path, name: str):
    """Yield (file path, spreadsheet row number, row dict); the header must hold the contract's columns."""
    file = path / name
    with open(file, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        missing = [c for c in _columns(name) if c not in header]
        if missing:
            raise PlanError(f"missing column(s) {', '.join(missing)}", path=str(file), row=1)
        for n, cells in enumerate(reader, start=2):
            if len(cells) != len(header):
                raise PlanError(f"has {len(cells)} fields, the header has {len(header)}", path=str(file), row=n)
            yield file, n, {k: csvio.unneutralise(v) for k, v in zip(header, cells)}


def _read_columns(path: Path, name: str):
    """Yield (file path, spreadsheet row number, the contract's columns as a list, in COLUMNS order)."""
    file = path / name
    unneutralise = csvio.unneutralise
    with open(file, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        missing = [c for c in COLUMNS[name] if c not in header]
        if missing:
            raise PlanError(f"missing column(s) {', '.join(missing)}", path=str(file), row=1)
        idx = [header.index(c) for c in COLUMNS[name]]
        width = len(header)
        in_order = idx == list(range(width))
        for n, cells in enumerate(reader, start=2):
            if len(cells) != width:
                raise PlanError(f"has {len(cells)} fields, the header has {width}", path=str(file), row=n)
            if "'" in "".join(cells):  # rare: only then can a cell be neutralised
                cells = [unneutralise(c) for c in cells]
            yield file, n, (cells if in_order else [cells[i] for i in idx])


def _int(row: dict[str, str], name: str, file: Path, n: int) -> int:
    text = row[name].strip()
    try:
        return int(text)
    except ValueError:
        raise PlanError("must be a whole number", path=str(file), row=n, field=name, value=text) from None
