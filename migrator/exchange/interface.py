"""The tenant as the executor sees it: one interface for Exchange and one for Graph, with typed rows.

`ExchangeApi` and `GraphApi` are base classes. Each declares the raw methods the executor needs (their signatures
and read/write marks; `ExchangeClient`/`GraphClient` implement them over HTTP, the test fake over memory) and
defines, once, the typed reads the executor's steps call: they parse Microsoft's rows (field names, which of
several names a cmdlet fills, "True"/"False" strings, `{a, b}` rights) into the small frozen dataclasses below, so
no step reads a dict by hand. Each typed row keeps its `raw` row (not compared, not shown) for the journal, which
records the tenant's own answer as the prior state of a change.

Writes stay raw methods (their answers are read back by a typed read before anything relies on them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from migrator.exchange.access import by_cmdlet, read, write
from migrator.model import EXCHANGE_ONLINE_APP_ID, RBAC_ROLE_SMTP_SEND_AS, norm_id

Row = Mapping[str, Any]


# ---------------------------------------------------------------------------------------------------------------
# Reading Microsoft's rows
# ---------------------------------------------------------------------------------------------------------------
def text(row: Row | None, *names: str) -> str:
    """The first non-empty of `names` in the row, as text ('' when none is set)."""
    for name in names:
        value = (row or {}).get(name)
        if value not in (None, ""):
            return str(value)
    return ""


def truthy(value: Any) -> bool:
    """Exchange answers booleans as true or as the string "True"."""
    return value is True or str(value).strip().lower() == "true"


def rights(row: Row) -> frozenset[str]:
    """AccessRights as lower-case names: a list, or a string such as "{SendAs, ReadPermission}"."""
    value = row.get("AccessRights")
    if isinstance(value, str):
        value = [v.strip() for v in value.strip("{}").split(",")]
    return frozenset(str(v).strip().lower() for v in (value or []))


# ---------------------------------------------------------------------------------------------------------------
# Typed rows
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MailboxRef:
    """A mailbox and every name Get-RecipientPermission may show it by (lower case)."""

    address: str  # primary SMTP address, lower case ('' when the row has none)
    names: tuple[str, ...]
    raw: Row = field(default_factory=dict, compare=False, repr=False)  # the tenant's own row, for the journal

    NAME_FIELDS = ("Identity", "Name", "Alias", "Guid", "DistinguishedName", "UserPrincipalName",
                   "ExternalDirectoryObjectId", "PrimarySmtpAddress", "Id")

    @classmethod
    def from_row(cls, row: Row) -> MailboxRef:
        names = tuple(n for n in (norm_id(text(row, f)) for f in cls.NAME_FIELDS) if n)
        return cls(norm_id(text(row, "PrimarySmtpAddress", "WindowsEmailAddress")), names, row)


@dataclass(frozen=True)
class SpPointer:
    """An Exchange service-principal pointer (Get-ServicePrincipal)."""

    identity: str
    name: str
    raw: Row = field(default_factory=dict, compare=False, repr=False)  # the tenant's own row, for the journal
    # The pointer's own DisplayName (New-ServicePrincipal -DisplayName, often unlike the Entra name) and Sid:
    # permission rows may show the trustee by either.
    display_name: str = ""
    sid: str = ""

    @classmethod
    def from_row(cls, row: Row) -> SpPointer:
        return cls(text(row, "Identity"), text(row, "Name"), row, display_name=text(row, "DisplayName"),
                   sid=text(row, "Sid"))


@dataclass(frozen=True)
class PermissionEntry:
    """One row of Get-RecipientPermission (SendAs) or Get-MailboxPermission (FullAccess)."""

    mailbox: str  # as the cmdlet shows it (Identity): a name, not necessarily the address
    trustee: str  # Trustee (recipient permissions) or User (mailbox permissions), as shown
    rights: frozenset[str]  # lower case
    inherited: bool
    deny: bool
    raw: Row = field(default_factory=dict, compare=False, repr=False)  # the tenant's own row, for the journal

    @classmethod
    def from_row(cls, row: Row) -> PermissionEntry:
        deny = text(row, "AccessControlType").lower() == "deny" or truthy(row.get("Deny"))
        return cls(text(row, "Identity"), text(row, "Trustee", "User"), rights(row), truthy(row.get("IsInherited")),
                   deny, row)


@dataclass(frozen=True)
class GroupInfo:
    """A distribution group (Get-/New-DistributionGroup)."""

    name: str
    alias: str
    dn: str
    guid: str
    hidden: bool
    raw: Row = field(default_factory=dict, compare=False, repr=False)  # the tenant's own row, for the journal

    @property
    def identity(self) -> str:
        """The most stable way to address it: its GUID, else its DN."""
        return self.guid or self.dn

    @classmethod
    def from_row(cls, row: Row) -> GroupInfo:
        return cls(text(row, "Name"), text(row, "Alias"), text(row, "DistinguishedName"), text(row, "Guid"),
                   truthy(row.get("HiddenFromAddressListsEnabled")), row)


@dataclass(frozen=True)
class GroupMember:
    address: str  # lower case: the primary SMTP address, else the name
    raw: Row = field(default_factory=dict, compare=False, repr=False)  # the tenant's own row, for the journal

    @classmethod
    def from_row(cls, row: Row) -> GroupMember:
        return cls(norm_id(text(row, "PrimarySmtpAddress", "WindowsEmailAddress", "Name")), row)


@dataclass(frozen=True)
class ScopeInfo:
    """A management scope (Get-ManagementScope)."""

    name: str
    filter: str  # RecipientFilter as Exchange echoes it
    exclusive: bool
    raw: Row = field(default_factory=dict, compare=False, repr=False)  # the tenant's own row, for the journal

    @classmethod
    def from_row(cls, row: Row) -> ScopeInfo:
        return cls(text(row, "Name"), text(row, "RecipientFilter", "RecipientRestrictionFilter"),
                   truthy(row.get("Exclusive")), row)


@dataclass(frozen=True)
class RoleAssignmentInfo:
    """A management role assignment (Get-ManagementRoleAssignment)."""

    name: str
    role: str  # '' when the row does not say
    assignee: str  # lower case: RoleAssigneeName, else App, else RoleAssignee
    scope: str  # CustomResourceScope
    raw: Row = field(default_factory=dict, compare=False, repr=False)  # the tenant's own row, for the journal
    group_scope: str = ""  # RecipientGroupScope: the group it is scoped to, as Exchange names it

    @classmethod
    def from_row(cls, row: Row) -> RoleAssignmentInfo:
        return cls(text(row, "Name"), text(row, "Role"), norm_id(text(row, "RoleAssigneeName", "App", "RoleAssignee")),
                   text(row, "CustomResourceScope"), row, text(row, "RecipientGroupScope"))


@dataclass(frozen=True)
class AuthorizationResult:
    """One row of Test-ServicePrincipalAuthorization."""

    role: str
    in_scope: bool
    raw: Row = field(default_factory=dict, compare=False, repr=False)  # the tenant's own row, for the journal

    @classmethod
    def from_row(cls, row: Row) -> AuthorizationResult:
        return cls(text(row, "RoleName", "Role"), truthy(row.get("InScope")), row)


@dataclass(frozen=True)
class AccessPolicyInfo:
    """An Application Access Policy (Get-ApplicationAccessPolicy). `raw` is what a rollback re-creates it from."""

    identity: str  # `<tenant>\\<app id>:<scope SID>;<scope ExternalDirectoryObjectId>` as Exchange shows it
    app_id: str  # lower case
    access_right: str  # RestrictAccess | DenyAccess
    scope: str  # ScopeName (the scope group's or mailbox's name)
    description: str
    raw: Row = field(default_factory=dict, compare=False, repr=False)  # the tenant's own row, for the journal

    @property
    def key(self) -> str:
        """The journal key of the policy: its Identity, lower case."""
        return self.identity.strip().lower()

    @classmethod
    def from_row(cls, row: Row) -> AccessPolicyInfo:
        description = row.get("Description")
        return cls(text(row, "Identity"), norm_id(text(row, "AppId")), text(row, "AccessRight"),
                   text(row, "ScopeName", "ScopeIdentity"), description if isinstance(description, str) else "",
                   row)


@dataclass(frozen=True)
class EntraServicePrincipal:
    """An Entra service principal (Graph), with its app roles as (id, value) pairs."""

    id: str
    app_id: str
    display_name: str
    app_roles: tuple[tuple[str, str], ...] = ()
    raw: Row = field(default_factory=dict, compare=False, repr=False)  # the tenant's own row, for the journal

    def role_id(self, value: str) -> str | None:
        return next((rid for rid, v in self.app_roles if v == value), None)

    @classmethod
    def from_row(cls, row: Row) -> EntraServicePrincipal:
        roles = tuple((str(r.get("id") or ""), str(r.get("value") or "")) for r in row.get("appRoles") or [])
        return cls(text(row, "id"), text(row, "appId"), text(row, "displayName"), roles, row)


@dataclass(frozen=True)
class AppRoleAssignment:
    """An Entra app-role assignment (Graph appRoleAssignments)."""

    id: str
    resource_id: str  # lower case
    app_role_id: str  # lower case
    raw: Row = field(default_factory=dict, compare=False, repr=False)  # the tenant's own row, for the journal

    @classmethod
    def from_row(cls, row: Row) -> AppRoleAssignment:
        return cls(text(row, "id"), norm_id(text(row, "resourceId")), norm_id(text(row, "appRoleId")), row)


# ---------------------------------------------------------------------------------------------------------------
# The interfaces
# ---------------------------------------------------------------------------------------------------------------
class ExchangeApi(ABC):
    """Exchange Online as the executor uses it. Subclasses implement the raw methods below (same signatures)."""

    # ---- raw methods (implemented by ExchangeClient and the test fake) ----------------------------------------
    @by_cmdlet
    @abstractmethod
    def invoke(self, cmdlet: str, params: dict[str, Any] | None = None, select: list[str] | None = None, *,
               scan: bool = False) -> list[dict]:
        ...

    @read
    @abstractmethod
    def get_mailboxes(self, properties: list[str] | None = None) -> list[dict]:
        ...

    @read
    @abstractmethod
    def get_service_principal(self, identity: str) -> dict | None:
        ...

    @write
    @abstractmethod
    def new_service_principal(self, app_id: str, object_id: str, display_name: str = "") -> dict:
        ...

    @read
    @abstractmethod
    def scan_recipient_permissions(self, select: list[str] | None = None) -> list[dict]:
        ...

    @write
    @abstractmethod
    def add_recipient_permission(self, mailbox: str, trustee: str) -> list[dict]:
        ...

    @write
    @abstractmethod
    def remove_recipient_permission(self, mailbox: str, trustee: str) -> list[dict]:
        ...

    @read
    @abstractmethod
    def get_mailbox_permissions(self, mailbox: str, user: str | None = None) -> list[dict]:
        ...

    @write
    @abstractmethod
    def add_mailbox_permission(self, mailbox: str, user: str) -> list[dict]:
        ...

    @write
    @abstractmethod
    def remove_mailbox_permission(self, mailbox: str, user: str) -> list[dict]:
        ...

    @read
    @abstractmethod
    def get_distribution_group(self, identity: str) -> dict | None:
        ...

    @write
    @abstractmethod
    def new_distribution_group(self, name: str, alias: str, primary_smtp: str | None = None) -> dict:
        ...

    @write
    @abstractmethod
    def set_distribution_group(self, identity: str, **params: Any) -> list[dict]:
        ...

    @write
    @abstractmethod
    def remove_distribution_group(self, identity: str) -> list[dict]:
        ...

    @read
    @abstractmethod
    def get_group_members(self, identity: str, select: list[str] | None = None) -> list[dict]:
        ...

    @write
    @abstractmethod
    def update_group_members(self, identity: str, members: list[str]) -> list[dict]:
        ...

    @write
    @abstractmethod
    def add_group_member(self, identity: str, member: str) -> list[dict]:
        ...

    @write
    @abstractmethod
    def remove_group_member(self, identity: str, member: str) -> list[dict]:
        ...

    @read
    @abstractmethod
    def get_management_scope(self, name: str) -> dict | None:
        ...

    @write
    @abstractmethod
    def new_management_scope(self, name: str, recipient_filter: str) -> dict:
        ...

    @write
    @abstractmethod
    def remove_management_scope(self, name: str) -> list[dict]:
        ...

    @read
    @abstractmethod
    def get_role_assignments(self, role: str = RBAC_ROLE_SMTP_SEND_AS) -> list[dict]:
        ...

    @read
    @abstractmethod
    def scan_role_assignments(self) -> list[dict]:
        """Every management role assignment, of any role and assignee (is a scope still used by anything?)."""
        ...

    @write
    @abstractmethod
    def new_role_assignment(self, name: str, role: str, app: str, custom_resource_scope: str) -> dict:
        ...

    @write
    @abstractmethod
    def remove_role_assignment(self, name: str) -> list[dict]:
        ...

    @read
    @abstractmethod
    def test_sp_authorization(self, sp_identity: str, resource: str | None = None) -> list[dict]:
        ...

    @read
    @abstractmethod
    def get_application_access_policies(self) -> list[dict]:
        ...

    @write
    @abstractmethod
    def new_application_access_policy(self, app_id: str, scope_group: str, access_right: str,
                                      description: str = " ") -> dict:
        ...

    @write
    @abstractmethod
    def remove_application_access_policy(self, identity: str) -> list[dict]:
        ...

    # ---- typed reads (defined once, here) -------------------------------------------------------------------
    @read
    def access_policies(self) -> list[AccessPolicyInfo]:
        """Every Application Access Policy of the tenant (Get-ApplicationAccessPolicy without -Identity: an
        unknown identity would list them all anyway, docs/exchange.md §3)."""
        return [AccessPolicyInfo.from_row(r) for r in self.get_application_access_policies()]

    @read
    def mailbox_refs(self) -> list[MailboxRef]:
        return [MailboxRef.from_row(r) for r in self.get_mailboxes()]

    @read
    def sp_pointer(self, identity: str) -> SpPointer | None:
        row = self.get_service_principal(identity)
        return None if row is None else SpPointer.from_row(row)

    @read
    def sendas_entries(self) -> list[PermissionEntry]:
        """Every recipient permission row of the organisation (the full scan), typed."""
        return [PermissionEntry.from_row(r) for r in self.scan_recipient_permissions()]

    @read
    def mailbox_permission_entries(self, mailbox: str, user: str | None = None) -> list[PermissionEntry]:
        return [PermissionEntry.from_row(r) for r in self.get_mailbox_permissions(mailbox, user)]

    @read
    def group(self, identity: str) -> GroupInfo | None:
        row = self.get_distribution_group(identity)
        return None if row is None else GroupInfo.from_row(row)

    @read
    def group_members(self, identity: str) -> list[GroupMember]:
        return [GroupMember.from_row(r) for r in self.get_group_members(identity)]

    @read
    def scope(self, name: str) -> ScopeInfo | None:
        row = self.get_management_scope(name)
        return None if row is None else ScopeInfo.from_row(row)

    @read
    def role_assignments(self, role: str = RBAC_ROLE_SMTP_SEND_AS) -> list[RoleAssignmentInfo]:
        return [RoleAssignmentInfo.from_row(r) for r in self.get_role_assignments(role)]

    @read
    def authorization(self, sp_identity: str, resource: str | None = None) -> list[AuthorizationResult]:
        return [AuthorizationResult.from_row(r) for r in self.test_sp_authorization(sp_identity, resource)]


class GraphApi(ABC):
    """Microsoft Graph as the executor uses it. Subclasses implement the raw methods below (same signatures)."""

    @read
    @abstractmethod
    def get_service_principal_by_app_id(self, app_id: str) -> dict | None:
        ...

    @read
    @abstractmethod
    def get_resource_service_principal(self, app_id: str = EXCHANGE_ONLINE_APP_ID) -> dict:
        ...

    @read
    @abstractmethod
    def list_app_role_assignments(self, sp_id: str) -> list[dict]:
        ...

    @write
    @abstractmethod
    def grant_app_role(self, sp_id: str, resource_id: str, app_role_id: str) -> dict:
        ...

    @write
    @abstractmethod
    def delete_app_role_assignment(self, sp_id: str, assignment_id: str) -> None:
        ...

    @read
    @abstractmethod
    def list_token_lifetime_policies(self) -> list[dict]:
        ...

    @read
    @abstractmethod
    def token_lifetime_policy_applies_to(self, policy_id: str) -> list[dict]:
        ...

    @read
    @abstractmethod
    def get_application_by_app_id(self, app_id: str) -> dict | None:
        ...

    # ---- typed reads -------------------------------------------------------------------------------------------
    @read
    def service_principal(self, app_id: str) -> EntraServicePrincipal | None:
        row = self.get_service_principal_by_app_id(app_id)
        return None if not row else EntraServicePrincipal.from_row(row)

    @read
    def resource_service_principal(self, app_id: str = EXCHANGE_ONLINE_APP_ID) -> EntraServicePrincipal:
        return EntraServicePrincipal.from_row(self.get_resource_service_principal(app_id))

    @read
    def app_role_assignments(self, sp_id: str) -> list[AppRoleAssignment]:
        return [AppRoleAssignment.from_row(r) for r in self.list_app_role_assignments(sp_id)]


def raw_methods(api: type) -> list[str]:
    """The raw methods an implementation of `api` (ExchangeApi or GraphApi) must provide (its abstract methods)."""
    return sorted(api.__abstractmethods__)  # type: ignore[attr-defined]


__all__ = [
    "AccessPolicyInfo",
    "AppRoleAssignment",
    "AuthorizationResult",
    "EntraServicePrincipal",
    "ExchangeApi",
    "GraphApi",
    "GroupInfo",
    "GroupMember",
    "MailboxRef",
    "PermissionEntry",
    "RoleAssignmentInfo",
    "ScopeInfo",
    "SpPointer",
    "raw_methods",
    "rights",
    "text",
    "truthy",
]
