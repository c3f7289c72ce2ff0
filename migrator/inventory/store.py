"""The inventory folder (INTERNALS.md §1): the one thing both inventory paths write and the planner reads.

Written atomically (csvio.atomic_folder): on any error nothing is left at the target. Read back with checks,
so a hand-edited folder fails with an InputError naming the file, row and field rather than a KeyError later.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from migrator import csvio
from migrator.errors import InputError
from migrator.inventory.mailaccess import MailAccess, read_files, write_files
from migrator.inventory.rbac import APPLICATION_ROLE_PREFIX, REACHES, SCOPE_TYPES, UNKNOWN, RbacAssignment
from migrator.model import FILTERABLE_ATTRIBUTES, Grant, Group, Mailbox, Right, ServicePrincipal, norm_id

FORMAT = 1

GRANTS_FILE = "grants.csv"
SPS_FILE = "service_principals.csv"
MAILBOXES_FILE = "mailboxes.csv"
GROUPS_FILE = "groups.csv"
APP_PERMISSIONS_FILE = "app_permissions.csv"
RBAC_FILE = "rbac_assignments.csv"
MANIFEST_FILE = "manifest.json"

GRANT_COLUMNS = ("app_id", "app_name", "sp_object_id", "mailbox", "right")
SP_COLUMNS = ("app_id", "object_id", "display_name", "exchange_identity")
SP_OPTIONAL_COLUMNS = ("exchange_names",)  # `;`-joined; absent from inventories written before it
MAILBOX_BASE_COLUMNS = ("address", "external_id", "guid", "name", "alias", "display_name", "dn", "upn",
                        "recipient_type")
MAILBOX_COLUMNS = MAILBOX_BASE_COLUMNS + FILTERABLE_ATTRIBUTES
GROUP_COLUMNS = ("address", "name", "dn", "guid", "external_id", "recipient_type", "members", "other_members")
APP_PERMISSION_COLUMNS = ("app_id", "resource", "permission")
RBAC_COLUMNS = ("app_id", "assignment", "role", "scope_type", "scope", "filter", "reach", "mailboxes", "note")
NOT_READ = "not read"

COUNT_KEYS = ("service_principals", "mailboxes", "groups", "grants_sendas", "grants_fullaccess", "apps",
              "access_policies", "policy_scope_members", "mail_permission_apps", "rbac_assignments",
              "rbac_unknown_reach")


@dataclass(frozen=True)
class Inventory:
    service_principals: tuple[ServicePrincipal, ...]
    mailboxes: tuple[Mailbox, ...]
    grants: tuple[Grant, ...]
    groups: tuple[Group, ...] = ()
    app_permissions: tuple[tuple[str, str, str], ...] = ()  # (app_id, resource, permission)
    manifest: dict = field(default_factory=dict)
    # Whether the apps' Entra app-role assignments were read at all: an empty `app_permissions` then means "none",
    # not "unknown" (exports without the Get-MgServicePrincipalAppRoleAssignment file leave this False).
    app_permissions_known: bool = False
    # Graph/EWS access (inventory/mailaccess.py): Application Access Policies, their scopes' flattened members and
    # the apps' AAP-fenced Entra permissions, each with whether it was read at all.
    mail_access: MailAccess = field(default_factory=MailAccess)
    # The apps' existing `Application ...` role assignments (inventory/rbac.py). `rbac_known` False: they were not
    # read (exports without the Get-ManagementRoleAssignment file), which is not the same as "none".
    rbac: tuple[RbacAssignment, ...] = ()
    rbac_known: bool = False

    def sp_by_app_id(self) -> dict[str, ServicePrincipal]:
        return {sp.app_id: sp for sp in self.service_principals}

    def mailbox_by_address(self) -> dict[str, Mailbox]:
        return {mb.address: mb for mb in self.mailboxes}


def counts(inv: Inventory) -> dict[str, int | str]:
    """The manifest's `counts` block, computed from the objects (never trusted from a caller); "not read" for a
    part the inventory did not read."""
    return {
        "service_principals": len(inv.service_principals),
        "mailboxes": len(inv.mailboxes),
        "groups": len(inv.groups),
        "grants_sendas": sum(1 for g in inv.grants if g.right is Right.SEND_AS),
        "grants_fullaccess": sum(1 for g in inv.grants if g.right is Right.FULL_ACCESS),
        "apps": len({g.app_id for g in inv.grants}),
        **inv.mail_access.counts(),
        "rbac_assignments": len(inv.rbac) if inv.rbac_known else NOT_READ,
        "rbac_unknown_reach": sum(1 for a in inv.rbac if a.reach == UNKNOWN) if inv.rbac_known else NOT_READ,
    }


# ---------------------------------------------------------------------------------------------------- write


def write_inventory(inv: Inventory, out: Path, *, overwrite: bool = False) -> Path:
    """Write the inventory folder at `out` atomically; returns `out`. Refuses grants to unknown SPs/mailboxes."""
    out = Path(out)
    _check_consistent(inv)
    sps = inv.sp_by_app_id()
    with csvio.atomic_folder(out, overwrite=overwrite) as tmp:
        grants = sorted(set(inv.grants), key=lambda g: (g.app_id, g.mailbox, g.right.value))
        csvio.write_csv(tmp / GRANTS_FILE, GRANT_COLUMNS, (
            (g.app_id, sps[g.app_id].display_name, sps[g.app_id].object_id, g.mailbox, g.right.value)
            for g in grants))
        csvio.write_csv(tmp / SPS_FILE, SP_COLUMNS + SP_OPTIONAL_COLUMNS, (
            (sp.app_id, sp.object_id, sp.display_name, sp.exchange_identity, ";".join(sp.exchange_names))
            for sp in sorted(inv.service_principals, key=lambda s: s.app_id)))
        csvio.write_csv(tmp / MAILBOXES_FILE, MAILBOX_COLUMNS, (
            (mb.address, mb.external_id, mb.guid, mb.name, mb.alias, mb.display_name, mb.dn, mb.upn,
             mb.recipient_type, *(mb.attribute(a) for a in FILTERABLE_ATTRIBUTES))
            for mb in sorted(inv.mailboxes, key=lambda m: m.address)))
        if inv.groups:
            csvio.write_csv(tmp / GROUPS_FILE, GROUP_COLUMNS, (
                (g.address, g.name, g.dn, g.guid, g.external_id, g.recipient_type, ";".join(sorted(g.members)),
                 g.other_members)
                for g in sorted(inv.groups, key=lambda g: g.address)))
        if inv.app_permissions or inv.app_permissions_known:  # the file's presence says they were read
            csvio.write_csv(tmp / APP_PERMISSIONS_FILE, APP_PERMISSION_COLUMNS,
                            sorted({(norm_id(a), r, p) for a, r, p in inv.app_permissions}))
        write_files(inv.mail_access, tmp)
        if inv.rbac_known:  # present (even empty): they were read
            csvio.write_csv(tmp / RBAC_FILE, RBAC_COLUMNS, (
                (a.app_id, a.name, a.role, a.scope_type, a.scope, a.filter, a.reach, ";".join(sorted(a.mailboxes)),
                 a.note) for a in sorted(inv.rbac, key=lambda a: (a.app_id, a.name.lower()))))
        manifest = dict(inv.manifest)
        manifest["access_policies"] = inv.mail_access.manifest()
        if not inv.rbac_known:
            manifest.setdefault("rbac", {"read": False})
        manifest.setdefault("format", FORMAT)
        manifest.setdefault("source", "exports")
        manifest.setdefault("sources", [])
        manifest.setdefault("skipped", [])
        manifest["counts"] = counts(inv)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8",
                                          newline="\n")  # LF on Windows too: the file is hashed
    return out


def _check_consistent(inv: Inventory) -> None:
    sps = inv.sp_by_app_id()
    if len(sps) != len(inv.service_principals):
        dup = _first_duplicate(sp.app_id for sp in inv.service_principals)
        raise InputError("two service principals share this app id", field="app_id", value=dup)
    mailboxes = inv.mailbox_by_address()
    if len(mailboxes) != len(inv.mailboxes):
        dup = _first_duplicate(mb.address for mb in inv.mailboxes)
        raise InputError("two mailboxes share this address", field="address", value=dup)
    for a in inv.rbac:
        if a.app_id not in sps:
            raise InputError("role assignment of an app with no service principal", field="app_id", value=a.app_id)
        stray = sorted(a.mailboxes - mailboxes.keys())
        if stray:
            raise InputError("role assignment reaching a mailbox not in the inventory", field="mailboxes",
                             value=stray[0])
    for g in inv.grants:
        if g.app_id not in sps:
            raise InputError("grant to an app with no service principal", field="app_id", value=g.app_id)
        if g.mailbox not in mailboxes:
            raise InputError("grant on a mailbox not in the inventory", field="mailbox", value=g.mailbox)


def _first_duplicate(values) -> str:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            return v
        seen.add(v)
    return ""


# ---------------------------------------------------------------------------------------------------- read


def read_inventory(path: Path) -> Inventory:
    """Read an inventory folder; InputError naming file, row and field on anything malformed or inconsistent."""
    path = Path(path)
    if not path.is_dir():
        raise InputError("inventory folder not found", path=str(path))
    manifest = _read_manifest(path / MANIFEST_FILE)
    sps = _read_sps(path / SPS_FILE)
    mailboxes = _read_mailboxes(path / MAILBOXES_FILE)
    by_app = {sp.app_id: sp for sp in sps}
    grants = _read_grants(path / GRANTS_FILE, by_app, {mb.address for mb in mailboxes})
    groups = _read_groups(path / GROUPS_FILE)
    perms: list[tuple[str, str, str]] = []
    ap_path = path / APP_PERMISSIONS_FILE
    if ap_path.exists():
        for row_no, row in _rows(ap_path, APP_PERMISSION_COLUMNS):
            perms.append((norm_id(_required(row, "app_id", ap_path, row_no)), row["resource"], row["permission"]))
    note = {k: v for k, v in (manifest.get("access_policies") or {}).items() if not str(k).endswith("_read")}
    mail_access = read_files(path, {mb.address for mb in mailboxes}, _rows, note)
    rbac_path = path / RBAC_FILE
    rbac = _read_rbac(rbac_path, by_app, {mb.address for mb in mailboxes}) if rbac_path.exists() else []
    return Inventory(tuple(sps), tuple(mailboxes), tuple(grants), tuple(groups), tuple(perms), manifest,
                     app_permissions_known=ap_path.exists(), mail_access=mail_access, rbac=tuple(rbac),
                     rbac_known=rbac_path.exists())


def _read_rbac(path: Path, by_app: dict[str, ServicePrincipal], addresses: set[str]) -> list[RbacAssignment]:
    """rbac_assignments.csv: every row names a known app, an Application role, a scope type and a reach; an exact
    reach lists only known mailboxes, an unknown one none (it is never guessed)."""
    out: list[RbacAssignment] = []
    names: dict[str, int] = {}
    for row_no, row in _rows(path, RBAC_COLUMNS):
        app_id = norm_id(_required(row, "app_id", path, row_no))
        if app_id not in by_app:
            raise InputError(f"app id not in {SPS_FILE}", path=str(path), row=row_no, field="app_id", value=app_id)
        name = _required(row, "assignment", path, row_no)
        if name.lower() in names:
            raise InputError(f"the same assignment as row {names[name.lower()]}", path=str(path), row=row_no,
                             field="assignment", value=name)
        names[name.lower()] = row_no
        role = _required(row, "role", path, row_no)
        if not role.lower().startswith(APPLICATION_ROLE_PREFIX):
            raise InputError("must be an RBAC for Applications role (Application ...)", path=str(path), row=row_no,
                             field="role", value=role)
        for column, allowed in (("scope_type", SCOPE_TYPES), ("reach", REACHES)):
            if row[column] not in allowed:
                raise InputError(f"must be one of {', '.join(allowed)}", path=str(path), row=row_no, field=column,
                                 value=row[column])
        members = frozenset(norm_id(m) for m in row["mailboxes"].split(";") if m.strip())
        if row["reach"] == UNKNOWN and members:
            raise InputError("an unknown reach lists no mailboxes", path=str(path), row=row_no, field="mailboxes")
        stray = sorted(members - addresses)
        if stray:
            raise InputError(f"mailbox not in {MAILBOXES_FILE}", path=str(path), row=row_no, field="mailboxes",
                             value=stray[0])
        out.append(RbacAssignment(app_id, name, role, row["scope_type"], row["scope"], row["filter"], row["reach"],
                                  members, row["note"]))
    return out


def _read_sps(sp_path: Path) -> list[ServicePrincipal]:
    sps: list[ServicePrincipal] = []
    seen: set[str] = set()
    for row_no, row in _rows(sp_path, SP_COLUMNS):
        app_id = _required(row, "app_id", sp_path, row_no)
        object_id = _required(row, "object_id", sp_path, row_no)
        sp = ServicePrincipal(app_id, object_id, row["display_name"], row["exchange_identity"],
                              tuple(n for n in (row.get("exchange_names") or "").split(";") if n))
        if sp.app_id in seen:
            raise InputError("duplicate app id", path=str(sp_path), row=row_no, field="app_id", value=app_id)
        seen.add(sp.app_id)
        sps.append(sp)
    return sps


def _read_mailboxes(mb_path: Path) -> list[Mailbox]:
    mailboxes: list[Mailbox] = []
    addresses: set[str] = set()
    for row_no, row in _rows(mb_path, MAILBOX_BASE_COLUMNS):
        address = _required(row, "address", mb_path, row_no)
        attrs = tuple((a, row[a]) for a in FILTERABLE_ATTRIBUTES if row.get(a))
        mb = Mailbox(address, row["external_id"], row["guid"], row["name"], row["alias"], row["display_name"],
                     row["dn"], row["upn"], row["recipient_type"], attrs)
        if mb.address in addresses:
            raise InputError("duplicate mailbox address", path=str(mb_path), row=row_no, field="address",
                             value=address)
        addresses.add(mb.address)
        mailboxes.append(mb)
    return mailboxes


def _read_grants(gpath: Path, by_app: dict[str, ServicePrincipal], addresses: set[str]) -> list[Grant]:
    """grants.csv: every row names a known SP (and its object id, if given) and a known mailbox."""
    grants: list[Grant] = []
    seen_grants: set[Grant] = set()
    for row_no, row in _rows(gpath, GRANT_COLUMNS):
        app_id = norm_id(_required(row, "app_id", gpath, row_no))
        mailbox = norm_id(_required(row, "mailbox", gpath, row_no))
        right_text = _required(row, "right", gpath, row_no)
        try:
            right = Right(right_text)
        except ValueError:
            raise InputError("right must be SendAs or FullAccess", path=str(gpath), row=row_no, field="right",
                             value=right_text) from None
        if app_id not in by_app:
            raise InputError(f"app id not in {SPS_FILE}", path=str(gpath), row=row_no, field="app_id",
                             value=app_id)
        if row["sp_object_id"] and norm_id(row["sp_object_id"]) != by_app[app_id].object_id:
            raise InputError(f"object id differs from {SPS_FILE} for this app", path=str(gpath), row=row_no,
                             field="sp_object_id", value=row["sp_object_id"])
        if mailbox not in addresses:
            raise InputError(f"mailbox not in {MAILBOXES_FILE}", path=str(gpath), row=row_no, field="mailbox",
                             value=mailbox)
        grant = Grant(app_id, mailbox, right)
        if grant not in seen_grants:  # a repeated row is harmless; keep one
            seen_grants.add(grant)
            grants.append(grant)
    return grants


def _read_groups(gr_path: Path) -> list[Group]:
    groups: list[Group] = []
    if gr_path.exists():
        for row_no, row in _rows(gr_path, GROUP_COLUMNS):
            address = _required(row, "address", gr_path, row_no)
            members = frozenset(norm_id(m) for m in row["members"].split(";") if m.strip())
            try:
                other = int(row["other_members"] or 0)
            except ValueError:
                raise InputError("must be a whole number", path=str(gr_path), row=row_no, field="other_members",
                                 value=row["other_members"]) from None
            groups.append(Group(address, row["name"], row["dn"], row["guid"], row["external_id"],
                                row["recipient_type"], members, other))
    return groups


def _read_manifest(path: Path) -> dict:
    if not path.exists():
        raise InputError("missing: not an inventory folder", path=str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("must hold a JSON object", path=str(path))
    if data.get("format") != FORMAT:
        raise InputError(f"unsupported inventory format (expected {FORMAT})", path=str(path), field="format",
                         value=str(data.get("format")))
    return data


def _rows(path: Path, required: tuple[str, ...]):
    """Yield (spreadsheet row number, row dict); checks the header and every row's field count."""
    if not path.exists():
        raise InputError("missing from the inventory folder", path=str(path))
    row_no = 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, [])
            missing = [c for c in required if c not in header]
            if missing:
                raise InputError(f"missing column(s) {', '.join(missing)}", path=str(path), row=1)
            for row_no, cells in enumerate(reader, start=2):
                if not cells:
                    continue
                if len(cells) != len(header):
                    raise InputError(f"wrong number of fields ({len(cells)}, header has {len(header)})",
                                     path=str(path), row=row_no)
                yield row_no, {k: csvio.unneutralise(v) for k, v in zip(header, cells)}
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 ({exc.reason})", path=str(path)) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV ({exc})", path=str(path), row=row_no + 1) from None


def _required(row: dict[str, str], name: str, path: Path, row_no: int) -> str:
    value = (row.get(name) or "").strip()
    if not value:
        raise InputError("must not be empty", path=str(path), row=row_no, field=name)
    return value
