"""What the tenant holds now, read-only, through the same reads as the live inventory plus the RBAC objects.

Any failed read raises (a failed read is never "absent"): an audit that could not see a part of the tenant says so
with an error and a non-zero exit, it never reports that part clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migrator.exchange.interface import GroupMember, RoleAssignmentInfo, ScopeInfo, text
from migrator.model import RBAC_ROLE_SMTP_SEND_AS, SMTP_SEND_AS_APP, aap_permissions_of_role, norm_id


@dataclass
class Observed:
    grants: set[tuple[str, str, str]] = field(default_factory=set)  # (app_id, mailbox, right) held by apps now
    claims: set[str] = field(default_factory=set)  # apps whose SP holds SMTP.SendAsApp in Entra
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # group name (lower) -> direct members
    group_names: dict[str, str] = field(default_factory=dict)  # lower -> as the tenant spells it
    scopes: dict[str, ScopeInfo] = field(default_factory=dict)  # lower name -> scope
    assignments: dict[str, RoleAssignmentInfo] = field(default_factory=dict)  # lower name -> assignment
    principal_app: dict[str, str] = field(default_factory=dict)  # any name of an SP pointer -> app id
    api_calls: int = 0
    # for `migrator grant`/`revoke` (migrator/change/): how scope filters name groups, and how people name things
    group_dns: dict[str, str] = field(default_factory=dict)  # group name (lower) -> DistinguishedName
    app_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # app id -> its names, display name first
    mailbox_names: dict[str, str] = field(default_factory=dict)  # address, alias, UPN, name (lower) -> address
    # an alias, UPN or name more than one mailbox answers to (lower) -> their addresses: refused on the command line
    ambiguous_mailbox_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # the apps' other `Application ...` role assignments (not SMTP.SendAsApp): (app id, role, scope type, scope,
    # filter) as the inventory read them; a group they name serves those apps too
    other_roles: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    group_ids: dict[str, str] = field(default_factory=dict)  # a group's address, GUID, DN, name (lower) -> name (lower)
    # Graph/EWS: each app's consents of AAP-fenced permissions, its access policies (Identity, lower case), and the
    # `Application <permission>` role assignments (lower name -> (app id, role, scope))
    mail_consents: dict[str, set[str]] = field(default_factory=dict)
    mail_policies: dict[str, set[str]] = field(default_factory=dict)
    mail_assignments: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    mail_read: bool = False  # the live reads of policies and permissions answered


def read_observed(profile_path) -> Observed:
    """Read the tenant of a connection profile (raises TenantError on any failed read)."""
    from migrator.exchange.profile import load_profile
    from migrator.inventory.tenant import Clients, inventory_from_readings, read_tenant

    profile = load_profile(profile_path)
    clients = Clients(profile)
    try:
        readings = read_tenant(clients)
        inventory = inventory_from_readings(readings, profile)
        # the live inventory reads every scope and role assignment itself (inventory/rbac.py): reused here
        scopes = readings.management_scopes
        assignments = [r for r in readings.role_assignments
                       if text(r, "Role").strip().lower() == RBAC_ROLE_SMTP_SEND_AS.lower()]
        calls = sum(clients.session.calls.values())
    finally:
        clients.close()
    obs = Observed(api_calls=calls)
    obs.grants = {(norm_id(g.app_id), norm_id(g.mailbox), str(getattr(g.right, "value", g.right)))
                  for g in inventory.grants}
    obs.claims = {norm_id(app) for app, _resource, permission in inventory.app_permissions
                  if permission == SMTP_SEND_AS_APP}
    keys = {}
    for row in readings.groups:
        name = text(row, "Name", "DisplayName")
        for key in ("PrimarySmtpAddress", "ExternalDirectoryObjectId", "Guid", "DistinguishedName", "Identity"):
            if row.get(key):
                keys[name.lower()] = str(row[key])
                break
        obs.group_names[name.lower()] = name
        obs.group_dns[name.lower()] = text(row, "DistinguishedName")
        for key in ("PrimarySmtpAddress", "ExternalDirectoryObjectId", "Guid", "DistinguishedName", "Name"):
            if text(row, key):
                obs.group_ids[text(row, key).lower()] = name.lower()
    for lower, key in keys.items():
        members = readings.group_members.get(key, [])
        obs.groups[lower] = frozenset(GroupMember.from_row(m).address for m in members)
    for row in scopes:
        info = ScopeInfo.from_row(row)
        obs.scopes[info.name.lower()] = info
    for row in assignments:
        assignment = RoleAssignmentInfo.from_row(row)
        obs.assignments[assignment.name.lower()] = assignment
    for row in readings.service_principals:
        app_id = norm_id(text(row, "AppId"))
        for name in ("ObjectId", "AppId", "DisplayName", "Identity", "Name", "Sid"):
            if text(row, name):
                obs.principal_app[norm_id(text(row, name))] = app_id
    _add_names(obs, inventory)
    _add_mail(obs, inventory)
    return obs


def _add_mail(obs: Observed, inventory) -> None:
    access = inventory.mail_access
    obs.mail_read = access.policies_read and access.permissions_read
    for p in access.permissions:
        obs.mail_consents.setdefault(p.app_id, set()).add(p.permission)
    for pol in access.policies:
        obs.mail_policies.setdefault(pol.app_id, set()).add(pol.identity.lower())
    for a in inventory.rbac:
        if aap_permissions_of_role(a.role):
            obs.mail_assignments[a.name.lower()] = (norm_id(a.app_id), a.role, a.scope)


def _add_names(obs: Observed, inventory) -> None:
    """The names an admin may give an app or a mailbox on the command line (`migrator grant`)."""
    obs.other_roles = [(a.app_id, a.role, a.scope_type, a.scope, a.filter) for a in inventory.rbac if not a.smtp]
    for sp in inventory.service_principals:
        names = (sp.display_name, sp.app_id, sp.object_id, sp.exchange_identity, *sp.exchange_names)
        obs.app_names[sp.app_id] = tuple(dict.fromkeys(n for n in names if n))
    targets: dict[str, set[str]] = {}
    for mb in inventory.mailboxes:
        for value in (mb.address, mb.alias, mb.upn, mb.name):
            if value:
                obs.mailbox_names.setdefault(norm_id(value), mb.address)
                targets.setdefault(norm_id(value), set()).add(mb.address)
    addresses = {norm_id(mb.address) for mb in inventory.mailboxes}
    for name, found in targets.items():
        if len(found) > 1:
            if name in addresses:  # a primary address names its own mailbox, whatever else shares it as an alias
                obs.mailbox_names[name] = next(a for a in found if norm_id(a) == name)
            else:
                obs.ambiguous_mailbox_names[name] = tuple(sorted(found))
