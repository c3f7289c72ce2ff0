"""Existing RBAC for Applications: the apps' `Application ...` role assignments, their scopes, and the mailboxes each
one reaches, worked out from what the inventory already holds (mailboxes, their attributes, groups' direct members).

Shared by both inventory paths (exports.build_inventory classifies Get-ManagementRoleAssignment and
Get-ManagementScope rows, live or exported). A reach is either exact (every mailbox the scope selects is known) or
unknown: a filter on a property the inventory does not hold, a group it did not read, an administrative unit, an
Exclusive scope or one with a RecipientRoot. Unknown is never guessed: the planner leaves such an app as it is and
says why (planner/existing.py).

RBAC scopes see a group's *direct* members only (docs/exchange.md §2), so `MemberOfGroup -eq '<DN>'` is that group's
direct mailbox members as read; a nested group adds nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from migrator.model import FILTERABLE_ATTRIBUTES, RBAC_ROLE_SMTP_SEND_AS, Group, Mailbox

APPLICATION_ROLE_PREFIX = "application "
EXACT, UNKNOWN = "exact", "unknown"
REACHES = (EXACT, UNKNOWN)
# How an assignment is scoped (Get-ManagementRoleAssignment): a management scope, a group, an administrative unit, or
# nothing (the whole organisation).
SCOPE_TYPES = ("custom", "group", "administrative_unit", "organization")


@dataclass(frozen=True)
class RbacAssignment:
    """One `Application ...` role assignment held by an app's service principal, with the mailboxes it reaches."""

    app_id: str
    name: str  # the assignment's Name
    role: str  # e.g. "Application SMTP.SendAsApp"
    scope_type: str  # one of SCOPE_TYPES
    scope: str  # the management scope's name, the group's address, the unit's id; "" for the organisation
    filter: str  # the scope's RecipientRestrictionFilter as read ("" unless custom)
    reach: str  # EXACT or UNKNOWN
    mailboxes: frozenset[str] = frozenset()  # the mailboxes it reaches (empty when unknown)
    note: str = ""  # why the reach is unknown, or what it means

    @property
    def smtp(self) -> bool:
        return self.role.strip().lower() == RBAC_ROLE_SMTP_SEND_AS.lower()

    def serves(self, role: str) -> bool:
        return self.role.strip().lower() == role.strip().lower()


class Unknown(Exception):
    """A filter (or part of one) whose reach cannot be worked out exactly from the inventory."""


# ------------------------------------------------------------------------------------------ OPATH evaluation

_TOKEN = re.compile(r"""\s*(?:
      (?P<lp>\() | (?P<rp>\)) | (?P<bang>!)
    | (?P<op>-[A-Za-z]+)
    | '(?P<sq>(?:[^']|'')*)'
    | "(?P<dq>[^"]*)"
    | (?P<var>\$[A-Za-z]+)
    | (?P<word>[^\s()'"]+)
    )""", re.VERBOSE)

# Mailbox properties the inventory holds and a filter may compare (OPATH names, lower case).
_BASE_PROPERTIES: dict[str, Callable[[Mailbox], str]] = {
    "primarysmtpaddress": lambda m: m.address,
    "windowsemailaddress": lambda m: m.address,
    "alias": lambda m: m.alias,
    "name": lambda m: m.name,
    "displayname": lambda m: m.display_name,
    "userprincipalname": lambda m: m.upn,
    "recipienttypedetails": lambda m: m.recipient_type,
    "externaldirectoryobjectid": lambda m: m.external_id,
    "guid": lambda m: m.guid,
    "distinguishedname": lambda m: m.dn,
}


def _attribute_getter(name: str) -> Callable[[Mailbox], str]:
    return lambda m: m.attribute(name)


PROPERTIES: dict[str, Callable[[Mailbox], str]] = {
    **_BASE_PROPERTIES, **{a.lower(): _attribute_getter(a) for a in FILTERABLE_ATTRIBUTES}}


def _tokens(text: str) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unknown(f"cannot read the filter at {text[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "sq":
            out.append(("value", (m.group("sq") or "").replace("''", "'")))
        elif kind == "dq":
            out.append(("value", m.group("dq") or ""))
        elif kind == "var":
            var = (m.group("var") or "").lower()
            if var != "$null":
                raise Unknown(f"cannot evaluate the value {var}")
            out.append(("value", None))
        elif kind == "op":
            out.append(("op", (m.group("op") or "").lower()))
        elif kind == "word":
            out.append(("word", m.group("word")))
        else:
            out.append((kind or "", None))
    return out


class _Evaluator:
    """A small recursive-descent evaluator: -or, -and, -not/!, parentheses, `Property -eq|-ne|-like|-notlike value`.
    Sets of mailbox addresses throughout; the universe is every mailbox the inventory holds."""

    def __init__(self, tokens: list[tuple[str, object]], universe: frozenset[str], mailboxes: list[Mailbox],
                 groups_by_dn: Mapping[str, Group] | None) -> None:
        self.t, self.i = tokens, 0
        self.universe, self.mailboxes, self.groups = universe, mailboxes, groups_by_dn

    def peek(self) -> tuple[str, object] | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self) -> tuple[str, object]:
        tok = self.peek()
        if tok is None:
            raise Unknown("the filter ends too early")
        self.i += 1
        return tok

    def expr(self) -> frozenset[str]:
        out = self.conj()
        while self.peek() == ("op", "-or"):
            self.i += 1
            out = out | self.conj()
        return out

    def conj(self) -> frozenset[str]:
        out = self.neg()
        while self.peek() == ("op", "-and"):
            self.i += 1
            out = out & self.neg()
        return out

    def neg(self) -> frozenset[str]:
        tok = self.take()
        if tok in (("op", "-not"), ("bang", None)):
            return self.universe - self.neg()
        if tok[0] == "lp":
            inner = self.expr()
            if self.take()[0] != "rp":
                raise Unknown("unbalanced parentheses")
            return inner
        if tok[0] != "word":
            raise Unknown(f"unexpected {tok[1] or tok[0]!r}")
        prop = str(tok[1])
        op = self.take()
        if op[0] != "op" or op[1] not in ("-eq", "-ne", "-like", "-notlike"):
            raise Unknown(f"cannot evaluate the operator after {prop}")
        kind, value = self.take()
        if kind not in ("value", "word"):
            raise Unknown(f"no value after {prop} {op[1]}")
        return self.compare(prop, str(op[1]), value)

    def compare(self, prop: str, op: str, value: object) -> frozenset[str]:
        if prop.lower() == "memberofgroup":
            if op not in ("-eq", "-ne") or not isinstance(value, str):
                raise Unknown(f"cannot evaluate MemberOfGroup {op}")
            if self.groups is None:
                raise Unknown("MemberOfGroup: the inventory holds no groups with their members")
            group = self.groups.get(value.strip().lower())
            if group is None:
                raise Unknown(f"MemberOfGroup: no group with DistinguishedName {value!r} in the inventory")
            members = frozenset(group.members) & self.universe
            return members if op == "-eq" else self.universe - members
        getter = PROPERTIES.get(prop.lower())
        if getter is None:
            raise Unknown(f"the inventory does not hold the property {prop}")
        if value is None:
            hit = frozenset(m.address for m in self.mailboxes if not getter(m))
        elif op in ("-eq", "-ne"):
            want = str(value).casefold()
            hit = frozenset(m.address for m in self.mailboxes if getter(m) and getter(m).casefold() == want)
        else:
            pattern = str(value).casefold()
            hit = frozenset(m.address for m in self.mailboxes if fnmatch.fnmatchcase(getter(m).casefold(), pattern))
        return hit if op in ("-eq", "-like") else self.universe - hit


def filter_reach(text: str, mailboxes: Iterable[Mailbox], groups: Iterable[Group] | None) -> frozenset[str]:
    """The mailboxes a RecipientRestrictionFilter selects among `mailboxes`. Raises Unknown when that cannot be told
    exactly. `groups` None: groups (with their members) were not read, so a MemberOfGroup term is unknown."""
    mbx = list(mailboxes)
    universe = frozenset(m.address for m in mbx)
    by_dn = None if groups is None else {g.dn.strip().lower(): g for g in groups if g.dn}
    tokens = _tokens(text or "")
    if not tokens:
        raise Unknown("an empty filter")
    ev = _Evaluator(tokens, universe, mbx, by_dn)
    out = ev.expr()
    if ev.peek() is not None:
        raise Unknown(f"cannot read the filter after {ev.i} token(s)")
    return out


# ------------------------------------------------------------------------------------ from cmdlet rows (both paths)


@dataclass
class RbacReading:
    """What the role-assignment and scope rows gave: the apps' assignments and the rows left out, by reason."""

    assignments: list[RbacAssignment]
    skipped: dict[str, int]  # reason -> rows


def rbac_from_exports(assignment_files, scope_files, resolver, mailboxes: list[Mailbox],
                      groups: list[Group] | None) -> RbacReading:
    """Classify Get-ManagementRoleAssignment rows (psexport files, live or exported) into the apps' assignments.

    Kept: `Application ...` roles whose assignee is one of the inventory's service principals. A row naming a
    scope absent from the Get-ManagementScope rows (or with no such export) has an unknown reach, never an empty one.
    `groups` None: groups and members were not read."""
    from migrator.errors import InputError
    from migrator.inventory import psexport as px
    from migrator.inventory.resolve import Ambiguous

    scopes: dict[str, dict[str, str]] = {}
    for f in scope_files:
        for row, v in f.rows:
            name = v.get("name", "").strip() or v.get("identity", "").strip()
            if not name:
                raise InputError("must not be empty", path=str(f.path), row=row, field="Name")
            scopes[name.lower()] = v
            if v.get("identity"):
                scopes.setdefault(v["identity"].strip().lower(), v)
    out: list[RbacAssignment] = []
    skipped: dict[str, int] = {}
    for f in assignment_files:
        for row, v in f.rows:
            def need(column: str, label: str, row=row, v=v, f=f) -> str:
                value = v.get(column, "").strip()
                if not value:
                    raise InputError("must not be empty", path=str(f.path), row=row, field=label)
                return value

            role = need("role", "Role")
            if not role.lower().startswith(APPLICATION_ROLE_PREFIX):
                skipped["not an Application role"] = skipped.get("not an Application role", 0) + 1
                continue
            kind = v.get("roleassigneetype", "").strip().lower()
            if kind and kind != "serviceprincipal":
                skipped["assignee not a service principal"] = skipped.get("assignee not a service principal", 0) + 1
                continue
            name = need("name", "Name")
            column = "roleassigneename" if v.get("roleassigneename", "").strip() else "roleassignee"
            assignee = need(column, "RoleAssigneeName" if column == "roleassigneename" else "RoleAssignee")
            found = resolver.sp_index.lookup(assignee)
            if len(found) > 1:
                raise InputError(f"the assignee names several service principals: {', '.join(sorted(found))}",
                                 path=str(f.path), row=row, field="RoleAssigneeName", value=assignee)
            if not found:
                reason = "assignee not an inventoried service principal"
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            enabled = px.boolean(v["enabled"], path=f.path, row=row, column="Enabled") if v.get("enabled") else True
            app_id = next(iter(found))
            custom = v.get("customresourcescope", "").strip()
            group_scope = v.get("recipientgroupscope", "").strip()
            unit = v.get("recipientadministrativeunitscope", "").strip()
            try:
                if group_scope:  # first: such an assignment may also show the hidden scope it made (exchange.md §9)
                    item = _group_scoped(app_id, name, role, group_scope, resolver, groups)
                elif custom:
                    item = _custom(app_id, name, role, custom, scopes, bool(scope_files), mailboxes, groups)
                elif unit:
                    item = RbacAssignment(app_id, name, role, "administrative_unit", unit, "", UNKNOWN, frozenset(),
                                          "scoped to an administrative unit, whose members the inventory does not read")
                else:
                    item = RbacAssignment(app_id, name, role, "organization", "", "", EXACT,
                                          frozenset(m.address for m in mailboxes),
                                          "no scope: every mailbox of the organisation")
            except Ambiguous as exc:
                raise InputError(f"names several groups: {', '.join(exc.candidates)}", path=str(f.path), row=row,
                                 field="RecipientGroupScope", value=group_scope) from None
            if not enabled:
                item = RbacAssignment(item.app_id, item.name, item.role, item.scope_type, item.scope, item.filter,
                                      EXACT, frozenset(), "disabled: grants nothing while disabled")
            out.append(item)
    out.sort(key=lambda a: (a.app_id, a.name.lower()))
    return RbacReading(out, dict(sorted(skipped.items())))


def _custom(app_id: str, name: str, role: str, scope_name: str, scopes: Mapping[str, Mapping[str, str]],
            scopes_read: bool, mailboxes: list[Mailbox], groups: list[Group] | None) -> RbacAssignment:
    v = scopes.get(scope_name.lower())
    if v is None:
        why = ("no Get-ManagementScope rows were read" if not scopes_read
               else "the scope is not among the Get-ManagementScope rows")
        return RbacAssignment(app_id, name, role, "custom", scope_name, "", UNKNOWN, frozenset(), why)
    text = v.get("recipientfilter", "") or v.get("recipientrestrictionfilter", "")
    shown = v.get("name", "") or scope_name
    if (v.get("exclusive", "") or "").strip().lower() in ("true", "$true", "1"):
        return RbacAssignment(app_id, name, role, "custom", shown, text, UNKNOWN, frozenset(),
                              "an Exclusive scope (exclusive scopes do not restrict apps)")
    if (v.get("recipientroot", "") or "").strip():
        return RbacAssignment(app_id, name, role, "custom", shown, text, UNKNOWN, frozenset(),
                              f"the scope has a RecipientRoot ({v['recipientroot'].strip()}), not read")
    try:
        reach = filter_reach(text, mailboxes, groups)
    except Unknown as exc:
        return RbacAssignment(app_id, name, role, "custom", shown, text, UNKNOWN, frozenset(), f"filter: {exc}")
    return RbacAssignment(app_id, name, role, "custom", shown, text, EXACT, reach)


def _group_scoped(app_id: str, name: str, role: str, text: str, resolver, groups: list[Group] | None
                  ) -> RbacAssignment:
    address = resolver.group(text)
    members = {g.address: g for g in groups or ()}
    if address is None or address not in members:
        why = "groups were not read with their members" if groups is None else "the group is not in the inventory"
        return RbacAssignment(app_id, name, role, "group", text, "", UNKNOWN, frozenset(), why)
    return RbacAssignment(app_id, name, role, "group", address, "", EXACT,
                          frozenset(members[address].members) & frozenset(resolver.mailboxes),
                          "RecipientGroupScope: the group's direct members")

