"""Per-mailbox permissions: Get-/Add-/Remove-RecipientPermission (SendAs), Get-/Add-/Remove-MailboxPermission and
Get-EXOMailboxPermission (FullAccess)."""

from __future__ import annotations

from migrator.sandbox.api import Caller, CmdletError, CmdletResult
from migrator.sandbox.cmdlets.base import (
    Params,
    _ambiguous,
    _blank,
    _given,
    _limit,
    _not_found,
    _one,
    _trustee_text,
    cmdlet,
    mailbox_permission_row,
    recipient_permission_row,
)
from migrator.sandbox.state import PermissionRow, Recipient, TenantState


def _resolve_trustee(state: TenantState, identity: str, cmdlet: str) -> tuple:
    """An SP (its pointer's DisplayName, ObjectId, AppId, Identity/Name, Sid) or a recipient; both matching is
    ambiguous, as in Exchange."""
    sps = state.find_sps(identity)
    recs = state.find_recipients(identity)
    if identity.strip().upper() == "NT AUTHORITY\\SELF":
        return ("self",)
    if identity.strip().upper().startswith("S-1-5-"):
        if len(sps) == 1:  # a service principal's own Sid
            return ("app", sps[0].app_id)
        return ("sid", identity.strip().upper())
    if len(sps) + len(recs) > 1:
        raise _ambiguous(identity, cmdlet)
    if sps:
        return ("app", sps[0].app_id)
    if recs:
        return ("recipient", recs[0].guid)
    raise _not_found(state, identity, cmdlet)


def _rights(p: Params, allowed: tuple[str, ...], default: str | None = None) -> list[str]:
    rights = [r.strip() for v in p.list("AccessRights") for r in v.split(",") if r.strip()]
    if not rights and default:
        rights = [default]
    if not rights:
        raise CmdletError("ParameterBindingException", "Cannot process command because of one or more missing "
                          "mandatory parameters: AccessRights.", cmdlet=p.cmdlet)
    canon = {a.lower(): a for a in allowed}
    out = []
    for r in rights:
        if r.lower() not in canon:
            raise CmdletError("ParameterBindingException", f"Cannot bind parameter 'AccessRights'. Cannot convert "
                              f"value \"{r}\" to type "
                              "\"Microsoft.Exchange.Management.RecipientTasks.RecipientAccessRight\". "
                              f"The possible enumeration values are \"{', '.join(allowed)}\".", cmdlet=p.cmdlet)
        out.append(canon[r.lower()])
    return out


def _permission_rows(state: TenantState, table, p: Params, trustee_param: str,
                     hazard: bool) -> list[PermissionRow]:
    identity = p.str("Identity")
    rows = None
    if _given(identity):
        hits = [r for r in state.find_recipients(identity)]
        if len(hits) > 1:
            raise _ambiguous(identity, p.cmdlet)
        if hits:
            rows = table.for_mailbox(hits[0].guid)
        elif not hazard:
            raise _not_found(state, identity, p.cmdlet)
        # else: an unknown identity returns every row (the hazard)
    elif identity is not None and not hazard:
        raise CmdletError("ParameterBindingException", "Cannot bind argument to parameter 'Identity' because it is "
                          "an empty string.", cmdlet=p.cmdlet)
    who = p.str(trustee_param)
    if _given(who):
        trustee = _resolve_trustee(state, who, p.cmdlet)
        rows = [r for r in rows if r.trustee == trustee] if rows is not None else table.for_trustee(trustee)
        rows = [r for r in rows if not r.other_sid]  # an ACE on another SID of the trustee is missed
    if rows is None:
        rows = list(table)
    recs = state.recipients

    def order(row: PermissionRow):
        r = recs.get(row.mailbox)
        return (r.name.lower() if r else "", row.mailbox, row.seq)

    return sorted(rows, key=order)


@cmdlet("Get-RecipientPermission", ("Identity", "Trustee", "AccessRights", "ResultSize", "ReadFromDomainController"))
def get_recipient_permission(state: TenantState, p: Params, caller: Caller):
    rows = _permission_rows(state, state.recipient_permissions, p, "Trustee", hazard=True)
    if p.has("AccessRights"):
        wanted = set(_rights(p, ("SendAs",)))
        rows = [r for r in rows if wanted & set(r.access_rights)]
    return _limit(p, [recipient_permission_row(state, r) for r in rows])


def _mailbox_for_write(state: TenantState, p: Params, kinds=("mailbox", "group")) -> Recipient:
    return _one(state, p.str("Identity", required=True), p.cmdlet, kinds=kinds)


@cmdlet("Add-RecipientPermission", ("Identity", "Trustee", "AccessRights", "Deny"), write=True)
def add_recipient_permission(state: TenantState, p: Params, caller: Caller):
    mbx = _mailbox_for_write(state, p)
    trustee = _resolve_trustee(state, p.str("Trustee", required=True), p.cmdlet)
    rights = _rights(p, ("SendAs",))
    deny = p.bool("Deny")
    for row in state.recipient_permissions.for_mailbox(mbx.guid):
        if row.trustee == trustee and row.deny == deny and not row.is_inherited:
            return CmdletResult([recipient_permission_row(state, row)],
                                [f"The appropriate access control entry is already present on object "
                                 f"\"{mbx.name}\" for account \"{_trustee_text(state, trustee)}\"."])
    row = PermissionRow(mailbox=mbx.guid, trustee=trustee, access_rights=rights, deny=deny)
    state.recipient_permissions.append(row)
    if trustee[0] == "app":
        state.sync_access([trustee[1]])
    return CmdletResult([recipient_permission_row(state, row)])


@cmdlet("Remove-RecipientPermission", ("Identity", "Trustee", "AccessRights", "Deny"), write=True)
def remove_recipient_permission(state: TenantState, p: Params, caller: Caller):
    mbx = _mailbox_for_write(state, p)
    trustee = _resolve_trustee(state, p.str("Trustee", required=True), p.cmdlet)
    _rights(p, ("SendAs",))
    deny = p.bool("Deny")
    gone = [r for r in state.recipient_permissions.for_mailbox(mbx.guid)
            if r.trustee == trustee and r.deny == deny and not r.is_inherited]
    if not gone:
        return CmdletResult([], [f"Can't remove the access control entry on the object \"{mbx.name}\" for account "
                                 f"\"{_trustee_text(state, trustee)}\" because the ACE doesn't exist on the object."])
    for r in gone:
        state.recipient_permissions.remove(r)
    if trustee[0] == "app":
        state.sync_access([trustee[1]])
    return CmdletResult()


def _get_mailbox_permission(state: TenantState, p: Params, hazard: bool) -> CmdletResult:
    rows = [r for r in _permission_rows(state, state.mailbox_permissions, p, "User", hazard=hazard)]
    return _limit(p, [mailbox_permission_row(state, r) for r in rows])


@cmdlet("Get-MailboxPermission", ("Identity", "User", "ResultSize", "Owner", "ReadFromDomainController"))
def get_mailbox_permission(state: TenantState, p: Params, caller: Caller):
    return _get_mailbox_permission(state, p, hazard=True)


@cmdlet("Get-EXOMailboxPermission", ("Identity", "User", "ResultSize", "UserPrincipalName", "PrimarySmtpAddress",
                                     "ExternalDirectoryObjectId"))
def get_exo_mailbox_permission(state: TenantState, p: Params, caller: Caller):
    raw = {"Identity": next((p.str(k) for k in ("Identity", "UserPrincipalName", "PrimarySmtpAddress",
                                                "ExternalDirectoryObjectId") if p.str(k) is not None), None)}
    if _blank(raw["Identity"]):
        raise CmdletError("ParameterBindingException", "Cannot process command because of one or more missing "
                          "mandatory parameters: Identity.", cmdlet=p.cmdlet)
    for k in ("User", "ResultSize"):
        if p.has(k):
            raw[k] = p.raw(k)
    return _get_mailbox_permission(state, Params(p.cmdlet, raw, ("Identity", "User", "ResultSize")), hazard=False)


MAILBOX_RIGHTS = ("FullAccess", "ExternalAccount", "DeleteItem", "ReadPermission", "ChangePermission",
                  "ChangeOwner", "SendAs")


@cmdlet("Add-MailboxPermission", ("Identity", "User", "AccessRights", "InheritanceType", "AutoMapping", "Deny",
                                  "Owner"), write=True)
def add_mailbox_permission(state: TenantState, p: Params, caller: Caller):
    mbx = _mailbox_for_write(state, p, kinds=("mailbox",))
    trustee = _resolve_trustee(state, p.str("User", required=True), p.cmdlet)
    rights = _rights(p, MAILBOX_RIGHTS)
    deny = p.bool("Deny")
    inheritance = p.str("InheritanceType") or "All"
    for row in state.mailbox_permissions.for_mailbox(mbx.guid):
        if row.trustee == trustee and row.deny == deny and not row.is_inherited \
                and set(rights) <= set(row.access_rights):
            return CmdletResult([mailbox_permission_row(state, row)],
                                [f"An existing permission entry was found for user: "
                                 f"{_trustee_text(state, trustee)}."])
    row = PermissionRow(mailbox=mbx.guid, trustee=trustee, access_rights=rights, deny=deny,
                        inheritance_type=inheritance)
    state.mailbox_permissions.append(row)
    if trustee[0] == "app":
        state.sync_access([trustee[1]])  # FullAccess carries SMTP and IMAP/POP reach
    return CmdletResult([mailbox_permission_row(state, row)])


@cmdlet("Remove-MailboxPermission", ("Identity", "User", "AccessRights", "InheritanceType", "Deny",
                                     "BypassMasterAccountSid"), write=True)
def remove_mailbox_permission(state: TenantState, p: Params, caller: Caller):
    mbx = _mailbox_for_write(state, p, kinds=("mailbox",))
    trustee = _resolve_trustee(state, p.str("User", required=True), p.cmdlet)
    rights = set(_rights(p, MAILBOX_RIGHTS))
    deny = p.bool("Deny")
    changed = False
    for row in state.mailbox_permissions.for_mailbox(mbx.guid):
        if row.trustee == trustee and row.deny == deny and not row.is_inherited:
            remaining = [r for r in row.access_rights if r not in rights]
            if len(remaining) != len(row.access_rights):
                changed = True
                if remaining:
                    row.access_rights = remaining
                else:
                    state.mailbox_permissions.remove(row)
    if not changed:
        return CmdletResult([], [f"Can't remove the access control entry on the object \"{mbx.name}\" for account "
                                 f"\"{_trustee_text(state, trustee)}\" because the ACE doesn't exist on the object."])
    if trustee[0] == "app":
        state.sync_access([trustee[1]])
    return CmdletResult()


