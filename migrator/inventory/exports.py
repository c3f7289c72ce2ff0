"""The inventory from PowerShell exports: every CSV in a folder, recognised by its columns, turned into an Inventory.

Only Allow rows that a service principal holds directly, for SendAs (Get-RecipientPermission) or FullAccess
(Get-MailboxPermission), become grants. Every other row is skipped into a class the manifest reports with its count,
reason and a few examples (INTERNALS.md §1). Anything the tool cannot be sure of is an InputError naming the file,
the row and the value: an ambiguous trustee, a grant on a mailbox absent from the mailbox export, an unknown trustee
(unless the caller allows skipping those).
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from migrator.errors import InputError
from migrator.inventory import psexport as px
from migrator.inventory.mailaccess import from_files as mail_access_from_files
from migrator.inventory.rbac import rbac_from_exports
from migrator.inventory.resolve import SELF_NAMES, Ambiguous, Resolved, Resolver
from migrator.inventory.store import Inventory
from migrator.model import FILTERABLE_ATTRIBUTES, Grant, Group, Mailbox, Right, ServicePrincipal, norm_id

SKIP_REASONS = {
    "self": "NT AUTHORITY\\SELF: the mailbox's own access, not a grant",
    "inherited": "inherited from a parent object, not set on the mailbox",
    "deny": "an explicit Deny row: it removes access, it grants none",
    "denied_allow": "an Allow cancelled by an explicit Deny for the same trustee, mailbox and right",
    "orphaned_sid": "trustee shown as a SID: an account that no longer resolves (deleted)",
    "human_delegate": "trustee is a user, mailbox or group, not a service principal: only apps migrate",
    "other_rights": "rights other than SendAs (recipient permissions) or FullAccess (mailbox permissions)",
    "unknown_trustee": "trustee matches no service principal and no recipient in the exports",
    "duplicate": "the same grant listed again (another row or another file)",
}
MAX_EXAMPLES = 5
_ATTRIBUTE_COLUMNS = tuple((a, a.lower()) for a in FILTERABLE_ATTRIBUTES)

# Which right each permission export carries for the migration.
RIGHT_OF_KIND = {px.RECIPIENT_PERMISSIONS: Right.SEND_AS, px.MAILBOX_PERMISSIONS: Right.FULL_ACCESS}
TRUSTEE_COLUMN = {px.RECIPIENT_PERMISSIONS: "trustee", px.MAILBOX_PERMISSIONS: "user"}
COLUMN_LABEL = {"trustee": "Trustee", "user": "User", "identity": "Identity"}


@dataclass(frozen=True)
class PermRow:
    file: px.ExportFile
    row: int
    mailbox_text: str
    trustee_text: str
    right: Right
    deny: bool
    inherited: bool
    has_right: bool
    rights_text: str

    def where(self) -> str:
        return f"{self.file.name} row {self.row}"


class Skips:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)

    def add(self, cls: str, row: PermRow) -> None:
        self.counts[cls] += 1
        if len(self.examples[cls]) < MAX_EXAMPLES:  # formatted only when kept: large tenants have many rows
            self.examples[cls].append(f"{row.where()}: {row.trustee_text} on {row.mailbox_text} ({row.rights_text})")

    def manifest(self) -> list[dict]:
        return [{"class": cls, "count": self.counts[cls], "reason": reason, "examples": self.examples[cls]}
                for cls, reason in SKIP_REASONS.items() if self.counts[cls] or cls != "duplicate"]


def inventory_from_exports(folder: Path, *, allow_unknown_trustees: bool = False) -> Inventory:
    """Read every *.csv in `folder` (not recursive) into an Inventory with its manifest."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder of export files", path=str(folder))
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not paths:
        raise InputError("holds no .csv files", path=str(folder))
    files = [px.read_export(p) for p in paths]
    sources = [{"file": f.name, "sha256": f.sha256, "kind": f.kind, "cmdlet": px.CMDLETS[f.kind],
                "rows": len(f.rows), "encoding": f.encoding, "type_line": bool(f.type_line)} for f in files]
    return build_inventory(files, allow_unknown_trustees=allow_unknown_trustees, source="exports",
                           sources=sources, where=str(folder))


def build_inventory(files: list[px.ExportFile], *, allow_unknown_trustees: bool = False, source: str = "exports",
                    sources: list[dict] | None = None, app_permissions=(), app_permissions_known: bool = False,
                    where: str = "") -> Inventory:
    """Classify the rows of recognised exports into an Inventory. The live path calls this too, with
    `psexport.from_records(...)` files built from the API's rows, so both paths classify alike. The apps' Entra
    permissions come from `app_permissions` (live) or from Get-MgServicePrincipalAppRoleAssignment exports; with
    neither they are unknown, and the planner makes the user decide what it would otherwise have to guess."""
    by_kind: dict[str, list[px.ExportFile]] = defaultdict(list)
    for f in files:
        by_kind[f.kind].append(f)
    for kind in (px.SERVICE_PRINCIPALS, px.MAILBOXES):
        if not by_kind[kind]:
            raise InputError(f"no {px.CMDLETS[kind]} export among the files ({_kinds(files)})", path=where or None)
    if not by_kind[px.RECIPIENT_PERMISSIONS] and not by_kind[px.MAILBOX_PERMISSIONS]:
        raise InputError(f"no Get-RecipientPermission or Get-MailboxPermission export among the files "
                         f"({_kinds(files)})", path=where or None)

    skips = Skips()
    sps = _service_principals(by_kind[px.SERVICE_PRINCIPALS])
    mailboxes, names = _mailboxes(by_kind[px.MAILBOXES])
    group_rows, group_names = _groups(by_kind[px.GROUPS])
    resolver = Resolver(sps, mailboxes, group_rows, mailbox_names={**names, **group_names})
    groups: list[Group] = []
    if by_kind[px.GROUP_MEMBERS] and not group_rows:
        raise InputError("a Get-DistributionGroupMember export needs the Get-DistributionGroup export beside it "
                         "(it holds the groups' DistinguishedName)", path=str(by_kind[px.GROUP_MEMBERS][0].path))
    if group_rows:
        if by_kind[px.GROUP_MEMBERS]:
            groups = _with_members(group_rows, by_kind[px.GROUP_MEMBERS], resolver)
        else:  # membership unknown: writing the groups would claim they are empty
            skips.counts["groups_without_members"] = len(group_rows)
    grants = _grants(by_kind, resolver, skips, allow_unknown_trustees)
    mail_access = mail_access_from_files(by_kind, resolver, mailboxes, groups,
                                         groups_read=bool(group_rows and by_kind[px.GROUP_MEMBERS]))
    rbac, rbac_note = _rbac(by_kind, resolver, mailboxes, groups if group_rows and by_kind[px.GROUP_MEMBERS] else None)
    if by_kind[px.APP_ROLE_ASSIGNMENTS]:
        app_permissions = tuple(app_permissions) + _app_permissions(by_kind[px.APP_ROLE_ASSIGNMENTS], sps)
        app_permissions_known = True

    skipped = skips.manifest()
    if skips.counts["groups_without_members"]:
        skipped.append({"class": "groups_without_members", "count": skips.counts["groups_without_members"],
                        "reason": "groups exported without a Get-DistributionGroupMember export: not inventoried",
                        "examples": [g.address for g in group_rows[:MAX_EXAMPLES]]})
    manifest = {
        "format": 1,
        "source": source,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "sources": list(sources or []),
        "skipped": skipped,
        "access_policies": mail_access.manifest(),
        "rbac": rbac_note,
    }
    return Inventory(tuple(sps), tuple(mailboxes),
                     tuple(sorted(grants, key=lambda g: (g.app_id, g.mailbox, g.right.value))),
                     tuple(groups), tuple(sorted(set(app_permissions))), manifest,
                     app_permissions_known=app_permissions_known, mail_access=mail_access,
                     rbac=tuple(rbac) if rbac is not None else (), rbac_known=rbac is not None)


def _rbac(by_kind, resolver: Resolver, mailboxes: list[Mailbox], groups: list[Group] | None):
    """(the apps' Application role assignments, or None when no Get-ManagementRoleAssignment rows were read; the
    manifest's `rbac` block). A missing export means "not read", never "none"."""
    if not by_kind[px.ROLE_ASSIGNMENTS]:
        return None, {"read": False, "why": "no Get-ManagementRoleAssignment export (older exports): the apps' "
                                            "existing RBAC for Applications assignments are unknown"}
    reading = rbac_from_exports(by_kind[px.ROLE_ASSIGNMENTS], by_kind[px.MANAGEMENT_SCOPES], resolver, mailboxes,
                                groups)
    note = {"read": True, "scopes_read": bool(by_kind[px.MANAGEMENT_SCOPES]),
            "skipped_rows": reading.skipped}
    return reading.assignments, note


def _kinds(files: list[px.ExportFile]) -> str:
    return "; ".join(f"{f.name}: {px.CMDLETS[f.kind]}" for f in files)


def _required(f: px.ExportFile, row: int, values: dict[str, str], column: str, label: str) -> str:
    value = values.get(column, "").strip()
    if not value:
        raise InputError("must not be empty", path=str(f.path), row=row, field=label)
    return value


# ------------------------------------------------------------------------------------------------ objects


def _service_principals(files: list[px.ExportFile]) -> list[ServicePrincipal]:
    out: dict[str, ServicePrincipal] = {}
    for f in files:
        for row, v in f.rows:
            # every name a permission row may show the pointer by: DisplayName, Identity, Name, Sid (and the ids)
            names = tuple(dict.fromkeys(n for n in (v.get("name", ""), v.get("sid", "")) if n))
            sp = ServicePrincipal(_required(f, row, v, "appid", "AppId"), _required(f, row, v, "objectid", "ObjectId"),
                                  v.get("displayname", ""), v.get("identity", ""), names)
            out.setdefault(sp.app_id, sp)  # the same SP in two exports is one SP
    return list(out.values())


def _app_permissions(files: list[px.ExportFile], sps: list[ServicePrincipal]) -> tuple[tuple[str, str, str], ...]:
    """(app_id, resource, permission) from Get-MgServicePrincipalAppRoleAssignment rows. PrincipalId is the
    enterprise application's object id, which is the Exchange pointer's ObjectId; rows of other principals (apps
    without a pointer, hence without grants) are left out."""
    app_of = {sp.object_id: sp.app_id for sp in sps}
    out: set[tuple[str, str, str]] = set()
    for f in files:
        for row, v in f.rows:
            principal = norm_id(_required(f, row, v, "principalid", "PrincipalId"))
            value = _required(f, row, v, "approlevalue", "AppRoleValue")
            resource = _required(f, row, v, "resourcedisplayname", "ResourceDisplayName")
            if principal in app_of:
                out.add((app_of[principal], resource, value))
    return tuple(sorted(out))


def _mailboxes(files: list[px.ExportFile]) -> tuple[list[Mailbox], dict[str, list[str]]]:
    out: dict[str, Mailbox] = {}
    names: dict[str, list[str]] = {}
    for f in files:
        for row, v in f.rows:
            address = _required(f, row, v, "primarysmtpaddress", "PrimarySmtpAddress")
            if "@" not in address:
                raise InputError("not an SMTP address", path=str(f.path), row=row, field="PrimarySmtpAddress",
                                 value=address)
            attrs = tuple((a, v[low]) for a, low in _ATTRIBUTE_COLUMNS if v.get(low))
            mb = Mailbox(address, v.get("externaldirectoryobjectid", ""),
                         v.get("guid", "") or v.get("exchangeguid", ""),
                         v.get("name", ""), v.get("alias", ""), v.get("displayname", ""),
                         v.get("distinguishedname", ""), v.get("userprincipalname", ""),
                         v.get("recipienttypedetails", ""), attrs)
            if mb.address in out:
                continue
            out[mb.address] = mb
            names[mb.address] = [v.get("identity", ""), *px.email_addresses(v.get("emailaddresses", ""))]
    return list(out.values()), names


def _groups(files: list[px.ExportFile]) -> tuple[list[Group], dict[str, list[str]]]:
    out: dict[str, Group] = {}
    names: dict[str, list[str]] = {}
    for f in files:
        for row, v in f.rows:
            address = _required(f, row, v, "primarysmtpaddress", "PrimarySmtpAddress")
            dn = _required(f, row, v, "distinguishedname", "DistinguishedName")
            g = Group(address, v.get("name", ""), dn, norm_id(v.get("guid", "")),
                      norm_id(v.get("externaldirectoryobjectid", "")), v.get("recipienttypedetails", ""))
            if g.address not in out:
                out[g.address] = g
                names[g.address] = [v.get("alias", ""), v.get("identity", ""), v.get("displayname", ""),
                                    *px.email_addresses(v.get("emailaddresses", ""))]
    return list(out.values()), names


def _with_members(groups: list[Group], files: list[px.ExportFile], resolver: Resolver) -> list[Group]:
    members: dict[str, set[str]] = {g.address: set() for g in groups}
    others: dict[str, set[str]] = {g.address: set() for g in groups}
    for f in files:
        group_col = next(c for c in px.GROUP_ID_COLUMNS if c in f.rows[0][1]) if f.rows else ""
        for row, v in f.rows:
            label = next(c for c in f.columns if c.lower() == group_col)
            text = _required(f, row, v, group_col, label)
            try:
                group = resolver.group(text)
            except Ambiguous as exc:
                raise InputError(f"names several groups: {', '.join(exc.candidates)}", path=str(f.path), row=row,
                                 field=label, value=text) from None
            if group is None:
                raise InputError("group not in the Get-DistributionGroup export", path=str(f.path), row=row,
                                 field=label, value=text)
            member = _member_mailbox(v, resolver)
            if member:
                members[group].add(member)
            else:  # a nested group, a contact, a user without a mailbox: scopes see direct mailboxes only
                others[group].add(next((v[c] for c in px.MEMBER_ID_COLUMNS if v.get(c)), f"row {row}").lower())
    return [Group(g.address, g.name, g.dn, g.guid, g.external_id, g.recipient_type, frozenset(members[g.address]),
                  len(others[g.address])) for g in groups]


def _member_mailbox(v: dict[str, str], resolver: Resolver) -> str | None:
    kind = v.get("recipienttypedetails", "")
    if kind and (not kind.lower().endswith("mailbox") or kind.lower() == "groupmailbox"):
        return None
    for column in ("primarysmtpaddress", "externaldirectoryobjectid", "identity", "name"):
        if v.get(column):
            try:
                found = resolver.mailbox(v[column])
            except Ambiguous:
                continue
            if found:
                return found
    return None


# ------------------------------------------------------------------------------------------------- grants


def _perm_rows(by_kind: dict[str, list[px.ExportFile]]) -> list[PermRow]:
    rows = []
    for kind in (px.RECIPIENT_PERMISSIONS, px.MAILBOX_PERMISSIONS):
        right = RIGHT_OF_KIND[kind]
        tcol = TRUSTEE_COLUMN[kind]
        for f in by_kind[kind]:
            for row, v in f.rows:
                rights = px.multi_value(v["accessrights"], path=f.path, row=row, column="AccessRights")
                if kind == px.RECIPIENT_PERMISSIONS:
                    control = v["accesscontroltype"].strip().lower()
                    if control not in ("allow", "deny"):
                        raise InputError("expected Allow or Deny", path=str(f.path), row=row,
                                         field="AccessControlType", value=v["accesscontroltype"])
                    deny = control == "deny"
                else:
                    deny = px.boolean(v["deny"], path=f.path, row=row, column="Deny")
                inherited = px.boolean(v["isinherited"], path=f.path, row=row, column="IsInherited")
                rows.append(PermRow(f, row, _required(f, row, v, "identity", "Identity"),
                                    _required(f, row, v, tcol, COLUMN_LABEL[tcol]), right, deny, inherited,
                                    any(r.lower() == right.value.lower() for r in rights), v["accessrights"]))
    return rows


def _resolve_trustee(r: PermRow, resolver: Resolver) -> Resolved:
    try:
        return resolver.trustee(r.trustee_text)
    except Ambiguous as exc:
        column = "Trustee" if r.file.kind == px.RECIPIENT_PERMISSIONS else "User"
        raise InputError(f"ambiguous trustee: it names {'; '.join(exc.candidates)}. Re-export showing the "
                         f"ObjectId or AppId, or give the service principals distinct display names",
                         path=str(r.file.path), row=r.row, field=column, value=r.trustee_text) from None


def _mailbox_key(r: PermRow, resolver: Resolver) -> str | None:
    try:
        return resolver.mailbox(r.mailbox_text)
    except Ambiguous as exc:
        raise InputError(f"mailbox identity names several mailboxes: {', '.join(exc.candidates)}",
                         path=str(r.file.path), row=r.row, field="Identity", value=r.mailbox_text) from None


def _grants(by_kind, resolver: Resolver, skips: Skips, allow_unknown: bool) -> list[Grant]:
    rows = _perm_rows(by_kind)
    denies: set[tuple[str, str, str, Right]] = set()
    allows: list[tuple[PermRow, Resolved, str]] = []
    for r in rows:
        if r.inherited:
            skips.add("inherited", r)
            continue
        if r.trustee_text.strip().lower() in SELF_NAMES:
            skips.add("self", r)
            continue
        if r.deny:
            skips.add("deny", r)
            if r.has_right:  # remember it, to cancel a matching Allow whatever the order of the rows
                trustee = _resolve_trustee(r, resolver)
                mailbox = _mailbox_key(r, resolver) or "raw:" + r.mailbox_text.strip().lower()
                denies.add((trustee.kind, trustee.key, mailbox, r.right))
            continue
        if not r.has_right:  # no need to resolve a trustee that holds nothing we migrate
            skips.add("other_rights", r)
            continue
        trustee = _resolve_trustee(r, resolver)
        if trustee.kind == "self":
            skips.add("self", r)
            continue
        mailbox = _mailbox_key(r, resolver) or "raw:" + r.mailbox_text.strip().lower()
        allows.append((r, trustee, mailbox))

    grants: dict[Grant, PermRow] = {}
    for r, trustee, mailbox in allows:
        if (trustee.kind, trustee.key, mailbox, r.right) in denies:
            skips.add("denied_allow", r)
        elif trustee.kind == "sid":
            skips.add("orphaned_sid", r)
        elif trustee.kind == "recipient":
            skips.add("human_delegate", r)
        elif trustee.kind == "unknown":
            if not allow_unknown:
                column = "Trustee" if r.file.kind == px.RECIPIENT_PERMISSIONS else "User"
                raise InputError("trustee matches no service principal, mailbox or group in the exports. If it "
                                 "is a person or an account outside the exports, pass --allow-unknown-trustees to "
                                 "skip and report such rows", path=str(r.file.path), row=r.row, field=column,
                                 value=r.trustee_text)
            skips.add("unknown_trustee", r)
        else:
            if mailbox.startswith("raw:"):
                raise InputError("grant on a mailbox absent from the mailbox export", path=str(r.file.path),
                                 row=r.row, field="Identity", value=r.mailbox_text)
            grant = Grant(trustee.key, mailbox, r.right)
            if grant in grants:
                skips.add("duplicate", r)
            else:
                grants[grant] = r
    return list(grants)
