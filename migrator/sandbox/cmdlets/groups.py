"""Mail-enabled groups: Get-/New-/Set-/Remove-DistributionGroup and Get-/Update-/Add-/Remove-DistributionGroupMember.
A rename moves the DistinguishedName; every membership change re-evaluates the RBAC scopes that name the group."""

from __future__ import annotations

import re
from dataclasses import replace

from migrator.sandbox import opath
from migrator.sandbox.api import Caller, CmdletError, CmdletResult
from migrator.sandbox.cmdlets.base import (
    MAX_UPDATE_MEMBERS,
    Params,
    _ambiguous,
    _blank,
    _check_name,
    _filtered,
    _given,
    _limit,
    _not_found,
    _one,
    _sorted_recipients,
    _types,
    cmdlet,
    group_row,
    recipient_row,
)
from migrator.sandbox.identity import normalise, recipient_keys
from migrator.sandbox.state import Recipient, TenantState, det_uuid, escape_dn

_ALIAS_BAD = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]")




def _groups_affected(state: TenantState, group: Recipient, old_dn: str | None = None) -> set[str]:
    """Apps whose RBAC targets depend on this group (by RecipientGroupScope or a MemberOfGroup filter)."""
    dns = {group.dn.lower()} | ({old_dn.lower()} if old_dn else set())
    apps = set()
    for ra in state.assignments.values():
        if ra.scope_kind == "group" and ra.scope_ref == group.guid:
            apps.add(ra.app_id)
        elif ra.scope_kind == "custom":
            scope = state.scopes.get(ra.scope_ref.lower())
            if scope is not None and opath.group_dns(scope.ast) & dns:
                apps.add(ra.app_id)
    return apps


def _membership_changed(state: TenantState, group: Recipient, old_dn: str | None = None) -> None:
    state.invalidate_scopes()
    state.sync_access(_groups_affected(state, group, old_dn))


def _manager_check(state: TenantState, p: Params, group: Recipient) -> None:
    if group.extra.get("managed_by") and not p.bool("BypassSecurityGroupManagerCheck"):
        raise CmdletError("OperationRequiresGroupManagerException", "You don't have sufficient permissions. This "
                          "operation can only be performed by a manager of the group.", cmdlet=p.cmdlet)


def _default_domain(state: TenantState) -> str:
    if state.default_domain:
        return state.default_domain
    counts: dict[str, int] = {}
    for r in state.recipients.values():
        if r.kind == "mailbox" and "@" in r.primary_smtp:
            d = r.primary_smtp.split("@")[1]
            counts[d] = counts.get(d, 0) + 1
    return max(sorted(counts), key=lambda d: counts[d]) if counts else state.domain


def _resolve_members(state: TenantState, ids: list[str], cmdlet: str) -> list[Recipient]:
    out = []
    for identity in ids:
        out.append(_one(state, identity, cmdlet))
    return out


# ---- what a lagging read sees (readlag.py): a group written lately as it was, with its members then -------------
def _snapshot(g: Recipient) -> Recipient:
    return replace(g, members=dict(g.members), extra=dict(g.extra), attributes=dict(g.attributes),
                   email_addresses=list(g.email_addresses))


def _before_write(state: TenantState, g: Recipient | None, guid: str = "") -> None:
    """Reads that lag keep seeing the group as it is now (None: not there yet) until this write is visible."""
    if state.read_lag.active:
        state.read_lag.wrote("group", g.guid if g is not None else guid, _snapshot(g) if g is not None else None)


def _groups_as_read(state: TenantState, identity: str | None) -> list[Recipient]:
    """Groups (all, or those `identity` names) as a lagging read sees them."""
    stale = state.read_lag.stale_of("group")
    live = state.find_recipients(identity) if identity is not None else _sorted_recipients(state, ("group",))
    live = [r for r in live if r.is_group]
    if not stale:
        return live
    out = [stale.get(r.guid, r) for r in live]
    seen = {r.guid for r in live}
    want = normalise(identity) if identity is not None else None
    for guid, before in stale.items():  # removed (or renamed) lately: still seen under its earlier names
        if before is not None and guid not in seen and (
                want is None or want in {normalise(k) for k in recipient_keys(before)}):
            out.append(before)
    return sorted((r for r in out if r is not None), key=lambda r: (r.name.lower(), r.guid))


def _one_group_as_read(state: TenantState, identity: str, cmdlet: str) -> Recipient:
    hits = [g for g in _groups_as_read(state, identity) if g.group_type in ("Security", "Distribution")]
    if not hits:
        raise _not_found(state, identity, cmdlet)
    if len(hits) > 1:
        raise _ambiguous(identity, cmdlet)
    return hits[0]


@cmdlet("Get-DistributionGroup", ("Identity", "ResultSize", "RecipientTypeDetails", "Filter", "Anr"))
def get_distribution_group(state: TenantState, p: Params, caller: Caller):
    identity = p.str("Identity")
    if identity is not None:
        if _blank(identity):
            raise CmdletError("ParameterBindingException", "Cannot bind argument to parameter 'Identity' because "
                              "it is an empty string.", cmdlet=p.cmdlet)
        g = _one_group_as_read(state, identity, p.cmdlet)
        return CmdletResult([group_row(state, g)])
    recs = [r for r in _groups_as_read(state, None) if r.group_type in ("Security", "Distribution")]
    recs = _filtered(state, p, _types(p, recs))
    return _limit(p, [group_row(state, g) for g in recs])


@cmdlet("New-DistributionGroup", ("Name", "Alias", "DisplayName", "PrimarySmtpAddress", "Type", "Members",
                                  "MemberJoinRestriction", "MemberDepartRestriction", "ManagedBy", "Notes",
                                  "CopyOwnerToMember", "RequireSenderAuthenticationEnabled", "IgnoreNamingPolicy",
                                  "Description"), write=True)
def new_distribution_group(state: TenantState, p: Params, caller: Caller):
    name = _check_name(p.str("Name", required=True), p.cmdlet)
    gtype = (p.str("Type") or "Distribution").strip().capitalize()
    if gtype not in ("Security", "Distribution"):
        raise CmdletError("ParameterBindingException", f"Cannot bind parameter 'Type'. Cannot convert value "
                          f"\"{p.str('Type')}\" to type \"Microsoft.Exchange.Management.RecipientTasks.GroupType\".",
                          cmdlet=p.cmdlet)
    alias = (p.str("Alias") or _ALIAS_BAD.sub("", name)).strip(".") or "group"
    if _ALIAS_BAD.search(alias):
        raise CmdletError("DataValidationException", f"The alias \"{alias}\" contains characters that aren't "
                          "allowed.", cmdlet=p.cmdlet)
    smtp = (p.str("PrimarySmtpAddress") or f"{alias}@{_default_domain(state)}").strip().lower()
    dn = f"CN={escape_dn(name)},{state.dn_suffix}"
    for r in state.recipients.values():  # includes not-yet-replicated groups: New- sees them
        if r.name.lower() == name.lower() or r.dn.lower() == dn.lower():
            raise CmdletError("ADObjectAlreadyExistsException", f"Active Directory operation failed on "
                              f"{state.server}. The object '{dn}' already exists.", cmdlet=p.cmdlet)
    if state.find_recipients(smtp, include_unreplicated=True) or state.find_recipients(
            alias, include_unreplicated=True):
        clash = (state.find_recipients(smtp, include_unreplicated=True)
                 or state.find_recipients(alias, include_unreplicated=True))[0]
        raise CmdletError("ProxyAddressExistsException", f"The proxy address \"SMTP:{smtp}\" is already being used "
                          f"by the proxy addresses or LegacyExchangeDN of \"{clash.name}\". Please choose another "
                          "proxy address.", cmdlet=p.cmdlet)
    members = _resolve_members(state, [m for v in p.list("Members") for m in [v]], p.cmdlet)
    now = state.clock.now()
    g = Recipient(guid=det_uuid("group", smtp, str(now)), kind="group", name=name, alias=alias,
                  display_name=p.str("DisplayName") or name, primary_smtp=smtp,
                  external_id=det_uuid("group-object", smtp, str(now)), dn=dn, cn=name,
                  recipient_type_details="MailUniversalSecurityGroup" if gtype == "Security"
                  else "MailUniversalDistributionGroup", group_type=gtype,
                  email_addresses=[f"SMTP:{smtp}"], created=now)
    g.extra = {"member_join_restriction": p.str("MemberJoinRestriction") or "Closed",
               "member_depart_restriction": p.str("MemberDepartRestriction") or "Closed",
               "managed_by": p.list("ManagedBy"), "notes": p.str("Notes") or p.str("Description")}
    for m in members:
        g.members[m.guid] = None
    _before_write(state, None, g.guid)
    state.add_recipient(g)
    _membership_changed(state, g)  # a scope may already name this DN
    return CmdletResult([group_row(state, g)])


@cmdlet("Set-DistributionGroup", ("Identity", "Name", "DisplayName", "Alias", "PrimarySmtpAddress",
                                  "HiddenFromAddressListsEnabled", "MemberJoinRestriction", "MemberDepartRestriction",
                                  "ManagedBy", "Notes", "Description", "BypassSecurityGroupManagerCheck",
                                  "RequireSenderAuthenticationEnabled", "CustomAttribute1", "CustomAttribute2"),
        write=True)
def set_distribution_group(state: TenantState, p: Params, caller: Caller):
    g = _one(state, p.str("Identity", required=True), p.cmdlet, kinds=("group",),
             group_types=("Security", "Distribution"))
    _manager_check(state, p, g)
    old_dn = g.dn
    before = _snapshot(g)
    if p.has("Name"):
        name = _check_name(p.str("Name"), p.cmdlet)
        if any(r is not g and r.name.lower() == name.lower() for r in state.recipients.values()):
            raise CmdletError("ADObjectAlreadyExistsException", f"Active Directory operation failed on "
                              f"{state.server}. The object 'CN={name},{state.dn_suffix}' already exists.",
                              cmdlet=p.cmdlet)
        g.name, g.cn = name, name
        g.dn = f"CN={escape_dn(name)},{state.dn_suffix}"  # a rename moves the DN: scopes naming the old DN go dead
    if p.has("DisplayName"):
        g.display_name = p.str("DisplayName") or g.name
    if p.has("Alias"):
        g.alias = p.str("Alias", required=True)
    if p.has("PrimarySmtpAddress"):
        smtp = p.str("PrimarySmtpAddress", required=True).strip().lower()
        clash = [r for r in state.find_recipients(smtp, include_unreplicated=True) if r is not g]
        if clash:
            raise CmdletError("ProxyAddressExistsException", f"The proxy address \"SMTP:{smtp}\" is already being "
                              f"used by the proxy addresses or LegacyExchangeDN of \"{clash[0].name}\". Please "
                              "choose another proxy address.", cmdlet=p.cmdlet)
        # the old primary stays as a secondary (lower-case "smtp:") proxy address, as Exchange keeps it
        others = [a for a in g.email_addresses if a.split(":", 1)[-1].lower() != smtp]
        g.email_addresses = [f"SMTP:{smtp}"] + [("smtp:" + a.split(":", 1)[1]) if a.lower().startswith("smtp:")
                                                else a for a in others]
        g.primary_smtp = smtp
    if p.has("HiddenFromAddressListsEnabled"):
        g.hidden = p.bool("HiddenFromAddressListsEnabled")
    for param, key in (("MemberJoinRestriction", "member_join_restriction"),
                       ("MemberDepartRestriction", "member_depart_restriction"),
                       ("Notes", "notes"), ("Description", "notes")):
        if p.has(param):
            g.extra[key] = p.str(param)
    if p.has("ManagedBy"):
        g.extra["managed_by"] = p.list("ManagedBy")
    for attr in ("CustomAttribute1", "CustomAttribute2"):
        if p.has(attr):
            g.attributes[attr] = p.str(attr) or ""
    if state.read_lag.active:
        state.read_lag.wrote("group", g.guid, before)
    state.reindex(g)
    if g.dn != old_dn:
        _membership_changed(state, g, old_dn)
    return CmdletResult()


@cmdlet("Remove-DistributionGroup", ("Identity", "BypassSecurityGroupManagerCheck"), write=True)
def remove_distribution_group(state: TenantState, p: Params, caller: Caller):
    g = _one(state, p.str("Identity", required=True), p.cmdlet, kinds=("group",),
             group_types=("Security", "Distribution"))
    _manager_check(state, p, g)
    affected = _groups_affected(state, g)
    _before_write(state, g)
    state.drop_recipient(g)
    state.invalidate_scopes()
    state.sync_access(affected)
    return CmdletResult()


def member_row(state: TenantState, r: Recipient) -> dict:
    return {k: v for k, v in recipient_row(state, r).items()
            if k in ("Identity", "Id", "Name", "Alias", "DisplayName", "PrimarySmtpAddress", "EmailAddresses",
                     "ExternalDirectoryObjectId", "Guid", "DistinguishedName", "RecipientType",
                     "RecipientTypeDetails", "WindowsEmailAddress")}


@cmdlet("Get-DistributionGroupMember", ("Identity", "ResultSize", "ReadFromDomainController"))
def get_distribution_group_member(state: TenantState, p: Params, caller: Caller):
    identity = p.str("Identity")
    groups = None
    if _given(identity):
        hits = _groups_as_read(state, identity)
        if len(hits) > 1:
            raise _ambiguous(identity, p.cmdlet)
        groups = hits or None
    if groups is None:  # $null, empty or unknown identity: the members of EVERY group (the hazard)
        groups = _groups_as_read(state, None)
    rows: list[dict] = []
    for g in groups:
        members = sorted((state.recipients[m] for m in g.members if m in state.recipients),
                         key=lambda r: (r.name.lower(), r.guid))
        rows.extend(member_row(state, m) for m in members)
    return _limit(p, rows)


@cmdlet("Update-DistributionGroupMember", ("Identity", "Members", "BypassSecurityGroupManagerCheck"), write=True)
def update_distribution_group_member(state: TenantState, p: Params, caller: Caller):
    g = _one(state, p.str("Identity", required=True), p.cmdlet, kinds=("group",))
    _manager_check(state, p, g)
    ids = p.list("Members")
    if len(ids) > MAX_UPDATE_MEMBERS:
        raise CmdletError("ParameterBindingException", f"Cannot validate argument on parameter 'Members'. The "
                          f"number of provided arguments ({len(ids)}) exceeds the maximum number of allowed "
                          f"arguments ({MAX_UPDATE_MEMBERS}).", cmdlet=p.cmdlet)
    members = _resolve_members(state, ids, p.cmdlet)  # all or nothing: resolve before replacing
    _before_write(state, g)
    g.members = {m.guid: None for m in members}
    _membership_changed(state, g)
    return CmdletResult()


@cmdlet("Add-DistributionGroupMember", ("Identity", "Member", "BypassSecurityGroupManagerCheck"), write=True)
def add_distribution_group_member(state: TenantState, p: Params, caller: Caller):
    g = _one(state, p.str("Identity", required=True), p.cmdlet, kinds=("group",))
    _manager_check(state, p, g)
    m = _one(state, p.str("Member", required=True), p.cmdlet)
    if m.guid in g.members:
        raise CmdletError("MemberAlreadyExistsException", f"The recipient \"{m.name}\" is already a member of the "
                          f"group \"{g.name}\".", cmdlet=p.cmdlet)
    _before_write(state, g)
    g.members[m.guid] = None
    _membership_changed(state, g)
    return CmdletResult()


@cmdlet("Remove-DistributionGroupMember", ("Identity", "Member", "BypassSecurityGroupManagerCheck"), write=True)
def remove_distribution_group_member(state: TenantState, p: Params, caller: Caller):
    g = _one(state, p.str("Identity", required=True), p.cmdlet, kinds=("group",))
    _manager_check(state, p, g)
    m = _one(state, p.str("Member", required=True), p.cmdlet)
    if m.guid not in g.members:
        raise CmdletError("MemberNotFoundException", f"The recipient \"{m.name}\" isn't a member of the group "
                          f"\"{g.name}\".", cmdlet=p.cmdlet)
    _before_write(state, g)
    del g.members[m.guid]
    _membership_changed(state, g)
    return CmdletResult()


