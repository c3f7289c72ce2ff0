"""Per-mailbox permissions: Get-/Add-/Remove-RecipientPermission (SendAs), Get-/Add-/Remove-MailboxPermission and
Get-EXOMailboxPermission (FullAccess)."""

from __future__ import annotations

from dataclasses import replace

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
from migrator.sandbox.state import PermissionRow, PermissionTable, Recipient, TenantState

# readlag.py kinds of the two tables: a mailbox's rows are one object.
TABLE_KINDS = {"recipient_permissions": "recipient_permission", "mailbox_permissions": "mailbox_permission"}


def _kind(state: TenantState, table: PermissionTable) -> str:
    return TABLE_KINDS["recipient_permissions" if table is state.recipient_permissions else "mailbox_permissions"]


def _rows_now(table: PermissionTable, guid: str) -> list[PermissionRow]:
    return [replace(r, access_rights=list(r.access_rights)) for r in table.for_mailbox(guid)]


def _before_write(state: TenantState, table: PermissionTable, guid: str,
                  before: list[PermissionRow] | None = None) -> None:
    """Keep the mailbox's rows as they are for reads that lag behind the write about to happen (readlag.py)."""
    if state.read_lag.active:
        state.read_lag.wrote(_kind(state, table), guid, _rows_now(table, guid) if before is None else before)


class _LaggedTable:
    """A permission table as a lagging read sees it: the mailboxes written lately show their earlier rows."""

    def __init__(self, table: PermissionTable, stale: dict) -> None:
        self._table, self._stale = table, stale

    def for_mailbox(self, guid: str) -> list[PermissionRow]:
        return list(self._stale[guid]) if guid in self._stale else self._table.for_mailbox(guid)

    def for_trustee(self, trustee: tuple) -> list[PermissionRow]:
        live = [r for r in self._table.for_trustee(trustee) if r.mailbox not in self._stale]
        return live + [r for rows in self._stale.values() for r in rows if r.trustee == trustee]

    def __iter__(self):
        live = [r for r in self._table if r.mailbox not in self._stale]
        return iter(live + [r for rows in self._stale.values() for r in rows])


def _read_view(state: TenantState, table: PermissionTable):
    stale = state.read_lag.stale_of(_kind(state, table))
    return _LaggedTable(table, stale) if stale else table


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
    rows = _permission_rows(state, _read_view(state, state.recipient_permissions), p, "Trustee", hazard=True)
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
    _before_write(state, state.recipient_permissions, mbx.guid)
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
    _before_write(state, state.recipient_permissions, mbx.guid)
    for r in gone:
        state.recipient_permissions.remove(r)
    if trustee[0] == "app":
        state.sync_access([trustee[1]])
    return CmdletResult()


def _get_mailbox_permission(state: TenantState, p: Params, hazard: bool) -> CmdletResult:
    rows = _permission_rows(state, _read_view(state, state.mailbox_permissions), p, "User", hazard=hazard)
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
    _before_write(state, state.mailbox_permissions, mbx.guid)
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
    before = _rows_now(state.mailbox_permissions, mbx.guid) if state.read_lag.active else None
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
    _before_write(state, state.mailbox_permissions, mbx.guid, before)
    if trustee[0] == "app":
        state.sync_access([trustee[1]])
    return CmdletResult()


