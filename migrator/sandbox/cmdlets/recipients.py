"""Recipients and service principals: Get-Mailbox, Get-EXOMailbox, Get-Recipient, Get-/New-/Remove-ServicePrincipal."""

from __future__ import annotations

from migrator.sandbox.api import Caller, CmdletError, CmdletResult
from migrator.sandbox.cmdlets.base import (
    EXO_MAILBOX_MINIMUM,
    Params,
    _blank,
    _filtered,
    _given,
    _limit,
    _one,
    _one_sp,
    _sorted_recipients,
    _types,
    cmdlet,
    mailbox_row,
    recipient_row,
    sp_row,
)
from migrator.sandbox.state import Recipient, TenantState, default_pointer_name, sid_for


@cmdlet("Get-Mailbox", ("Identity", "ResultSize", "RecipientTypeDetails", "Filter", "Anr"))
def get_mailbox(state: TenantState, p: Params, caller: Caller):
    identity = p.str("Identity")
    if identity is not None:
        if _blank(identity):
            raise CmdletError("ParameterBindingException", "Cannot bind argument to parameter 'Identity' because "
                              "it is an empty string.", cmdlet=p.cmdlet)
        return CmdletResult([mailbox_row(state, _one(state, identity, p.cmdlet, kinds=("mailbox",)))])
    recs = _filtered(state, p, _types(p, _sorted_recipients(state, ("mailbox",))))
    anr = (p.str("Anr") or "").lower()
    if anr:
        recs = [r for r in recs if any(v.lower().startswith(anr) for v in (r.name, r.alias, r.display_name,
                                                                            r.primary_smtp))]
    return _limit(p, [mailbox_row(state, r) for r in recs])


@cmdlet("Get-EXOMailbox", ("Identity", "ExternalDirectoryObjectId", "UserPrincipalName", "PrimarySmtpAddress",
                           "ResultSize", "Properties", "PropertySets", "RecipientTypeDetails", "Filter", "Anr"))
def get_exo_mailbox(state: TenantState, p: Params, caller: Caller):
    identity = next((p.str(k) for k in ("Identity", "ExternalDirectoryObjectId", "UserPrincipalName",
                                        "PrimarySmtpAddress") if p.str(k) is not None), None)
    if identity is not None:
        if _blank(identity):
            raise CmdletError("ParameterBindingException", "Cannot bind argument to parameter 'Identity' because "
                              "it is an empty string.", cmdlet=p.cmdlet)
        recs = [_one(state, identity, p.cmdlet, kinds=("mailbox",))]
        limited = CmdletResult([mailbox_row(state, recs[0])])
    else:
        recs = _filtered(state, p, _types(p, _sorted_recipients(state, ("mailbox",))))
        limited = _limit(p, [mailbox_row(state, r) for r in recs])
    sets = {s.lower() for v in p.list("PropertySets") for s in v.split(",")}
    if "all" in sets:
        return limited
    wanted = list(EXO_MAILBOX_MINIMUM)
    known = set(limited[0]) if limited else set(mailbox_row(state, Recipient("x", "mailbox", "", "", "", "")))
    known_lower = {k.lower(): k for k in known}
    for prop in (s.strip() for v in p.list("Properties") for s in v.split(",")):
        if not prop:
            continue
        if prop.lower() not in known_lower:
            raise CmdletError("ArgumentException", f"The property '{prop}' is not a valid property of "
                              "Get-EXOMailbox.", cmdlet=p.cmdlet)
        wanted.append(known_lower[prop.lower()])
    return CmdletResult([{k: row.get(k) for k in dict.fromkeys(wanted)} for row in limited], limited.warnings)


@cmdlet("Get-Recipient", ("Identity", "ResultSize", "RecipientType", "RecipientTypeDetails", "Filter",
                          "RecipientPreviewFilter", "Anr"))
def get_recipient(state: TenantState, p: Params, caller: Caller):
    identity = p.str("Identity")
    if identity is not None:
        if _blank(identity):
            raise CmdletError("ParameterBindingException", "Cannot bind argument to parameter 'Identity' because "
                              "it is an empty string.", cmdlet=p.cmdlet)
        return CmdletResult([recipient_row(state, _one(state, identity, p.cmdlet))])
    recs = _types(p, _sorted_recipients(state))
    kinds = {t.lower() for v in p.list("RecipientType") for t in v.split(",") if t.strip()}
    if kinds:
        recs = [r for r in recs if r.recipient_type.lower() in kinds]
    recs = _filtered(state, p, recs, "Filter")
    recs = _filtered(state, p, recs, "RecipientPreviewFilter")
    return _limit(p, [recipient_row(state, r) for r in recs])


# ------------------------------------------------------------------------------------------------ service principals
@cmdlet("Get-ServicePrincipal", ("Identity", "Organization"))
def get_service_principal(state: TenantState, p: Params, caller: Caller):
    # A pointer created or removed lately shows as it was to a lagging read (readlag.py): (exists, DisplayName).
    stale = state.read_lag.stale_of("pointer")

    def seen(app) -> tuple[bool, str]:
        return stale.get(app.app_id, (app.exchange_pointer, app.pointer_name))

    every = sorted((a for a in state.apps.values() if seen(a)[0]), key=lambda a: a.object_id)
    identity = p.str("Identity")
    if _given(identity):
        hits = [a for a in state.find_sps(identity) if seen(a)[0]]
        want = identity.strip().lower()
        hits += [a for a in every if a.app_id in stale and a not in hits
                 and want in (a.app_id, a.object_id, seen(a)[1].lower(), sid_for("sp:" + a.app_id).lower())]
        if hits:  # an unknown identity returns EVERY service principal (the hazard)
            every = hits
    return CmdletResult([{**sp_row(a), "DisplayName": seen(a)[1]} for a in every])


@cmdlet("New-ServicePrincipal", ("AppId", "ObjectId", "ServiceId", "DisplayName", "Organization"), write=True)
def new_service_principal(state: TenantState, p: Params, caller: Caller):
    app_id = p.str("AppId", required=True).strip().lower()
    object_id = (p.str("ObjectId") or p.str("ServiceId") or "").strip().lower()
    if not object_id:
        raise CmdletError("ParameterBindingException", "Cannot process command because of one or more missing "
                          "mandatory parameters: ObjectId.", cmdlet=p.cmdlet)
    app = state.apps.get(app_id)
    if app is None or app.object_id != object_id:
        raise CmdletError("ManagementObjectNotFoundException", f"The service principal with AppId '{app_id}' and "
                          f"ObjectId '{object_id}' couldn't be found in Azure Active Directory.", http_status=404,
                          cmdlet=p.cmdlet)
    if app.exchange_pointer:
        raise CmdletError("ADObjectAlreadyExistsException", f"The service principal with AppId '{app_id}' already "
                          "exists.", cmdlet=p.cmdlet)
    state.read_lag.wrote("pointer", app.app_id, (False, ""))
    app.exchange_pointer = True
    app.pointer_created = state.clock.now()
    # The pointer's DisplayName is Exchange's own; the Entra name stays as it is. Without -DisplayName, the sandbox
    # names the pointer unlike the Entra name, as Microsoft's examples do (a trustee shown by it must still match).
    app.pointer_name = p.str("DisplayName") or default_pointer_name(app.display_name)
    state.index_app(app)
    state.sync_access([app.app_id])
    return CmdletResult([sp_row(app)])


@cmdlet("Remove-ServicePrincipal", ("Identity", "Organization"), write=True)
def remove_service_principal(state: TenantState, p: Params, caller: Caller):
    app = _one_sp(state, p.str("Identity", required=True), p.cmdlet)
    state.read_lag.wrote("pointer", app.app_id, (True, app.pointer_name))
    app.exchange_pointer = False
    state.index_app(app)
    state.sync_access([app.app_id])
    return CmdletResult()




# ------------------------------------------------------------------------------------------------ attribute writes
_MAILBOX_ATTRS = tuple(f"CustomAttribute{i}" for i in range(1, 16)) + ("Office",)
_USER_ATTRS = ("Department", "Company", "Office", "City", "StateOrProvince", "CountryOrRegion")


def _set_attributes(state: TenantState, p: Params, names: tuple[str, ...]) -> None:
    """Attribute writes move mailboxes in or out of attribute-filtered scopes: re-evaluate every scoped app."""
    rec = _one(state, p.str("Identity", required=True), p.cmdlet, kinds=("mailbox",))
    for attr in names:
        if p.has(attr):
            value = p.str(attr) or ""
            if value:
                rec.attributes[attr] = value
            else:
                rec.attributes.pop(attr, None)
    if p.has("DisplayName"):
        rec.display_name = p.str("DisplayName") or rec.name
    if p.has("HiddenFromAddressListsEnabled"):
        rec.hidden = p.bool("HiddenFromAddressListsEnabled")
    state.invalidate_scopes()
    state.sync_access(state.apps_with_assignments())


@cmdlet("Set-Mailbox", ("Identity", "DisplayName", "HiddenFromAddressListsEnabled") + _MAILBOX_ATTRS, write=True)
def set_mailbox(state: TenantState, p: Params, caller: Caller):
    _set_attributes(state, p, _MAILBOX_ATTRS)
    return CmdletResult()


@cmdlet("Set-User", ("Identity", "DisplayName") + _USER_ATTRS, write=True)
def set_user(state: TenantState, p: Params, caller: Caller):
    _set_attributes(state, p, _USER_ATTRS)
    return CmdletResult()
