"""Plumbing shared by the cmdlet modules: parameter binding, the registry, identity helpers, output rows."""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Callable
from typing import Any, Literal, TypeGuard, overload

from migrator.model import EXCHANGE_MANAGE_AS_APP, FILTERABLE_ATTRIBUTES
from migrator.sandbox import opath
from migrator.sandbox.api import Caller, CmdletError, CmdletResult
from migrator.sandbox.state import (
    App,
    PermissionRow,
    Recipient,
    TenantState,
    det_uuid,
    sid_for,
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
        self._d: dict[str, Any] = {}  # parameter values as the caller sent them (JSON: any type)
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

    # The methods below are named after PowerShell's parameter types, so inside the class body `str` is the method:
    # annotations say builtins.str.
    @overload
    def str(self, name: builtins.str, *, required: Literal[True]) -> builtins.str: ...

    @overload
    def str(self, name: builtins.str, *, required: bool = False) -> builtins.str | None: ...

    def str(self, name: builtins.str, *, required: bool = False) -> builtins.str | None:
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

    def list(self, name: builtins.str) -> builtins.list[builtins.str]:
        value = self._d.get(name.lower())
        if value is None:
            return []
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value if v is not None]
        return [str(value)]

    def bool(self, name: builtins.str, default: builtins.bool = False) -> builtins.bool:
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


CmdletFn = Callable[[TenantState, Params, Caller], Any]
# lower-case cmdlet name -> (function, its cmdlet name as spelled, allowed parameters, whether it writes)
_REGISTRY: dict[str, tuple[CmdletFn, str, tuple[str, ...], bool]] = {}


def cmdlet(name: str, params: tuple[str, ...] = (), *, write: bool = False) -> Callable[[CmdletFn], CmdletFn]:
    def deco(fn: CmdletFn) -> CmdletFn:
        _REGISTRY[name.lower()] = (fn, name, params, write)
        return fn
    return deco


def registry() -> dict[str, CmdletFn]:
    """Cmdlet name -> function(state, Params, Caller) -> CmdletResult."""
    return {cmdlet_name: fn for fn, cmdlet_name, _, _ in _REGISTRY.values()}


def is_write(name: str) -> bool:
    entry = _REGISTRY.get((name or "").lower())
    return bool(entry and entry[3])


def run_cmdlet(state: TenantState, name: str, raw: dict, caller: Caller) -> CmdletResult:
    entry = _REGISTRY.get((name or "").strip().lower())
    if entry is None:
        raise CmdletError("CommandNotFoundException", f"The term '{name}' is not recognized as the name of a cmdlet, "
                          "function, script file, or operable program.", cmdlet=name)
    fn, cmdlet_name, allowed, write = entry
    if EXCHANGE_MANAGE_AS_APP not in caller.roles or not (caller.can_write if write else caller.can_read):
        raise CmdletError("UnauthorizedAccessException", f"The role assigned to application {caller.app_id} isn't "
                          "supported in this scenario. Please check online documentation for assigning correct "
                          "Directory Roles to Azure AD Application for EXO App-Only Authentication.",
                          http_status=403, cmdlet=cmdlet_name)
    params = Params(cmdlet_name, raw, allowed)
    if write and params.bool("WhatIf"):  # -WhatIf: describe, change nothing
        return CmdletResult([], [f"What if: performing the operation \"{cmdlet_name}\" with parameters "
                                 f"{sorted(k for k in raw if str(k).lower() not in COMMON)}."])
    result = fn(state, params, caller)
    if write:
        state.timeline.note(state.clock.now(), "change", cmdlet=cmdlet_name, app_id=caller.app_id,
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


def _given(value: str | None) -> TypeGuard[str]:
    """A parameter passed with a non-blank value (narrows `str | None` to `str` for the type checker)."""
    return not _blank(value)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


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
    """Get-ServicePrincipal's row: DisplayName is the pointer's own (New-ServicePrincipal -DisplayName)."""
    return {"DisplayName": app.pointer_name, "AppId": app.app_id, "ObjectId": app.object_id,
            "Identity": app.object_id, "Name": app.object_id, "Id": app.object_id, "Guid": app.exchange_guid,
            "ServiceId": app.object_id, "Sid": sid_for("sp:" + app.app_id), "Organization": None}


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
    # Permission rows name a service principal by its Exchange pointer's DisplayName, not the Entra name.
    return app.pointer_name if state.settings.trustee_display == "display_name" else app.object_id


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

def _check_name(name: str | None, cmdlet: str) -> str:
    name = (name or "").strip()
    if not name:
        raise CmdletError("ParameterBindingException", "Cannot bind argument to parameter 'Name' because it is an "
                          "empty string.", cmdlet=cmdlet)
    if len(name) > MAX_NAME:
        raise CmdletError("DataValidationException", f"The length of the property is too long. The maximum length "
                          f"is {MAX_NAME} and the length of the value provided is {len(name)}.", cmdlet=cmdlet)
    return name
