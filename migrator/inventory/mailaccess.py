"""Graph/EWS access in the inventory: Application Access Policies, the policy scopes' effective members and the apps'
Entra application permissions that RBAC for Applications has roles for (docs/exchange.md §8, INTERNALS.md §1).

Three files, each written only when its source was read (present, even empty, means "read"; absent means "not
read", which the manifest says and which is never taken for "none"):
- `access_policies.csv`: one row per policy (Get-ApplicationAccessPolicy);
- `policy_members.csv`: the mailboxes each policy scope holds, nested groups followed (AAP honours nesting, RBAC
  does not: the set an app reaches today is this flattened one); `via` names the nested group a member came
  through (empty: a direct member, or the scope is the mailbox itself);
- `mail_permissions.csv`: per app, each consented permission of `model.AAP_PERMISSIONS` (Graph Mail.Read,
  Mail.Send, Calendars.ReadWrite, ...; Exchange full_access_as_app), read from the two resources'
  appRoleAssignedTo, so apps without an Exchange pointer are included.
Both inventory paths build these from rows in the same shape (`from_files`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from migrator import csvio
from migrator.errors import InputError
from migrator.inventory import psexport as px
from migrator.inventory.resolve import Ambiguous, Resolver
from migrator.model import AAP_PERMISSIONS, Group, Mailbox, norm_id

POLICIES_FILE = "access_policies.csv"
MEMBERS_FILE = "policy_members.csv"
PERMISSIONS_FILE = "mail_permissions.csv"
POLICY_COLUMNS = ("identity", "app_id", "access_right", "scope", "scope_kind", "scope_external_id", "description",
                  "is_valid")
MEMBER_COLUMNS = ("scope", "mailbox", "via")
PERMISSION_COLUMNS = ("app_id", "sp_object_id", "app_name", "resource", "permission", "rbac_role")
ACCESS_RIGHTS = ("RestrictAccess", "DenyAccess")
# scope_kind: a group whose members were flattened, a mailbox (its own member), or a scope the inventory could not
# find (deleted, or outside the exports): its members are unknown, never "none"
SCOPE_KINDS = ("group", "mailbox", "unknown")


@dataclass(frozen=True)
class AccessPolicy:
    identity: str
    app_id: str
    access_right: str  # RestrictAccess | DenyAccess
    scope: str  # the scope's primary address (lower case) when found, else the name the policy shows
    scope_kind: str  # SCOPE_KINDS
    scope_external_id: str = ""
    description: str = ""
    is_valid: bool = True


@dataclass(frozen=True)
class ScopeMember:
    scope: str  # a policy scope's address
    mailbox: str
    via: str = ""  # the nested group it came through ("" when direct)


@dataclass(frozen=True)
class MailPermission:
    app_id: str
    sp_object_id: str
    app_name: str
    resource: str  # Microsoft Graph | Office 365 Exchange Online
    permission: str  # a key of model.AAP_PERMISSIONS

    @property
    def rbac_role(self) -> str:
        return AAP_PERMISSIONS[self.permission][1]


@dataclass(frozen=True)
class MailAccess:
    """What the inventory read of Graph/EWS access; each `*_read` False means that part was not read."""

    policies: tuple[AccessPolicy, ...] = ()
    members: tuple[ScopeMember, ...] = ()
    permissions: tuple[MailPermission, ...] = ()
    policies_read: bool = False
    members_read: bool = False
    permissions_read: bool = False
    notes: dict = field(default_factory=dict, compare=False)

    def scope_mailboxes(self) -> dict[str, frozenset[str]]:
        """Policy scope address -> its effective (flattened) mailboxes."""
        out: dict[str, set[str]] = {p.scope: set() for p in self.policies if p.scope_kind != "unknown"}
        for m in self.members:
            out.setdefault(m.scope, set()).add(m.mailbox)
        return {k: frozenset(v) for k, v in out.items()}

    def manifest(self) -> dict:
        """The manifest's `access_policies` block: what was read, and why a part was not."""
        return {"policies_read": self.policies_read, "members_read": self.members_read,
                "permissions_read": self.permissions_read, **self.notes}

    def counts(self) -> dict[str, int | str]:
        def known(flag: bool, n: int) -> int | str:
            return n if flag else "not read"
        return {"access_policies": known(self.policies_read, len(self.policies)),
                "policy_scope_members": known(self.members_read, len(self.members)),
                "mail_permission_apps": known(self.permissions_read, len({p.app_id for p in self.permissions}))}


# ------------------------------------------------------------------------------------------------ from rows
def from_files(by_kind: dict[str, list[px.ExportFile]], resolver: Resolver, mailboxes: list[Mailbox],
               groups: list[Group], *, groups_read: bool) -> MailAccess:
    """MailAccess from Get-ApplicationAccessPolicy rows, the two resources' appRoleAssignedTo rows and the group
    member rows (`groups_read`: Get-DistributionGroup and its members were read, so nesting can be followed)."""
    notes: dict = {}
    policies_read = bool(by_kind.get(px.ACCESS_POLICIES))
    policies = _policies(by_kind.get(px.ACCESS_POLICIES, []), resolver, {m.address for m in mailboxes}) \
        if policies_read else []
    if not policies_read:
        notes["why_policies"] = "no Get-ApplicationAccessPolicy export (older exports): policies unknown"
    members: list[ScopeMember] = []
    members_read = policies_read and (groups_read or all(p.scope_kind != "group" for p in policies))
    if policies_read and members_read:
        members = _flatten(policies, by_kind.get(px.GROUP_MEMBERS, []), resolver, {g.address for g in groups},
                           {m.address for m in mailboxes})
    elif policies_read:
        notes["why_members"] = "groups or their members were not exported: the policy groups' members are unknown"
    permissions_read = bool(by_kind.get(px.APP_ROLE_ASSIGNED_TO))
    permissions = _permissions(by_kind.get(px.APP_ROLE_ASSIGNED_TO, [])) if permissions_read else []
    if not permissions_read:
        notes["why_permissions"] = "no appRoleAssignedTo export of Microsoft Graph / Office 365 Exchange Online: " \
                                   "the apps' mailbox permissions are unknown"
    return MailAccess(tuple(sorted(policies, key=lambda p: (p.app_id, p.identity))),
                      tuple(sorted(set(members), key=lambda m: (m.scope, m.mailbox))),
                      tuple(sorted(set(permissions), key=lambda p: (p.app_id, p.resource, p.permission))),
                      policies_read, members_read, permissions_read, notes)


def _cell(f: px.ExportFile, row: int, v: dict[str, str], column: str, label: str) -> str:
    value = v.get(column, "").strip()
    if not value:
        raise InputError("must not be empty", path=str(f.path), row=row, field=label)
    return value


def _policies(files: list[px.ExportFile], resolver: Resolver, addresses: set[str]) -> list[AccessPolicy]:
    out: dict[str, AccessPolicy] = {}
    for f in files:
        for row, v in f.rows:
            identity = _cell(f, row, v, "identity", "Identity")
            app_id = norm_id(_cell(f, row, v, "appid", "AppId"))
            right = _cell(f, row, v, "accessright", "AccessRight")
            canon = next((r for r in ACCESS_RIGHTS if r.lower() == right.lower()), None)
            if canon is None:
                raise InputError(f"must be {' or '.join(ACCESS_RIGHTS)}", path=str(f.path), row=row,
                                 field="AccessRight", value=right)
            raw = v.get("scopeidentityraw", "")
            external = norm_id(raw.split(";", 1)[1]) if ";" in raw else ""
            name = v.get("scopename", "") or v.get("scopeidentity", "")
            scope, kind = _scope(f, row, resolver, addresses, external, name)
            is_valid = px.boolean(v["isvalid"], path=f.path, row=row, column="IsValid") if v.get("isvalid") \
                else True
            out.setdefault(identity.lower(), AccessPolicy(identity, app_id, canon, scope, kind, external,
                                                          v.get("description", ""), is_valid))
    return list(out.values())


def _scope(f: px.ExportFile, row: int, resolver: Resolver, addresses: set[str], external: str,
           name: str) -> tuple[str, str]:
    """(scope address, kind): by the scope's object id first (ScopeIdentityRaw), then by its name."""
    for key in (external, name):
        if not key:
            continue
        try:
            group = resolver.group(key)
            mailbox = resolver.mailbox(key) if group is None else None
        except Ambiguous as exc:
            raise InputError(f"policy scope names several recipients: {', '.join(exc.candidates)}",
                             path=str(f.path), row=row, field="ScopeName", value=key) from None
        if group:
            return group, "group"
        if mailbox and mailbox in addresses:
            return mailbox, "mailbox"
    return (name or external).lower(), "unknown"


def _flatten(policies: list[AccessPolicy], files: list[px.ExportFile], resolver: Resolver, group_set: set[str],
             mailbox_set: set[str]) -> list[ScopeMember]:
    """Each policy scope's mailboxes, nested groups followed (cycle-safe)."""
    direct: dict[str, set[str]] = {}
    for f in files:
        group_col = next((c for c in px.GROUP_ID_COLUMNS if c in f.rows[0][1]), "") if f.rows else ""
        for _row, v in f.rows:
            text = v.get(group_col, "").strip()
            group = _lookup(resolver.group, text)
            if group is None:
                continue  # the reader of groups.csv already refuses a member row of an unknown group
            member = _member(v, resolver, group_set, mailbox_set)
            if member:
                direct.setdefault(group, set()).add(member)
    out: list[ScopeMember] = []
    for scope in sorted({p.scope for p in policies if p.scope_kind != "unknown"}):
        if scope in mailbox_set:
            out.append(ScopeMember(scope, scope, ""))
            continue
        seen = {scope}
        stack = [(scope, "")]
        while stack:
            group, via = stack.pop()
            for m in sorted(direct.get(group, ())):
                if m in mailbox_set:
                    out.append(ScopeMember(scope, m, via))
                elif m in group_set and m not in seen:
                    seen.add(m)
                    stack.append((m, via or m))
    return out


def _lookup(fn: Callable[[str], str | None], text: str) -> str | None:
    if not text:
        return None
    try:
        return fn(text)
    except Ambiguous:
        return None


def _member(v: dict[str, str], resolver: Resolver, group_set: set[str], mailbox_set: set[str]) -> str | None:
    for column in ("primarysmtpaddress", "externaldirectoryobjectid", "identity", "name"):
        text = v.get(column, "")
        hit = _lookup(resolver.group, text) or _lookup(resolver.mailbox, text)
        if hit in group_set or hit in mailbox_set:
            return hit
    return None


def _permissions(files: list[px.ExportFile]) -> list[MailPermission]:
    out: list[MailPermission] = []
    for f in files:
        for row, v in f.rows:
            if norm_id(v.get("principaltype", "serviceprincipal")) not in ("serviceprincipal", ""):
                continue  # users and groups hold delegated roles: not an app's application permission
            value = _cell(f, row, v, "approlevalue", "AppRoleValue")
            resource = _cell(f, row, v, "resourcedisplayname", "ResourceDisplayName")
            if AAP_PERMISSIONS.get(value, ("",))[0] != resource:
                continue  # not a permission an access policy fences (or one of the same name elsewhere)
            out.append(MailPermission(norm_id(_cell(f, row, v, "principalappid", "PrincipalAppId")),
                                      norm_id(_cell(f, row, v, "principalid", "PrincipalId")),
                                      v.get("principaldisplayname", ""), resource, value))
    return out


# ------------------------------------------------------------------------------------------------ the folder
def write_files(access: MailAccess, folder: Path) -> None:
    if access.policies_read:
        csvio.write_csv(folder / POLICIES_FILE, POLICY_COLUMNS, (
            (p.identity, p.app_id, p.access_right, p.scope, p.scope_kind, p.scope_external_id, p.description,
             str(p.is_valid)) for p in access.policies))
    if access.members_read:
        csvio.write_csv(folder / MEMBERS_FILE, MEMBER_COLUMNS,
                        ((m.scope, m.mailbox, m.via) for m in access.members))
    if access.permissions_read:
        csvio.write_csv(folder / PERMISSIONS_FILE, PERMISSION_COLUMNS, (
            (p.app_id, p.sp_object_id, p.app_name, p.resource, p.permission, p.rbac_role)
            for p in access.permissions))


RowReader = Callable[[Path, tuple[str, ...]], Iterable[tuple[int, dict[str, str]]]]


def read_files(folder: Path, mailboxes: set[str], rows: RowReader, notes: dict | None = None) -> MailAccess:
    """Read the three files back (each absent = not read); InputError naming file, row and field."""
    policies: list[AccessPolicy] = []
    members: list[ScopeMember] = []
    permissions: list[MailPermission] = []
    path = folder / POLICIES_FILE
    seen: dict[str, int] = {}
    for row_no, row in rows(path, POLICY_COLUMNS) if path.exists() else ():
        identity = _need(row, "identity", path, row_no)
        if identity.lower() in seen:
            raise InputError(f"the same policy as row {seen[identity.lower()]}", path=str(path), row=row_no,
                             field="identity", value=identity)
        seen[identity.lower()] = row_no
        _one_of(row, "access_right", ACCESS_RIGHTS, path, row_no)
        _one_of(row, "scope_kind", SCOPE_KINDS, path, row_no)
        _one_of(row, "is_valid", ("True", "False"), path, row_no)
        policies.append(AccessPolicy(identity, norm_id(_need(row, "app_id", path, row_no)), row["access_right"],
                                     norm_id(_need(row, "scope", path, row_no)), row["scope_kind"],
                                     norm_id(row["scope_external_id"]), row["description"],
                                     row["is_valid"] == "True"))
    scopes = {p.scope for p in policies if p.scope_kind != "unknown"}
    mpath = folder / MEMBERS_FILE
    for row_no, row in rows(mpath, MEMBER_COLUMNS) if mpath.exists() else ():
        scope = norm_id(_need(row, "scope", mpath, row_no))
        if scope not in scopes:
            raise InputError(f"scope of no policy in {POLICIES_FILE}", path=str(mpath), row=row_no, field="scope",
                             value=scope)
        mailbox = norm_id(_need(row, "mailbox", mpath, row_no))
        if mailbox not in mailboxes:
            raise InputError("mailbox not in mailboxes.csv", path=str(mpath), row=row_no, field="mailbox",
                             value=mailbox)
        members.append(ScopeMember(scope, mailbox, norm_id(row["via"])))
    ppath = folder / PERMISSIONS_FILE
    for row_no, row in rows(ppath, PERMISSION_COLUMNS) if ppath.exists() else ():
        perm = _need(row, "permission", ppath, row_no)
        if perm not in AAP_PERMISSIONS:
            raise InputError(f"not a permission an access policy fences ({', '.join(AAP_PERMISSIONS)})",
                             path=str(ppath), row=row_no, field="permission", value=perm)
        resource = _need(row, "resource", ppath, row_no)
        if AAP_PERMISSIONS[perm][0] != resource:
            raise InputError(f"{perm} is a permission of {AAP_PERMISSIONS[perm][0]}", path=str(ppath), row=row_no,
                             field="resource", value=resource)
        permissions.append(MailPermission(norm_id(_need(row, "app_id", ppath, row_no)),
                                          norm_id(row["sp_object_id"]), row["app_name"], resource, perm))
    if mpath.exists() and not path.exists():
        raise InputError(f"{MEMBERS_FILE} without {POLICIES_FILE}", path=str(mpath))
    return MailAccess(tuple(policies), tuple(members), tuple(permissions), path.exists(), mpath.exists(),
                      ppath.exists(), dict(notes or {}))


def _need(row: dict[str, str], name: str, path: Path, row_no: int) -> str:
    value = (row.get(name) or "").strip()
    if not value:
        raise InputError("must not be empty", path=str(path), row=row_no, field=name)
    return value


def _one_of(row: dict[str, str], name: str, allowed: tuple[str, ...], path: Path, row_no: int) -> None:
    if row.get(name) not in allowed:
        raise InputError(f"must be one of {', '.join(allowed)}", path=str(path), row=row_no, field=name,
                         value=row.get(name, ""))
