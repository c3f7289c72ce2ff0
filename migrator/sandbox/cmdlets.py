"""Exchange Online cmdlets of the sandbox: one function per cmdlet, registered by name (EXCHANGE.md §3).

Parameter names, output field names and error types are Microsoft's. Faithfully modelled hazards:
- the Get-* cmdlets in `RETURNS_ALL_ON_BAD_IDENTITY` return every object for a $null, empty or unknown -Identity;
- -ResultSize defaults to 1000 rows (with Exchange's warning) unless `Unlimited` or a number is given;
- a just-created group is invisible to other cmdlets for `settings.replication_delay` seconds, yet New- of the
  same name already fails;
- `-Exclusive` scopes are accepted but do not restrict apps; a scope in use cannot be removed.
Every write records the access it changes in the timeline (state.sync_access).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Callable

from migrator.model import FILTERABLE_ATTRIBUTES
from migrator.sandbox import opath
from migrator.sandbox.api import Caller, CmdletError, CmdletResult
from migrator.sandbox.state import (
    ManagementScope, PermissionRow, Recipient, RoleAssignment, TenantState, App, det_uuid, escape_dn, sid_for,
)

DEFAULT_RESULT_SIZE = 1000
RESULT_SIZE_WARNING = ("By default, only the first 1000 items are returned. Use the ResultSize parameter to specify "
                       "the number of items returned. To return all items, specify \"-ResultSize Unlimited\". Be "
                       "aware that, depending on the actual number of items, returning all items can take a long "
                       "time and consume a large amount of memory. Also, we don't recommend storing the results "
                       "in a variable. Instead, pipe the results to another task or script to perform batch changes.")
MAX_UPDATE_MEMBERS = 10_000
MAX_NAME = 64
APPLICATION_ROLES = (
    "Application Mail.Read", "Application Mail.ReadBasic", "Application Mail.ReadWrite", "Application Mail.Send",
    "Application MailboxSettings.Read", "Application MailboxSettings.ReadWrite", "Application Calendars.Read",
    "Application Calendars.ReadWrite", "Application Contacts.Read", "Application Contacts.ReadWrite",
    "Application Mail Full Access", "Application Exchange Full Access", "Application EWS.AccessAsApp",
    "Application SMTP.SendAsApp",
)
GRANTED = {"Application Mail Full Access": "Mail.ReadWrite, Mail.Send",
           "Application Exchange Full Access": "Mail.ReadWrite, Mail.Send, MailboxSettings.ReadWrite, "
                                               "Calendars.ReadWrite, Contacts.ReadWrite"}
# Common parameters PowerShell accepts on every cmdlet.
COMMON = {"confirm", "erroraction", "warningaction", "verbose", "debug", "whatif", "errorvariable",
          "warningvariable", "outvariable", "informationaction"}
RETURNS_ALL_ON_BAD_IDENTITY = ("Get-ServicePrincipal", "Get-MailboxPermission", "Get-RecipientPermission",
                               "Get-ManagementRoleAssignment", "Get-DistributionGroupMember",
                               "Get-ApplicationAccessPolicy")
EXO_MAILBOX_MINIMUM = ("ExternalDirectoryObjectId", "UserPrincipalName", "Alias", "DisplayName", "EmailAddresses",
                       "PrimarySmtpAddress", "RecipientType", "RecipientTypeDetails", "Identity", "Id",
                       "ExchangeVersion", "Name", "DistinguishedName", "OrganizationId", "Guid")


# ------------------------------------------------------------------------------------------------ plumbing
class Params:
    """Case-insensitive parameters of one call, checked against the cmdlet's declared names."""

    def __init__(self, cmdlet: str, raw: dict, allowed: tuple[str, ...]) -> None:
        self.cmdlet = cmdlet
        self._names = {a.lower(): a for a in allowed}
        self._d: dict[str, object] = {}
        for key, value in raw.items():
            k = str(key).lower()
            if k not in self._names and k not in COMMON:
                raise CmdletError("ParameterBindingException",
                                  f"A parameter cannot be found that matches parameter name '{key}'.", cmdlet=cmdlet)
            self._d[k] = value

    def has(self, name: str) -> bool:
        return name.lower() in self._d

    def raw(self, name: str):
        return self._d.get(name.lower())

    def str(self, name: str, *, required: bool = False) -> str | None:
        value = self._d.get(name.lower())
        if value is None:
            if required:
                raise CmdletError("ParameterBindingException", "Cannot process command because of one or more "
                                  f"missing mandatory parameters: {name}.", cmdlet=self.cmdlet)
            return None
        if isinstance(value, (list, tuple)):
            if len(value) != 1:
                raise CmdletError("ParameterBindingException", f"Cannot convert 'System.Object[]' to the type "
                                  f"'System.String' required by parameter '{name}'.", cmdlet=self.cmdlet)
            value = value[0]
        if isinstance(value, dict):
            raise CmdletError("ParameterBindingException", f"Cannot bind parameter '{name}': a single value is "
                              "expected.", cmdlet=self.cmdlet)
        text = str(value)
        if required and not text.strip():
            raise CmdletError("ParameterBindingException", f"Cannot bind argument to parameter '{name}' because it "
                              "is an empty string.", cmdlet=self.cmdlet)
        return text

    def list(self, name: str) -> list[str]:
        value = self._d.get(name.lower())
        if value is None:
            return []
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value if v is not None]
        return [str(value)]

    def bool(self, name: str, default: bool = False) -> bool:
        value = self._d.get(name.lower())
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower().lstrip("$")
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise CmdletError("ParameterBindingException", f"Cannot process argument transformation on parameter "
                          f"'{name}'. Cannot convert value \"{value}\" to type \"System.Boolean\".",
                          cmdlet=self.cmdlet)

    def result_size(self) -> int | None:
        """-ResultSize: None for Unlimited; 1000 when absent."""
        value = self._d.get("resultsize")
        if value is None:
            return DEFAULT_RESULT_SIZE
        if isinstance(value, str) and value.strip().lower() == "unlimited":
            return None
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise CmdletError("ParameterBindingException", f"Cannot bind parameter 'ResultSize'. Cannot convert "
                              f"value \"{value}\" to type \"Microsoft.Exchange.Data.Unlimited`1[System.UInt32]\".",
                              cmdlet=self.cmdlet) from None
        if n < 1:
            raise CmdletError("ParameterBindingException", "Cannot validate argument on parameter 'ResultSize'. "
                              "The value must be 1 or greater.", cmdlet=self.cmdlet)
        return n


_REGISTRY: dict[str, tuple[Callable, tuple[str, ...], bool]] = {}


def cmdlet(name: str, params: tuple[str, ...] = (), *, write: bool = False):
    def deco(fn):
        _REGISTRY[name.lower()] = (fn, params, write)
        fn.cmdlet_name = name
        return fn
    return deco


def registry() -> dict[str, Callable]:
    """Cmdlet name -> function(state, Params, Caller) -> CmdletResult."""
    return {fn.cmdlet_name: fn for fn, _, _ in _REGISTRY.values()}


def is_write(name: str) -> bool:
    entry = _REGISTRY.get((name or "").lower())
    return bool(entry and entry[2])


def run_cmdlet(state: TenantState, name: str, raw: dict, caller: Caller) -> CmdletResult:
    entry = _REGISTRY.get((name or "").strip().lower())
    if entry is None:
        raise CmdletError("CommandNotFoundException", f"The term '{name}' is not recognized as the name of a cmdlet, "
                          "function, script file, or operable program.", cmdlet=name)
    fn, allowed, write = entry
    if "Exchange.ManageAsApp" not in caller.roles or not (caller.can_write if write else caller.can_read):
        raise CmdletError("UnauthorizedAccessException", f"The role assigned to application {caller.app_id} isn't "
                          "supported in this scenario. Please check online documentation for assigning correct "
                          "Directory Roles to Azure AD Application for EXO App-Only Authentication.",
                          http_status=403, cmdlet=fn.cmdlet_name)
    params = Params(fn.cmdlet_name, raw, allowed)
    result = fn(state, params, caller)
    if write:
        state.timeline.note(state.clock.now(), "change", cmdlet=fn.cmdlet_name, app_id=caller.app_id,
                            parameters={k: v for k, v in raw.items() if str(k).lower() not in COMMON})
    return result if isinstance(result, CmdletResult) else CmdletResult(result or [])


def _limit(p: Params, rows: list[dict]) -> CmdletResult:
    size = p.result_size()
    if size is not None and len(rows) > size:
        warnings = [RESULT_SIZE_WARNING] if not p.has("ResultSize") else []
        return CmdletResult(rows[:size], warnings)
    return CmdletResult(rows)


def _not_found(state: TenantState, identity: str, cmdlet: str) -> CmdletError:
    return CmdletError("ManagementObjectNotFoundException", f"The operation couldn't be performed because object "
                       f"'{identity}' couldn't be found on '{state.server}'.", http_status=404, cmdlet=cmdlet)


def _ambiguous(identity: str, cmdlet: str) -> CmdletError:
    return CmdletError("ManagementObjectAmbiguousException", f"The operation couldn't be performed because "
                       f"'{identity}' matches multiple entries.", cmdlet=cmdlet)


def _one(state: TenantState, identity: str, cmdlet: str, *, kinds=("mailbox", "group"),
         group_types: tuple[str, ...] | None = None) -> Recipient:
    hits = [r for r in state.find_recipients(identity) if r.kind in kinds
            and (group_types is None or r.group_type in group_types)]
    if not hits:
        raise _not_found(state, identity, cmdlet)
    if len(hits) > 1:
        raise _ambiguous(identity, cmdlet)
    return hits[0]


def _one_sp(state: TenantState, identity: str, cmdlet: str) -> App:
    hits = state.find_sps(identity)
    if not hits:
        raise _not_found(state, identity, cmdlet)
    if len(hits) > 1:
        raise _ambiguous(identity, cmdlet)
    return hits[0]


def _blank(value: str | None) -> bool:
    return value is None or not str(value).strip()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _sorted_recipients(state: TenantState, kinds=("mailbox", "group")) -> list[Recipient]:
    return sorted((r for r in state.recipients.values() if r.kind in kinds and state.replicated(r)),
                  key=lambda r: (r.name.lower(), r.guid))


def _opath_error(exc: opath.OpathError, cmdlet: str, param: str) -> CmdletError:
    return CmdletError("ParameterBindingException", f"Cannot bind parameter '{param}' to the target. Exception "
                       f"setting \"{param}\": \"Invalid filter syntax. {exc}\"", cmdlet=cmdlet)


def _filtered(state: TenantState, p: Params, recs: list[Recipient], param: str = "Filter") -> list[Recipient]:
    text = p.str(param)
    if text is None:
        return recs
    try:
        ast = state.parse_filter(text)
    except opath.OpathError as exc:
        raise _opath_error(exc, p.cmdlet, param) from None
    hit = state.filter_members(ast)
    return [r for r in recs if r.guid in hit]


def _types(p: Params, recs: list[Recipient]) -> list[Recipient]:
    wanted = {t.lower() for v in p.list("RecipientTypeDetails") for t in v.split(",") if t.strip()}
    return [r for r in recs if r.recipient_type_details.lower() in wanted] if wanted else recs


# ------------------------------------------------------------------------------------------------ rows
def recipient_row(state: TenantState, r: Recipient) -> dict:
    row = {
        "Identity": r.name, "Id": r.name, "Name": r.name, "Alias": r.alias, "DisplayName": r.display_name,
        "PrimarySmtpAddress": r.primary_smtp, "WindowsEmailAddress": r.primary_smtp,
        "EmailAddresses": list(r.email_addresses), "UserPrincipalName": r.upn or None,
        "ExternalDirectoryObjectId": r.external_id, "Guid": r.guid, "DistinguishedName": r.dn,
        "RecipientType": r.recipient_type, "RecipientTypeDetails": r.recipient_type_details,
        "HiddenFromAddressListsEnabled": r.hidden, "OrganizationId": state.domain, "ExchangeVersion": "0.20 (15.0.0.0)",
        "WhenCreated": _iso(r.created), "WhenCreatedUTC": _iso(r.created),
    }
    for attr in FILTERABLE_ATTRIBUTES:
        row[attr] = r.attributes.get(attr) or ("" if attr.startswith("CustomAttribute") else None)
    return row


def mailbox_row(state: TenantState, r: Recipient) -> dict:
    row = recipient_row(state, r)
    row.update({"ExchangeGuid": det_uuid("exchange-guid", r.guid), "IsShared": r.recipient_type_details ==
                "SharedMailbox", "Database": "NAMPR03DG001-db001"})
    return row


def group_row(state: TenantState, g: Recipient) -> dict:
    row = recipient_row(state, g)
    for attr in ("Department", "Company", "Office", "City", "StateOrProvince", "CountryOrRegion"):
        row.pop(attr, None)
    row.pop("UserPrincipalName", None)
    row.update({
        "GroupType": "Universal, SecurityEnabled" if g.group_type == "Security" else "Universal",
        "ManagedBy": list(g.extra.get("managed_by") or []),
        "MemberJoinRestriction": g.extra.get("member_join_restriction", "Closed"),
        "MemberDepartRestriction": g.extra.get("member_depart_restriction", "Closed"),
        "Notes": g.extra.get("notes"),
        "RequireSenderAuthenticationEnabled": g.extra.get("require_sender_authentication", True),
    })
    return row


def sp_row(app: App) -> dict:
    return {"DisplayName": app.display_name, "AppId": app.app_id, "ObjectId": app.object_id,
            "Identity": app.object_id, "Name": app.object_id, "Id": app.object_id, "Guid": app.exchange_guid,
            "ServiceId": app.object_id, "Organization": None}


def _trustee_text(state: TenantState, trustee: tuple) -> str:
    kind = trustee[0]
    if kind == "self":
        return "NT AUTHORITY\\SELF"
    if kind == "sid":
        return trustee[1]
    if kind == "recipient":
        r = state.recipients.get(trustee[1])
        return (r.upn or r.primary_smtp) if r else sid_for(trustee[1])
    app = state.apps.get(trustee[1])
    if app is None or not app.exchange_pointer:
        return sid_for("sp:" + trustee[1])  # the pointer is gone: Exchange shows the orphaned SID
    return app.display_name if state.settings.trustee_display == "display_name" else app.object_id


def _trustee_sid(trustee: tuple) -> str:
    if trustee[0] == "self":
        return "S-1-5-10"
    if trustee[0] == "sid":
        return trustee[1]
    return sid_for(("sp:" if trustee[0] == "app" else "") + trustee[1])


def recipient_permission_row(state: TenantState, row: PermissionRow) -> dict:
    mbx = state.recipients.get(row.mailbox)
    return {"Identity": mbx.name if mbx else row.mailbox, "Trustee": _trustee_text(state, row.trustee),
            "AccessControlType": "Deny" if row.deny else "Allow", "AccessRights": list(row.access_rights),
            "IsInherited": row.is_inherited, "InheritanceType": row.inheritance_type}


def mailbox_permission_row(state: TenantState, row: PermissionRow) -> dict:
    mbx = state.recipients.get(row.mailbox)
    return {"Identity": mbx.name if mbx else row.mailbox, "User": _trustee_text(state, row.trustee),
            "AccessRights": list(row.access_rights), "IsInherited": row.is_inherited, "Deny": row.deny,
            "InheritanceType": row.inheritance_type, "UserSid": _trustee_sid(row.trustee),
            "IsValid": True}


# ------------------------------------------------------------------------------------------------ recipients
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
    every = sorted((a for a in state.apps.values() if a.exchange_pointer), key=lambda a: a.object_id)
    identity = p.str("Identity")
    if not _blank(identity):
        hits = state.find_sps(identity)
        if hits:  # an unknown identity returns EVERY service principal (the hazard)
            every = hits
    return CmdletResult([sp_row(a) for a in every])


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
    app.exchange_pointer = True
    app.pointer_created = state.clock.now()
    if p.str("DisplayName"):
        app.display_name = p.str("DisplayName")
    state.index_app(app)
    state.sync_access([app.app_id])
    return CmdletResult([sp_row(app)])


@cmdlet("Remove-ServicePrincipal", ("Identity", "Organization"), write=True)
def remove_service_principal(state: TenantState, p: Params, caller: Caller):
    app = _one_sp(state, p.str("Identity", required=True), p.cmdlet)
    app.exchange_pointer = False
    state.index_app(app)
    state.sync_access([app.app_id])
    return CmdletResult()


# ------------------------------------------------------------------------------------------------ permissions
def _resolve_trustee(state: TenantState, identity: str, cmdlet: str) -> tuple:
    """An SP (ObjectId/AppId/DisplayName) or a recipient; both matching is ambiguous, as in Exchange."""
    sps = state.find_sps(identity)
    recs = state.find_recipients(identity)
    if identity.strip().upper() == "NT AUTHORITY\\SELF":
        return ("self",)
    if identity.strip().upper().startswith("S-1-5-"):
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
                              f"value \"{r}\" to type \"Microsoft.Exchange.Management.RecipientTasks.RecipientAccessRight\". "
                              f"The possible enumeration values are \"{', '.join(allowed)}\".", cmdlet=p.cmdlet)
        out.append(canon[r.lower()])
    return out


def _permission_rows(state: TenantState, table, p: Params, trustee_param: str,
                     hazard: bool) -> list[PermissionRow]:
    identity = p.str("Identity")
    rows = None
    if not _blank(identity):
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
    if not _blank(who):
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
    return CmdletResult()


# ------------------------------------------------------------------------------------------------ groups
_ALIAS_BAD = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]")


def _check_name(name: str, cmdlet: str) -> str:
    name = (name or "").strip()
    if not name:
        raise CmdletError("ParameterBindingException", "Cannot bind argument to parameter 'Name' because it is an "
                          "empty string.", cmdlet=cmdlet)
    if len(name) > MAX_NAME:
        raise CmdletError("DataValidationException", f"The length of the property is too long. The maximum length "
                          f"is {MAX_NAME} and the length of the value provided is {len(name)}.", cmdlet=cmdlet)
    return name


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


@cmdlet("Get-DistributionGroup", ("Identity", "ResultSize", "RecipientTypeDetails", "Filter", "Anr"))
def get_distribution_group(state: TenantState, p: Params, caller: Caller):
    identity = p.str("Identity")
    if identity is not None:
        if _blank(identity):
            raise CmdletError("ParameterBindingException", "Cannot bind argument to parameter 'Identity' because "
                              "it is an empty string.", cmdlet=p.cmdlet)
        g = _one(state, identity, p.cmdlet, kinds=("group",), group_types=("Security", "Distribution"))
        return CmdletResult([group_row(state, g)])
    recs = [r for r in _sorted_recipients(state, ("group",)) if r.group_type in ("Security", "Distribution")]
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
        g.alias = p.str("Alias")
    if p.has("PrimarySmtpAddress"):
        smtp = p.str("PrimarySmtpAddress").strip().lower()
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
    if not _blank(identity):
        hits = [r for r in state.find_recipients(identity) if r.is_group]
        if len(hits) > 1:
            raise _ambiguous(identity, p.cmdlet)
        groups = hits or None
    if groups is None:  # $null, empty or unknown identity: the members of EVERY group (the hazard)
        groups = _sorted_recipients(state, ("group",))
    rows = []
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
    del g.members[m.guid]
    _membership_changed(state, g)
    return CmdletResult()


# ------------------------------------------------------------------------------------------------ scopes
def scope_row(state: TenantState, s: ManagementScope) -> dict:
    return {"Name": s.name, "Identity": s.name, "Id": s.name, "Guid": s.guid,
            "ScopeRestrictionType": "RecipientScope", "Exclusive": s.exclusive, "RecipientRoot": s.recipient_root,
            "RecipientFilter": s.filter, "ServerFilter": None, "DatabaseFilter": None,
            "WhenCreated": _iso(s.created), "WhenCreatedUTC": _iso(s.created), "IsValid": True}


def _one_scope(state: TenantState, identity: str, cmdlet: str) -> ManagementScope:
    key = (identity or "").strip().lower()
    scope = state.scopes.get(key) or next((s for s in state.scopes.values() if s.guid == key), None)
    if scope is None:
        raise _not_found(state, identity, cmdlet)
    return scope


def _scope_users(state: TenantState, scope: ManagementScope) -> list[RoleAssignment]:
    return [ra for ra in state.assignments.values()
            if ra.scope_kind == "custom" and ra.scope_ref.lower() == scope.name.lower()]


@cmdlet("Get-ManagementScope", ("Identity", "Orphan", "Exclusive"))
def get_management_scope(state: TenantState, p: Params, caller: Caller):
    identity = p.str("Identity")
    if identity is not None:
        if _blank(identity):
            raise CmdletError("ParameterBindingException", "Cannot bind argument to parameter 'Identity' because "
                              "it is an empty string.", cmdlet=p.cmdlet)
        return CmdletResult([scope_row(state, _one_scope(state, identity, p.cmdlet))])
    scopes = sorted((s for s in state.scopes.values() if not s.hidden), key=lambda s: s.name.lower())
    if p.bool("Orphan"):
        scopes = [s for s in scopes if not _scope_users(state, s)]
    if p.has("Exclusive"):
        scopes = [s for s in scopes if s.exclusive == p.bool("Exclusive")]
    return CmdletResult([scope_row(state, s) for s in scopes])


@cmdlet("New-ManagementScope", ("Name", "RecipientRestrictionFilter", "RecipientRoot", "Exclusive", "Force"),
        write=True)
def new_management_scope(state: TenantState, p: Params, caller: Caller):
    name = _check_name(p.str("Name", required=True), p.cmdlet)
    text = p.str("RecipientRestrictionFilter", required=True)
    try:
        ast = state.parse_filter(text)
    except opath.OpathError as exc:
        raise _opath_error(exc, p.cmdlet, "RecipientRestrictionFilter") from None
    if name.lower() in state.scopes:
        raise CmdletError("ADObjectAlreadyExistsException", f"The management scope \"{name}\" already exists.",
                          cmdlet=p.cmdlet)
    exclusive = p.bool("Exclusive")  # accepted; not honoured for applications (as documented)
    warnings = []
    if exclusive and not p.bool("Force"):
        warnings.append("Exclusive scopes restrict who can manage the objects in them. Use -Force to suppress "
                        "this warning.")
    now = state.clock.now()
    s = ManagementScope(name=name, guid=det_uuid("scope", name.lower(), str(now)), filter=text, ast=ast,
                        exclusive=exclusive, recipient_root=p.str("RecipientRoot"), created=now)
    state.scopes[name.lower()] = s
    state.invalidate_scopes()
    return CmdletResult([scope_row(state, s)], warnings)


@cmdlet("Set-ManagementScope", ("Identity", "Name", "RecipientRestrictionFilter", "RecipientRoot"), write=True)
def set_management_scope(state: TenantState, p: Params, caller: Caller):
    s = _one_scope(state, p.str("Identity", required=True), p.cmdlet)
    if p.has("RecipientRestrictionFilter"):
        text = p.str("RecipientRestrictionFilter", required=True)
        try:
            s.ast = state.parse_filter(text)
        except opath.OpathError as exc:
            raise _opath_error(exc, p.cmdlet, "RecipientRestrictionFilter") from None
        s.filter = text
    if p.has("Name"):
        new = _check_name(p.str("Name"), p.cmdlet)
        if new.lower() != s.name.lower() and new.lower() in state.scopes:
            raise CmdletError("ADObjectAlreadyExistsException", f"The management scope \"{new}\" already exists.",
                              cmdlet=p.cmdlet)
        for ra in _scope_users(state, s):
            ra.scope_ref = new
        del state.scopes[s.name.lower()]
        s.name = new
        state.scopes[new.lower()] = s
    if p.has("RecipientRoot"):
        s.recipient_root = p.str("RecipientRoot")
    state.invalidate_scopes()
    state.sync_access({ra.app_id for ra in _scope_users(state, s)})
    return CmdletResult()


@cmdlet("Remove-ManagementScope", ("Identity", "Force"), write=True)
def remove_management_scope(state: TenantState, p: Params, caller: Caller):
    s = _one_scope(state, p.str("Identity", required=True), p.cmdlet)
    users = _scope_users(state, s)
    if users:
        raise CmdletError("InvalidOperationException", f"Management scope \"{s.name}\" can't be removed because "
                          "it's referenced by role assignments: "
                          f"{', '.join(sorted(ra.name for ra in users))}.", cmdlet=p.cmdlet)
    del state.scopes[s.name.lower()]
    state.invalidate_scopes()
    return CmdletResult()


# ------------------------------------------------------------------------------------------------ role assignments
def _scope_label(state: TenantState, ra: RoleAssignment) -> tuple[str | None, str]:
    """(CustomResourceScope shown, RecipientWriteScope)."""
    if ra.scope_kind == "custom":
        scope = state.scopes.get(ra.scope_ref.lower())
        return (scope.name if scope else ra.scope_ref), "CustomRecipientScope"
    if ra.scope_kind == "group":
        g = state.recipients.get(ra.scope_ref)
        # Exchange creates a scope "<group>_<guid>" behind a RecipientGroupScope (one sample: UNVERIFIED)
        return f"{g.name if g else ra.scope_ref}_{ra.guid}", "CustomRecipientScope"
    if ra.scope_kind == "au":
        return ra.scope_ref, "AdministrativeUnit"
    return None, "Organization"


def assignment_row(state: TenantState, ra: RoleAssignment) -> dict:
    app = state.apps.get(ra.app_id)
    custom, write_scope = _scope_label(state, ra)
    group = state.recipients.get(ra.scope_ref) if ra.scope_kind == "group" else None
    return {"Name": ra.name, "Identity": ra.name, "Id": ra.name, "Guid": ra.guid, "Role": ra.role,
            "RoleAssignee": app.object_id if app else ra.app_id,
            "RoleAssigneeName": app.object_id if app else ra.app_id, "RoleAssigneeType": "ServicePrincipal",
            "AssignmentMethod": "Direct", "CustomResourceScope": custom, "RecipientWriteScope": write_scope,
            "CustomRecipientWriteScope": custom if ra.scope_kind in ("custom", "group") else None,
            "RecipientGroupScope": group.name if group else None,
            "RecipientAdministrativeUnitScope": ra.scope_ref if ra.scope_kind == "au" else None,
            "ConfigWriteScope": "None", "Enabled": ra.enabled, "IsValid": True,
            "WhenCreated": _iso(ra.created), "WhenCreatedUTC": _iso(ra.created)}


def _one_role(role: str, cmdlet: str) -> str:
    canon = {r.lower(): r for r in APPLICATION_ROLES}
    hit = canon.get((role or "").strip().lower())
    if hit is None:
        raise CmdletError("ManagementObjectNotFoundException", f"The operation couldn't be performed because "
                          f"object '{role}' couldn't be found on 'the management role list'.", http_status=404,
                          cmdlet=cmdlet)
    return hit


def _scope_params(state: TenantState, p: Params, required: bool) -> tuple[str, str] | None:
    given = [k for k in ("CustomResourceScope", "RecipientGroupScope", "RecipientAdministrativeUnitScope")
             if not _blank(p.str(k))]
    if len(given) > 1:
        raise CmdletError("ParameterBindingException", "Parameter set cannot be resolved using the specified named "
                          "parameters.", cmdlet=p.cmdlet)
    if not given:
        return ("organization", "") if required else None
    kind = given[0]
    value = p.str(kind)
    if kind == "CustomResourceScope":
        return "custom", _one_scope(state, value, p.cmdlet).name
    if kind == "RecipientGroupScope":
        return "group", _one(state, value, p.cmdlet, kinds=("group",)).guid
    au = state.admin_units.get(value.strip().lower()) or next(
        (u for u in state.admin_units.values() if u.display_name.lower() == value.strip().lower()), None)
    if au is None:
        raise _not_found(state, value, p.cmdlet)
    return "au", au.id


def _one_assignment(state: TenantState, identity: str, cmdlet: str) -> RoleAssignment:
    key = (identity or "").strip().lower()
    ra = state.assignments.get(key) or next((a for a in state.assignments.values() if a.guid == key), None)
    if ra is None:
        raise _not_found(state, identity, cmdlet)
    return ra


@cmdlet("Get-ManagementRoleAssignment", ("Identity", "Role", "RoleAssignee", "RoleAssigneeType", "Enabled",
                                         "AssignmentMethod", "RecipientWriteScope", "CustomRecipientWriteScope",
                                         "GetEffectiveUsers"))
def get_management_role_assignment(state: TenantState, p: Params, caller: Caller):
    rows = sorted(state.assignments.values(), key=lambda a: a.name.lower())
    identity = p.str("Identity")
    if not _blank(identity):
        key = identity.strip().lower()
        hit = [a for a in rows if a.name.lower() == key or a.guid == key]
        if hit:  # unknown identity: EVERY assignment (the hazard)
            rows = hit
    if not _blank(p.str("Role")):
        role = _one_role(p.str("Role"), p.cmdlet)
        rows = [a for a in rows if a.role.lower() == role.lower()]
    if not _blank(p.str("RoleAssignee")):
        app = _one_sp(state, p.str("RoleAssignee"), p.cmdlet)
        rows = [a for a in rows if a.app_id == app.app_id]
    if p.has("Enabled"):
        rows = [a for a in rows if a.enabled == p.bool("Enabled")]
    if not _blank(p.str("RoleAssigneeType")) and p.str("RoleAssigneeType").strip().lower() != "serviceprincipal":
        rows = []  # the sandbox holds application assignments only
    if not _blank(p.str("CustomRecipientWriteScope")):
        name = p.str("CustomRecipientWriteScope").strip().lower()
        rows = [a for a in rows if a.scope_kind == "custom" and a.scope_ref.lower() == name]
    return CmdletResult([assignment_row(state, a) for a in rows])


@cmdlet("New-ManagementRoleAssignment", ("Name", "Role", "App", "CustomResourceScope", "RecipientGroupScope",
                                         "RecipientAdministrativeUnitScope", "Force"), write=True)
def new_management_role_assignment(state: TenantState, p: Params, caller: Caller):
    role = _one_role(p.str("Role", required=True), p.cmdlet)
    app = _one_sp(state, p.str("App", required=True), p.cmdlet)
    kind, ref = _scope_params(state, p, required=True)
    name = _check_name(p.str("Name") or f"{role}-{app.object_id}"[:MAX_NAME], p.cmdlet)
    if name.lower() in state.assignments:
        raise CmdletError("ADObjectAlreadyExistsException", f"The role assignment \"{name}\" already exists.",
                          cmdlet=p.cmdlet)
    now = state.clock.now()
    ra = RoleAssignment(name=name, guid=det_uuid("assignment", name.lower(), str(now)), role=role,
                        app_id=app.app_id, scope_kind=kind, scope_ref=ref, created=now)
    state.assignments[name.lower()] = ra
    state.sync_access([app.app_id])
    return CmdletResult([assignment_row(state, ra)])


@cmdlet("Set-ManagementRoleAssignment", ("Identity", "CustomResourceScope", "RecipientGroupScope",
                                         "RecipientAdministrativeUnitScope", "Enabled", "Force"), write=True)
def set_management_role_assignment(state: TenantState, p: Params, caller: Caller):
    ra = _one_assignment(state, p.str("Identity", required=True), p.cmdlet)
    scope = _scope_params(state, p, required=False)
    if scope is not None:
        ra.scope_kind, ra.scope_ref = scope
    if p.has("Enabled"):
        ra.enabled = p.bool("Enabled")
    state.sync_access([ra.app_id])
    return CmdletResult()


@cmdlet("Remove-ManagementRoleAssignment", ("Identity", "Force"), write=True)
def remove_management_role_assignment(state: TenantState, p: Params, caller: Caller):
    ra = _one_assignment(state, p.str("Identity", required=True), p.cmdlet)
    del state.assignments[ra.name.lower()]
    state.sync_access([ra.app_id])
    return CmdletResult()


@cmdlet("Test-ServicePrincipalAuthorization", ("Identity", "Resource"))
def test_service_principal_authorization(state: TenantState, p: Params, caller: Caller):
    """Configuration view: sees RBAC changes at once (no propagation delay), as Microsoft documents."""
    app = _one_sp(state, p.str("Identity", required=True), p.cmdlet)
    target = None
    if not _blank(p.str("Resource")):
        target = _one(state, p.str("Resource"), p.cmdlet)
    rows = []
    for ra in sorted(state.assignments.values(), key=lambda a: a.name.lower()):
        if ra.app_id != app.app_id or not ra.enabled:
            continue
        custom, write_scope = _scope_label(state, ra)
        scope_type = {"custom": "CustomRecipientScope", "group": "CustomRecipientScope",
                      "au": "AdministrativeUnit"}.get(ra.scope_kind, "Organization")
        in_scope: object = "Not Run"
        if target is not None:
            in_scope = target.guid in state.assignment_targets(ra)
        rows.append({"RoleName": ra.role, "GrantedPermissions": GRANTED.get(ra.role, ra.role.replace(
            "Application ", "", 1)), "AllowedResourceScope": custom or "Organization", "ScopeType": scope_type,
            "InScope": in_scope, "Identity": app.object_id})
    return CmdletResult(rows)


@cmdlet("Get-ApplicationAccessPolicy", ("Identity",))
def get_application_access_policy(state: TenantState, p: Params, caller: Caller):
    rows = []
    for pol in state.access_policies:
        group = state.find_recipients(pol["scope"]) if pol["scope"] else []
        g = group[0] if len(group) == 1 else None
        ident = f"{state.tenant_id}\\{pol['app_id']}:{sid_for(g.guid) if g else 'S-1-5-21-0'};" \
                f"{g.external_id if g else ''}"
        rows.append({"Identity": ident, "AppId": pol["app_id"], "ScopeName": g.name if g else pol["scope"],
                     "ScopeIdentity": g.name if g else pol["scope"],
                     "ScopeIdentityRaw": f"{sid_for(g.guid) if g else 'S-1-5-21-0'};{g.external_id if g else ''}",
                     "Description": pol["description"], "AccessRight": pol["access_right"],
                     "IsValid": pol["is_valid"] and g is not None})
    identity = p.str("Identity")
    if not _blank(identity):
        key = identity.strip().lower()
        hit = [r for r in rows if r["Identity"].lower() == key or r["AppId"] == key
               or r["Identity"].lower().endswith(key)]
        if hit:  # unknown identity: EVERY policy (the hazard)
            rows = hit
    return CmdletResult(sorted(rows, key=lambda r: r["Identity"]))
