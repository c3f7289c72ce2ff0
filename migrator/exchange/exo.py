"""Exchange Online through the admin REST endpoint the ExchangeOnlineManagement V3 module uses (InvokeCommand).

`invoke(cmdlet, params)` posts the CmdletInput envelope and follows @odata.nextLink. Typed helpers cover the
cmdlets of docs/exchange.md §3. The answer's `@adminapi.errors` fail the call (`ReplyErrors`); its `@adminapi.warnings`
are logged, handed to `on_warning` and kept on the result (`CmdletRows.warnings`). The read path names only cmdlets
public InvokeCommand clients are known to send (Get-Mailbox, Get-MailboxPermission, ...); the Get-EXO* names, which
the endpoint most likely refuses there, only when `exo_cmdlets` is on (profile setting, default off).
Two safety rules live here:
- the guard: Get-* cmdlets that answer an empty or unresolved identity with *every* object never get one
  (ValueError before any call);
- "absent" only from ManagementObjectNotFoundException (errors.NotFound); any other failure raises.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from migrator.exchange.access import by_cmdlet, read, write
from migrator.exchange.errors import (
    TYPED_EXCEPTIONS,
    ApiError,
    CmdletRefused,
    NotFound,
    ReplyErrors,
    parse_error_body,
    short_type,
)
from migrator.exchange.http import ApiSession
from migrator.exchange.interface import ExchangeApi
from migrator.exchange.profile import Profile
from migrator.model import RBAC_ROLE_SMTP_SEND_AS

# Cmdlets that return every object for a $null / empty identity (docs/exchange.md §3 hazards), and the parameters
# that must then be set and non-empty.
GUARDED: dict[str, tuple[str, ...]] = {
    "Get-ServicePrincipal": ("Identity",),
    "Get-MailboxPermission": ("Identity",),
    "Get-EXOMailboxPermission": ("Identity",),
    "Get-RecipientPermission": ("Identity", "Trustee"),
    "Get-ManagementRoleAssignment": ("Identity", "Role", "RoleAssignee"),
    "Get-DistributionGroupMember": ("Identity",),
    "Get-ApplicationAccessPolicy": ("Identity",),
    "Get-DistributionGroup": ("Identity",),
    "Get-ManagementScope": ("Identity",),
    "Get-Mailbox": ("Identity",),
    "Get-EXOMailbox": ("Identity",),
}

EXCHANGE_ANCHOR = "APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@"
log = logging.getLogger("migrator.exchange")


class CmdletRows(list):
    """A cmdlet's rows (every page), with the `@adminapi.warnings` Exchange sent along (`.warnings`)."""

    def __init__(self, rows=(), warnings=()) -> None:
        super().__init__(rows)
        self.warnings: list[str] = list(warnings)


def _is_guid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _texts(items: Any) -> list[str]:
    """`@adminapi.errors` / `.warnings` entries as text (strings, or objects with a message)."""
    if not items:
        return []
    out = []
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, dict):
            item = next((item[k] for k in ("message", "Message", "ErrorMessage", "Exception") if item.get(k)),
                        str(item))
        out.append(str(item))
    return out


# Deliberate whole-tenant reads (listing methods): allowed without an identity, nothing else.
_SCAN_OK = "_scan"


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip() or value.strip().lower() in ("$null", "null", "none")
    if isinstance(value, (list, tuple, set, dict)):
        return not value or any(_blank(v) for v in value) if not isinstance(value, dict) else not value
    return False


# Answers meaning "this cmdlet or parameter set is not offered here": a caller with an alternative falls back.
UNSUPPORTED_TYPES = frozenset({"CommandNotFoundException", "ParameterBindingException"})


# The member error each single-member cmdlet may answer with (docs/exchange.md §3): the change is already made.
MEMBER_ERRORS = {"Add-DistributionGroupMember": "MemberAlreadyExistsException",
                 "Remove-DistributionGroupMember": "MemberNotFoundException"}


# The fields of a Get-ServicePrincipal row that name the pointer (what -Identity may be given as).
SP_POINTER_NAMES = ("AppId", "ObjectId", "Identity", "Name", "DisplayName", "Sid", "Id", "ServiceId", "Guid")


def is_unsupported(exc: ApiError) -> bool:
    """The endpoint refused the cmdlet (403 NUL body) or has no such cmdlet / parameter set."""
    return isinstance(exc, CmdletRefused) or short_type(exc.exception_type) in UNSUPPORTED_TYPES


def check_identity(cmdlet: str, params: dict[str, Any], *, scan: bool = False) -> None:
    """The $null-identity guard. A scan (no identity parameter at all) must be asked for explicitly."""
    keys = GUARDED.get(cmdlet)
    if not keys:
        return
    present = [k for k in keys if k in params]
    for k in present:
        if _blank(params[k]):
            raise ValueError(f"{cmdlet}: refusing an empty or unresolved -{k} ({params[k]!r}); this cmdlet would "
                             f"return every object")
    if not present and not scan:
        raise ValueError(f"{cmdlet} without -{' / -'.join(keys)} returns every object; call the listing method "
                         f"for a deliberate scan")


class ExchangeClient(ExchangeApi):
    """Exchange Online over InvokeCommand; the executor's typed reads come from ExchangeApi (interface.py)."""

    def __init__(self, session: ApiSession, profile: Profile, *, exo_cmdlets: bool | None = None,
                 on_warning: Callable[[str, str], None] | None = None) -> None:
        self.session, self.profile = session, profile
        # Get-EXO* names through InvokeCommand: only when proven to work (doctor), else the classic cmdlets
        self.exo_cmdlets = bool(getattr(profile, "exo_cmdlets", False)) if exo_cmdlets is None else exo_cmdlets
        self.on_warning = on_warning  # (cmdlet, warning text): e.g. the executor's journal
        self._anchor = ""

    @read
    def anchor_mailbox(self) -> str:
        """X-AnchorMailbox names the tenant by GUID: the profile's tenant_id, or the token's `tid` claim when the
        profile holds a domain name (an opaque token leaves the domain)."""
        if not self._anchor:
            tenant = self.profile.tenant_id
            if not _is_guid(tenant):
                tenant = self._token_tenant() or tenant
            self._anchor = EXCHANGE_ANCHOR + tenant
        return self._anchor

    def _token_tenant(self) -> str:
        import jwt

        try:
            claims = jwt.decode(self.session.tokens.token(self.profile.exchange_resource),
                                options={"verify_signature": False})
        except jwt.PyJWTError:
            return ""
        tid = str(claims.get("tid") or "")
        return tid if _is_guid(tid) else ""

    # -- the envelope ---------------------------------------------------------------------------------
    @by_cmdlet
    def invoke(self, cmdlet: str, params: dict[str, Any] | None = None, select: list[str] | None = None, *,
               scan: bool = False) -> list[dict]:
        """Run a cmdlet; all pages of its `value`. Raises a typed ApiError; NotFound only when the object is absent."""
        params = {k: v for k, v in (params or {}).items()}
        check_identity(cmdlet, params, scan=scan)
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": params}}
        url = self.profile.invoke_url
        if select:
            url = f"{url}?$select={','.join(select)}"
        headers = {"X-AnchorMailbox": self.anchor_mailbox(), "Prefer": "odata.maxpagesize=1000",
                   "X-ResponseFormat": "json", "Content-Type": "application/json"}
        rows = CmdletRows()
        seen: set[str] = set()
        while url:
            data = self.session.request("POST", url, resource=self.profile.exchange_resource, operation=cmdlet,
                                        service="exchange", json=body, headers=headers, error_params=params)
            if data is None:
                break
            if not isinstance(data, dict):
                raise ApiError("answered with JSON that is not an object", operation=cmdlet, params=params)
            self._take_warnings(cmdlet, data, rows)
            errors = _texts(data.get("@adminapi.errors"))
            if errors:
                raise self._reply_errors(cmdlet, params, errors)
            value = data.get("value", [])
            if isinstance(value, dict):
                value = [value]
            rows.extend(v for v in value if isinstance(v, dict))
            url = data.get("@odata.nextLink") or ""
            if url in seen:  # a server repeating a link would loop forever
                raise ApiError("the server repeated a nextLink (paging loop)", operation=cmdlet, params=params)
            seen.add(url)
        return rows

    def _take_warnings(self, cmdlet: str, data: dict, rows: CmdletRows) -> None:
        for text in _texts(data.get("@adminapi.warnings")):
            log.warning("%s: %s", cmdlet, text)
            rows.warnings.append(text)
            if self.on_warning is not None:
                self.on_warning(cmdlet, text)

    @staticmethod
    def _reply_errors(cmdlet: str, params: dict, errors: list[str]) -> ApiError:
        """A 200 answer with @adminapi.errors: the call failed (a pipeline that stopped part-way), with the type
        of the first error when it is in Exchange's `ErrId|Exception.Type|text` form. The one exception: a
        single-member cmdlet whose only error is its member one ("already a member" / "not a member") gets the
        same typed error as when Exchange answers it with an HTTP error (http.py)."""
        parsed = parse_error_body(json.dumps({"error": {"message": errors[0]}}))
        member_error = MEMBER_ERRORS.get(cmdlet)
        if len(errors) == 1 and member_error and short_type(parsed["exception_type"]) == member_error:
            cls, label = TYPED_EXCEPTIONS[member_error]
            return cls(f"{label}: {parsed['text'] or errors[0]}", status=200, exception_type=parsed["exception_type"],
                       errid=parsed["errid"], text=parsed["text"] or errors[0], operation=cmdlet, params=params)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return ReplyErrors(f"answered with errors: {parsed['text'] or errors[0]}{more}", errors=errors, status=200,
                           exception_type=parsed["exception_type"], errid=parsed["errid"],
                           text=parsed["text"] or errors[0], operation=cmdlet, params=params,
                           hint="Exchange ran the cmdlet only in part; nothing of its answer was used")

    def _get_one(self, cmdlet: str, identity: str, **params) -> dict | None:
        try:
            rows = self.invoke(cmdlet, {"Identity": identity, **params})
        except NotFound:
            return None
        return rows[0] if rows else None

    # -- service principals ----------------------------------------------------------------------------
    @read
    def get_service_principals(self) -> list[dict]:
        return self.invoke("Get-ServicePrincipal", {}, scan=True)

    @read
    def get_service_principal(self, identity: str) -> dict | None:
        """The pointer `identity` names (its AppId, ObjectId, Identity, Name, DisplayName or Sid), or None. An
        identity Get-ServicePrincipal does not know is answered with EVERY pointer (docs/exchange.md §3): only a row
        that names it is an answer, never the first of them."""
        try:
            rows = self.invoke("Get-ServicePrincipal", {"Identity": identity})
        except NotFound:
            return None
        want = identity.strip().lower()
        return next((r for r in rows if want in {str(r.get(f) or "").strip().lower() for f in SP_POINTER_NAMES}),
                    None)

    @write
    def new_service_principal(self, app_id: str, object_id: str, display_name: str = "") -> dict:
        params = {"AppId": app_id, "ObjectId": object_id}
        if display_name:
            params["DisplayName"] = display_name
        rows = self.invoke("New-ServicePrincipal", params)
        return rows[0] if rows else {}

    # -- mailboxes and permissions ---------------------------------------------------------------------
    @read
    def get_mailboxes(self, properties: list[str] | None = None) -> list[dict]:
        """Every mailbox. Get-Mailbox (trimmed with $select), or Get-EXOMailbox -Properties when exo_cmdlets is
        on, falling back to Get-Mailbox when the endpoint refuses it or lacks that parameter set."""
        if properties and self.exo_cmdlets:
            try:
                return self.invoke("Get-EXOMailbox", {"ResultSize": "Unlimited", "Properties": list(properties)},
                                   scan=True)
            except ApiError as exc:
                if not is_unsupported(exc):
                    raise
        return self.invoke("Get-Mailbox", {"ResultSize": "Unlimited"}, list(properties) if properties else None,
                           scan=True)

    @read
    def scan_recipient_permissions(self, select: list[str] | None = None) -> list[dict]:
        """Every recipient permission row of the organisation (-ResultSize Unlimited), filtered client-side."""
        return self.invoke("Get-RecipientPermission", {"ResultSize": "Unlimited"}, select, scan=True)

    @read
    def get_recipient_permissions(self, mailbox: str, trustee: str | None = None) -> list[dict]:
        params: dict[str, Any] = {"Identity": mailbox}
        if trustee is not None:
            params["Trustee"] = trustee
        return self.invoke("Get-RecipientPermission", params)

    @read
    def get_recipient_permissions_by_trustee(self, trustee: str) -> list[dict]:
        """All SendAs rows of one trustee. May miss rows for trustees with several SIDs (docs/exchange.md §3)."""
        return self.invoke("Get-RecipientPermission", {"Trustee": trustee, "ResultSize": "Unlimited"})

    @write
    def add_recipient_permission(self, mailbox: str, trustee: str) -> list[dict]:
        check_identity("Get-RecipientPermission", {"Identity": mailbox, "Trustee": trustee})
        return self.invoke("Add-RecipientPermission", {"Identity": mailbox, "Trustee": trustee,
                                                       "AccessRights": "SendAs", "Confirm": False})

    @write
    def remove_recipient_permission(self, mailbox: str, trustee: str) -> list[dict]:
        check_identity("Get-RecipientPermission", {"Identity": mailbox, "Trustee": trustee})
        return self.invoke("Remove-RecipientPermission", {"Identity": mailbox, "Trustee": trustee,
                                                          "AccessRights": "SendAs", "Confirm": False})

    @read
    def scan_mailbox_permissions(self, select: list[str] | None = None) -> list[dict]:
        """Every mailbox permission row: Get-MailboxPermission -ResultSize Unlimited without an identity (the
        $null-identity hazard, used on purpose: callers check the scan). Get-EXOMailboxPermission first when
        exo_cmdlets is on; a refusal or a missing parameter set falls back to the classic cmdlet."""
        return self.scan_mailbox_permissions_with(select)[0]

    @read
    def scan_mailbox_permissions_with(self, select: list[str] | None = None) -> tuple[list[dict], str]:
        """(rows, the cmdlet that served them)."""
        cmdlets = ["Get-EXOMailboxPermission", "Get-MailboxPermission"] if self.exo_cmdlets else \
            ["Get-MailboxPermission"]
        for cmdlet in cmdlets[:-1]:
            try:
                return self.invoke(cmdlet, {"ResultSize": "Unlimited"}, select, scan=True), cmdlet
            except ApiError as exc:
                if not is_unsupported(exc):
                    raise
        return self.invoke(cmdlets[-1], {"ResultSize": "Unlimited"}, select, scan=True), cmdlets[-1]

    @read
    def get_mailbox_permissions(self, mailbox: str, user: str | None = None) -> list[dict]:
        params: dict[str, Any] = {"Identity": mailbox}
        if user is not None:
            params["User"] = user
        return self.invoke("Get-MailboxPermission", params)

    @write
    def add_mailbox_permission(self, mailbox: str, user: str) -> list[dict]:
        check_identity("Get-MailboxPermission", {"Identity": mailbox, "User": user})
        return self.invoke("Add-MailboxPermission", {"Identity": mailbox, "User": user, "AccessRights": ["FullAccess"],
                                                     "InheritanceType": "All", "Confirm": False})

    @write
    def remove_mailbox_permission(self, mailbox: str, user: str) -> list[dict]:
        check_identity("Get-MailboxPermission", {"Identity": mailbox, "User": user})
        return self.invoke("Remove-MailboxPermission", {"Identity": mailbox, "User": user,
                                                        "AccessRights": ["FullAccess"], "InheritanceType": "All",
                                                        "Confirm": False})

    # -- groups ----------------------------------------------------------------------------------------
    @read
    def get_distribution_group(self, identity: str) -> dict | None:
        return self._get_one("Get-DistributionGroup", identity)

    @read
    def get_distribution_groups(self) -> list[dict]:
        return self.invoke("Get-DistributionGroup", {"ResultSize": "Unlimited"}, scan=True)

    @write
    def new_distribution_group(self, name: str, alias: str, primary_smtp: str | None = None) -> dict:
        params: dict[str, Any] = {"Name": name, "Alias": alias, "Type": "Security",
                                  "MemberJoinRestriction": "Closed", "MemberDepartRestriction": "Closed"}
        if primary_smtp:
            params["PrimarySmtpAddress"] = primary_smtp
        rows = self.invoke("New-DistributionGroup", params)
        return rows[0] if rows else {}

    @write
    def set_distribution_group(self, identity: str, **params: Any) -> list[dict]:
        check_identity("Get-DistributionGroup", {"Identity": identity})
        return self.invoke("Set-DistributionGroup", {"Identity": identity, **params})

    @write
    def remove_distribution_group(self, identity: str) -> list[dict]:
        check_identity("Get-DistributionGroup", {"Identity": identity})
        return self.invoke("Remove-DistributionGroup", {"Identity": identity, "Confirm": False,
                                                        "BypassSecurityGroupManagerCheck": True})

    @read
    def get_group_members(self, identity: str, select: list[str] | None = None) -> list[dict]:
        return self.invoke("Get-DistributionGroupMember", {"Identity": identity, "ResultSize": "Unlimited"}, select)

    @write
    def update_group_members(self, identity: str, members: list[str]) -> list[dict]:
        check_identity("Get-DistributionGroupMember", {"Identity": identity})
        return self.invoke("Update-DistributionGroupMember", {"Identity": identity, "Members": list(members),
                                                              "Confirm": False,
                                                              "BypassSecurityGroupManagerCheck": True})

    @write
    def add_group_member(self, identity: str, member: str) -> list[dict]:
        check_identity("Get-DistributionGroupMember", {"Identity": identity, "Member": member})
        if _blank(member):
            raise ValueError("Add-DistributionGroupMember: empty -Member")
        return self.invoke("Add-DistributionGroupMember", {"Identity": identity, "Member": member,
                                                           "BypassSecurityGroupManagerCheck": True})

    @write
    def remove_group_member(self, identity: str, member: str) -> list[dict]:
        check_identity("Get-DistributionGroupMember", {"Identity": identity})
        if _blank(member):
            raise ValueError("Remove-DistributionGroupMember: empty -Member")
        return self.invoke("Remove-DistributionGroupMember", {"Identity": identity, "Member": member,
                                                              "Confirm": False,
                                                              "BypassSecurityGroupManagerCheck": True})

    # -- scopes and role assignments ---------------------------------------------------------------------
    @read
    def get_management_scope(self, name: str) -> dict | None:
        return self._get_one("Get-ManagementScope", name)

    @read
    def get_management_scopes(self) -> list[dict]:
        return self.invoke("Get-ManagementScope", {}, scan=True)

    @write
    def new_management_scope(self, name: str, recipient_filter: str) -> dict:
        rows = self.invoke("New-ManagementScope", {"Name": name, "RecipientRestrictionFilter": recipient_filter})
        return rows[0] if rows else {}

    @write
    def remove_management_scope(self, name: str) -> list[dict]:
        check_identity("Get-ManagementScope", {"Identity": name})
        return self.invoke("Remove-ManagementScope", {"Identity": name, "Confirm": False})

    @read
    def get_role_assignments(self, role: str = RBAC_ROLE_SMTP_SEND_AS) -> list[dict]:
        """Assignments of one role (Get-ManagementRoleAssignment has no -App filter: filter client-side)."""
        return self.invoke("Get-ManagementRoleAssignment", {"Role": role})

    @read
    def scan_role_assignments(self) -> list[dict]:
        """Every management role assignment (a deliberate scan, no identity): the inventory keeps the apps'
        `Application ...` ones. One paged listing instead of one -RoleAssignee query per service principal."""
        return self.invoke("Get-ManagementRoleAssignment", {}, scan=True)

    @read
    def get_role_assignment(self, name: str) -> dict | None:
        return self._get_one("Get-ManagementRoleAssignment", name)

    @write
    def new_role_assignment(self, name: str, role: str, app: str, custom_resource_scope: str) -> dict:
        for key, value in (("Name", name), ("App", app), ("CustomResourceScope", custom_resource_scope)):
            if _blank(value):
                raise ValueError(f"New-ManagementRoleAssignment: empty -{key}")
        rows = self.invoke("New-ManagementRoleAssignment", {"Name": name, "Role": role, "App": app,
                                                            "CustomResourceScope": custom_resource_scope})
        return rows[0] if rows else {}

    @write
    def remove_role_assignment(self, name: str) -> list[dict]:
        check_identity("Get-ManagementRoleAssignment", {"Identity": name})
        return self.invoke("Remove-ManagementRoleAssignment", {"Identity": name, "Confirm": False})

    @read
    def test_sp_authorization(self, sp_identity: str, resource: str | None = None) -> list[dict]:
        if _blank(sp_identity):
            raise ValueError("Test-ServicePrincipalAuthorization: empty -Identity")
        params: dict[str, Any] = {"Identity": sp_identity}
        if resource is not None:
            if _blank(resource):
                raise ValueError("Test-ServicePrincipalAuthorization: empty -Resource")
            params["Resource"] = resource
        return self.invoke("Test-ServicePrincipalAuthorization", params)

    @read
    def get_application_access_policies(self) -> list[dict]:
        return self.invoke("Get-ApplicationAccessPolicy", {}, scan=True)

    @write
    def new_application_access_policy(self, app_id: str, scope_group: str, access_right: str,
                                      description: str = " ") -> dict:
        """One policy (Exchange makes one per AppId). The one-space default description is Microsoft's advice: the
        policies share a fixed space, about 300 fit that way (docs/exchange.md §8)."""
        for key, value in (("AppId", app_id), ("PolicyScopeGroupId", scope_group), ("AccessRight", access_right)):
            if _blank(value):
                raise ValueError(f"New-ApplicationAccessPolicy: empty -{key}")
        rows = self.invoke("New-ApplicationAccessPolicy", {"AppId": app_id, "PolicyScopeGroupId": scope_group,
                                                           "AccessRight": access_right, "Description": description})
        return rows[0] if rows else {}

    @write
    def set_application_access_policy(self, identity: str, description: str) -> list[dict]:
        check_identity("Get-ApplicationAccessPolicy", {"Identity": identity})
        return self.invoke("Set-ApplicationAccessPolicy", {"Identity": identity, "Description": description})

    @write
    def remove_application_access_policy(self, identity: str) -> list[dict]:
        check_identity("Get-ApplicationAccessPolicy", {"Identity": identity})
        return self.invoke("Remove-ApplicationAccessPolicy", {"Identity": identity, "Confirm": False})

    @read
    def test_application_access_policy(self, mailbox: str, app_id: str) -> list[dict]:
        """Test-ApplicationAccessPolicy: AccessCheckResult Granted/Denied for one recipient (the configuration,
        read at once; Graph and EWS apply policy changes later)."""
        for key, value in (("Identity", mailbox), ("AppId", app_id)):
            if _blank(value):
                raise ValueError(f"Test-ApplicationAccessPolicy: empty -{key}")
        return self.invoke("Test-ApplicationAccessPolicy", {"Identity": mailbox, "AppId": app_id})
