"""A sandbox tenant fixture (INTERNALS.md §2) built from an inventory (§1): the tenant a plan was made from, as
far as the inventory knows it, so `migrator rehearse` can run the plan against a copy of it.

What the inventory holds is carried over exactly: mailboxes (address, ids, DN, attributes), service principals,
existing groups with their direct mailbox members (and their DNs: a reused group's scope filter names its DN),
SendAs grants as RecipientPermission rows and FullAccess grants as MailboxPermission rows. What it does not hold
gets a plain default, listed in the fixture's `notes`:
- every app's service principal holds the Entra `SMTP.SendAsApp` role on Exchange Online (the app sends with
  SMTP AUTH today, which is what the migration is about), plus the application permissions the inventory lists
  when the sandbox knows them;
- an admin app with the permissions the tool needs (Exchange.ManageAsApp + Exchange Administrator, Graph
  Application.Read.All and AppRoleAssignment.ReadWrite.All), its secret generated when the sandbox starts;
- no management scopes or role assignments (a plan's objects are created by the run);
- the inventoried Application Access Policies and the apps holding the permissions they fence (apps without an
  Exchange pointer included), each policy group keeping its direct members; mailboxes it reached through nested
  groups the inventory did not list come in through one added nested group, so the flattened set is the same.
Nothing here talks to a tenant; `sandbox → model` only, plus the inventory's dataclasses.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.model import EXCHANGE_MANAGE_AS_APP, EXCHANGE_ONLINE_NAME, GRAPH_NAME, SMTP_SEND_AS_APP, Right, norm_id
from migrator.sandbox.state import RESOURCE_ROLES

if TYPE_CHECKING:  # the inventory's dataclasses only; read lazily below (sandbox -> model, INTERNALS.md)
    from migrator.inventory.store import Inventory

EXCHANGE_RESOURCE = EXCHANGE_ONLINE_NAME
_NS = uuid.UUID("0b6f3c52-7d0e-4a51-8f3e-2f7a9d1c4e60")
_GROUP_TYPES = {"mailuniversalsecuritygroup": "Security", "mailuniversaldistributiongroup": "Distribution",
                "groupmailbox": "Microsoft365"}
ADMIN_ROLES = (
    {"resource": EXCHANGE_RESOURCE, "permission": EXCHANGE_MANAGE_AS_APP},
    {"resource": GRAPH_NAME, "permission": "Application.Read.All"},
    {"resource": GRAPH_NAME, "permission": "AppRoleAssignment.ReadWrite.All"},
    {"resource": GRAPH_NAME, "permission": "Policy.Read.All"},
)


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "|".join(parts)))


def _domain(inv: Inventory) -> str:
    """The tenant's name: its onmicrosoft.com domain when a mailbox shows one, else from the commonest domain."""
    domains = Counter(m.address.rsplit("@", 1)[-1] for m in inv.mailboxes if "@" in m.address)
    for domain, _ in domains.most_common():
        if domain.endswith(".onmicrosoft.com"):
            return domain
    top = domains.most_common(1)[0][0] if domains else "rehearsal.example"
    return f"{top.split('.')[0]}.onmicrosoft.com"


def _tenant_id(inv: Inventory, domain: str) -> str:
    for source in inv.manifest.get("sources", ()) if isinstance(inv.manifest, dict) else ():
        if isinstance(source, dict) and source.get("tenant_id"):
            try:
                return str(uuid.UUID(str(source["tenant_id"])))
            except ValueError:
                break
    # An access policy's Identity begins with the tenant id (`<tenant id>\<app id>:<scope SID>;<scope id>`): the
    # rehearsal tenant keeps it, so the policies it serves have the identities the plan names
    for policy in inv.mail_access.policies:
        head, sep, _rest = policy.identity.partition("\\")
        if sep:
            try:
                return str(uuid.UUID(head))
            except ValueError:
                continue
    return _uuid("tenant", domain)


def _app_roles(app_id: str, permissions: dict[str, set[tuple[str, str]]], *, known: bool) -> list[dict]:
    """The app's Entra roles: as inventoried when the inventory read them, else SMTP.SendAsApp plus what it has."""
    wanted = permissions.get(app_id, set()) | (set() if known else {(EXCHANGE_RESOURCE, SMTP_SEND_AS_APP)})
    return [{"resource": r, "permission": p} for r, p in sorted(wanted) if p in RESOURCE_ROLES.get(r, ())]


def fixture_from_inventory(inv: Inventory, *, name: str | None = None) -> dict:
    """The fixture dict for `start_sandbox(fixture)`. Deterministic: the same inventory gives the same fixture."""
    domain = _domain(inv)
    tenant_id = _tenant_id(inv, domain)
    notes: list[str] = [] if inv.app_permissions_known else [
        "every app holds the Entra SMTP.SendAsApp role (the inventory does not record it)"]
    permissions: dict[str, set[tuple[str, str]]] = {}
    unknown_permissions = set()
    for app_id, resource, permission in inv.app_permissions:
        if permission in RESOURCE_ROLES.get(resource, ()):
            permissions.setdefault(norm_id(app_id), set()).add((resource, permission))
        else:
            unknown_permissions.add(f"{resource}: {permission}")
    if unknown_permissions:
        notes.append(f"application permissions the sandbox does not model were left out: "
                     f"{', '.join(sorted(unknown_permissions))}")

    mailboxes = []
    known = set()
    for mb in inv.mailboxes:
        local = mb.address.split("@")[0]
        entry: dict[str, Any] = {
            "name": mb.name or local, "alias": mb.alias or local, "display_name": mb.display_name or mb.name or local,
            "primary_smtp": mb.address, "upn": mb.upn or mb.address,
            "recipient_type_details": mb.recipient_type or "UserMailbox",
            "attributes": {k: v for k, v in mb.attributes if v}}
        for key, value in (("external_id", mb.external_id), ("guid", mb.guid), ("dn", mb.dn)):
            if value:
                entry[key] = value
        mailboxes.append(entry)
        known.add(mb.address)
    # A grant on a mailbox the inventory does not list (a bare grants CSV lists none beyond the grants): add it.
    for grant in inv.grants:
        if grant.mailbox not in known:
            local = grant.mailbox.split("@")[0]
            mailboxes.append({"name": local, "alias": local, "display_name": local, "primary_smtp": grant.mailbox,
                              "upn": grant.mailbox, "recipient_type_details": "UserMailbox", "attributes": {}})
            known.add(grant.mailbox)

    groups, dropped_members = _fixture_groups(inv, known)
    if dropped_members:
        notes.append(f"{dropped_members} group member(s) that are not inventoried mailboxes were left out")

    for p in inv.mail_access.permissions:
        permissions.setdefault(p.app_id, set()).add((p.resource, p.permission))
    policies = _fixture_policies(inv, groups, known, notes)
    granted = sorted({g.app_id for g in inv.grants})
    sps = {sp.app_id: sp for sp in inv.service_principals}
    apps = _pointerless_apps(inv, set(sps) | set(granted), permissions)
    for app_id in sorted(set(sps) | set(granted)):
        sp = sps.get(app_id)
        # the inventory names an SP as Exchange shows it: that is the pointer's DisplayName
        app: dict[str, Any] = {
            "app_id": app_id, "display_name": (sp.display_name if sp else "") or app_id,
            "exchange_display_name": (sp.display_name if sp else "") or app_id,
            "exchange_pointer": True, "app_roles": _app_roles(app_id, permissions, known=inv.app_permissions_known),
            "secret": None, "certificate_pem": None}
        if sp and sp.object_id:
            app["object_id"] = sp.object_id
        apps.append(app)

    sendas = [{"mailbox": g.mailbox, "trustee": {"app": g.app_id}, "access_control_type": "Allow",
               "access_rights": ["SendAs"], "is_inherited": False, "inheritance_type": "None"}
              for g in sorted(inv.grants) if g.right is Right.SEND_AS]
    fullaccess = [{"mailbox": g.mailbox, "user": {"app": g.app_id}, "access_rights": ["FullAccess"], "deny": False,
                   "is_inherited": False, "inheritance_type": "All"}
                  for g in sorted(inv.grants) if g.right is Right.FULL_ACCESS]
    label = name or domain.split(".")[0].title()
    return {
        "format": 1,
        "tenant": {"id": tenant_id, "domain": domain, "name": label},
        "mailboxes": mailboxes,
        "apps": apps,
        "admin": {"client_id": _uuid("admin", tenant_id), "object_id": _uuid("admin-sp", tenant_id),
                  "display_name": "migrator (rehearsal)", "secret": None, "app_roles": [dict(r) for r in ADMIN_ROLES],
                  "directory_roles": ["Exchange Administrator"]},
        "groups": groups,
        "recipient_permissions": sendas,
        "mailbox_permissions": fullaccess,
        "management_scopes": [], "role_assignments": [], "application_access_policies": policies,
        "notes": notes,
    }


def _pointerless_apps(inv: Inventory, pointers: set[str], permissions: dict[str, set[tuple[str, str]]]) -> list[dict]:
    """Apps holding Graph/EWS permissions without an Exchange pointer (an access policy needs none)."""
    apps: dict[str, dict[str, Any]] = {}
    for p in inv.mail_access.permissions:
        if p.app_id not in pointers and p.app_id not in apps:
            apps[p.app_id] = {"app_id": p.app_id, "object_id": p.sp_object_id or _uuid("sp", p.app_id),
                              "display_name": p.app_name or p.app_id, "exchange_pointer": False,
                              "app_roles": _app_roles(p.app_id, permissions, known=True), "secret": None,
                              "certificate_pem": None}
    return list(apps.values())


def _fixture_policies(inv: Inventory, groups: list[dict[str, Any]], known: set[str], notes: list[str]) -> list[dict]:
    """The inventory's Application Access Policies as fixture entries. A policy group whose fixture nesting does
    not give the inventoried (flattened) members gets them through one added nested group."""
    mail = inv.mail_access
    if not mail.policies_read:
        notes.append("no Application Access Policies: the inventory did not read them")
        return []
    by_address = {g["primary_smtp"]: g for g in groups}
    flattened = mail.scope_mailboxes() if mail.members_read else {}
    out = []
    for p in mail.policies:
        if p.scope_kind == "unknown" or (p.scope_kind == "group" and p.scope not in by_address) or \
                (p.scope_kind == "mailbox" and p.scope not in known):
            notes.append(f"access policy {p.identity} left out: its scope {p.scope} is not in the inventory")
            continue
        if p.scope_kind == "group":
            group = by_address[p.scope]
            group["type"], group["recipient_type_details"] = "Security", "MailUniversalSecurityGroup"
            nested = {m.via for m in mail.members if m.scope == p.scope and m.via in by_address}
            group["members"] = sorted(set(group["members"]) | nested)
            missing = flattened.get(p.scope, frozenset()) - _flat(p.scope, by_address)
            if missing:
                alias = f"{p.scope.split('@')[0]}-nested"
                extra = {"name": f"{group['name']} (nested members)"[:64], "alias": alias,
                         "primary_smtp": f"{alias}@{p.scope.split('@')[1]}", "type": "Security",
                         "members": sorted(missing & known), "hidden": True}
                groups.append(extra)
                by_address[extra["primary_smtp"]] = extra
                group["members"] = sorted(set(group["members"]) | {extra["primary_smtp"]})
        out.append({"app_id": p.app_id, "scope": p.scope, "access_right": p.access_right,
                    "description": p.description})
    return out


def _flat(address: str, by_address: dict[str, dict[str, Any]]) -> set[str]:
    """Mailboxes of a fixture group, nested groups followed."""
    seen, out, stack = {address}, set(), [address]
    while stack:
        for m in by_address[stack.pop()]["members"]:
            if m in by_address:
                if m not in seen:
                    seen.add(m)
                    stack.append(m)
            else:
                out.add(m)
    return out


def _fixture_groups(inv: Inventory, known: set[str]) -> tuple[list[dict[str, Any]], int]:
    """The inventory's groups as fixture entries, with only members that are fixture mailboxes: (entries, how many
    members were left out, other members included)."""
    groups = []
    dropped_members = 0
    for g in inv.groups:
        members = sorted(m for m in g.members if m in known)
        dropped_members += len(g.members) - len(members) + g.other_members
        entry = {"name": g.name or g.address.split("@")[0], "alias": g.address.split("@")[0],
                 "primary_smtp": g.address, "type": _GROUP_TYPES.get(g.recipient_type.lower(), "Security"),
                 "members": members, "hidden": False}
        if g.recipient_type:
            entry["recipient_type_details"] = g.recipient_type
        for key, value in (("dn", g.dn), ("guid", g.guid), ("external_id", g.external_id)):
            if value:
                entry[key] = value
        if g.dn.upper().startswith("CN="):
            entry["cn"] = _dn_cn(g.dn)
        groups.append(entry)
    return groups, dropped_members


def _dn_cn(dn: str) -> str:
    """The first RDN's value of a DN, unescaped (`CN=Legal\\, EMEA,OU=...` -> `Legal, EMEA`)."""
    out, i = [], 3
    while i < len(dn):
        ch = dn[i]
        if ch == "\\" and i + 1 < len(dn):
            out.append(dn[i + 1])
            i += 2
            continue
        if ch == ",":
            break
        out.append(ch)
        i += 1
    return "".join(out)


def fixture_from_folder(path: Path) -> dict:
    """fixture_from_inventory of an inventory folder (read with its checks: InputError on a bad folder)."""
    from migrator.inventory.store import read_inventory

    return fixture_from_inventory(read_inventory(Path(path)), name=Path(path).name)
