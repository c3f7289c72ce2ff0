"""The domain model: frozen value objects shared by every part of migrator.

Objects are keyed by stable ids, never by display names (names are labels only):
- an app by its Entra application (client) id, lower case;
- a service principal by its Entra enterprise-application object id (what Exchange calls ObjectId);
- a mailbox by its primary SMTP address, lower case (ExternalDirectoryObjectId kept alongside);
- a group by its primary SMTP address, lower case (DistinguishedName kept alongside, it is what scopes need).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# The Office 365 Exchange Online first-party API (docs/exchange.md §1) and Microsoft Graph: the resource service
# principals app permissions are granted on, by appId and by display name.
EXCHANGE_ONLINE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
EXCHANGE_ONLINE_NAME = "Office 365 Exchange Online"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_NAME = "Microsoft Graph"
# The application permission an app needs to run Exchange cmdlets app-only.
EXCHANGE_MANAGE_AS_APP = "Exchange.ManageAsApp"
SMTP_SEND_AS_APP = "SMTP.SendAsApp"
RBAC_ROLE_SMTP_SEND_AS = "Application SMTP.SendAsApp"

# The mailbox permissions an Application Access Policy fences (docs/exchange.md §8): each Entra application
# permission, the resource that offers it, and the RBAC for Applications role that replaces it. Microsoft Graph's
# mail, calendar, contacts and mailbox-settings permissions, and EWS's full_access_as_app on Exchange Online.
AAP_PERMISSIONS: dict[str, tuple[str, str]] = {
    "Mail.Read": (GRAPH_NAME, "Application Mail.Read"),
    "Mail.ReadBasic": (GRAPH_NAME, "Application Mail.ReadBasic"),
    "Mail.ReadBasic.All": (GRAPH_NAME, "Application Mail.ReadBasic"),
    "Mail.ReadWrite": (GRAPH_NAME, "Application Mail.ReadWrite"),
    "Mail.Send": (GRAPH_NAME, "Application Mail.Send"),
    "MailboxSettings.Read": (GRAPH_NAME, "Application MailboxSettings.Read"),
    "MailboxSettings.ReadWrite": (GRAPH_NAME, "Application MailboxSettings.ReadWrite"),
    "Calendars.Read": (GRAPH_NAME, "Application Calendars.Read"),
    "Calendars.ReadWrite": (GRAPH_NAME, "Application Calendars.ReadWrite"),
    "Contacts.Read": (GRAPH_NAME, "Application Contacts.Read"),
    "Contacts.ReadWrite": (GRAPH_NAME, "Application Contacts.ReadWrite"),
    "full_access_as_app": (EXCHANGE_ONLINE_NAME, "Application EWS.AccessAsApp"),
}
# Roles that serve several of those permissions at once (Microsoft's GrantedPermissions of the two bundles).
RBAC_ROLE_BUNDLES: dict[str, frozenset[str]] = {
    "Application Mail Full Access": frozenset({"Mail.ReadWrite", "Mail.Send"}),
    "Application Exchange Full Access": frozenset({"Mail.ReadWrite", "Mail.Send", "MailboxSettings.ReadWrite",
                                                   "Calendars.ReadWrite", "Contacts.ReadWrite"}),
}


def aap_permissions_of_role(role: str) -> frozenset[str]:
    """The AAP-fenced permissions an `Application ...` role serves (empty for other roles, SMTP.SendAsApp too)."""
    key = (role or "").strip().lower()
    for bundle, perms in RBAC_ROLE_BUNDLES.items():
        if bundle.lower() == key:
            return perms
    return frozenset(p for p, (_res, r) in AAP_PERMISSIONS.items() if r.lower() == key)

# Mailbox attributes an exact attribute scope may filter on (OPATH property names).
FILTERABLE_ATTRIBUTES: tuple[str, ...] = tuple(f"CustomAttribute{i}" for i in range(1, 16)) + (
    "Department",
    "Company",
    "Office",
    "City",
    "StateOrProvince",
    "CountryOrRegion",
)


class Right(enum.StrEnum):
    """A legacy per-mailbox permission an app's service principal can hold.

    A StrEnum, so f-strings and CSV cells show "SendAs", not "Right.SEND_AS"."""

    SEND_AS = "SendAs"  # Add-RecipientPermission -AccessRights SendAs
    FULL_ACCESS = "FullAccess"  # Add-MailboxPermission -AccessRights FullAccess


def norm_id(value: str) -> str:
    """Canonical form of a GUID-like id or an SMTP address: stripped, lower case."""
    return (value or "").strip().lower()


@dataclass(frozen=True, order=True)
class ServicePrincipal:
    app_id: str  # Entra application (client) id
    object_id: str  # Entra enterprise application object id (Exchange's ObjectId)
    display_name: str = ""  # as Exchange shows it: the pointer's DisplayName (often unlike the Entra name)
    exchange_identity: str = ""  # Exchange's Identity field, when known (often equals object_id)
    # Other names Exchange may show the pointer by in a permission row (its Name, its Sid), when known.
    exchange_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "app_id", norm_id(self.app_id))
        object.__setattr__(self, "object_id", norm_id(self.object_id))


@dataclass(frozen=True, order=True)
class Mailbox:
    address: str  # primary SMTP address, lower case: the key
    external_id: str = ""  # ExternalDirectoryObjectId (Entra user object id)
    guid: str = ""
    name: str = ""
    alias: str = ""
    display_name: str = ""
    dn: str = ""  # DistinguishedName
    upn: str = ""
    recipient_type: str = ""  # RecipientTypeDetails: UserMailbox, SharedMailbox, ...
    # (property, value) pairs for FILTERABLE_ATTRIBUTES that are set; a tuple keeps the object hashable.
    attributes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", norm_id(self.address))
        object.__setattr__(self, "external_id", norm_id(self.external_id))
        object.__setattr__(self, "guid", norm_id(self.guid))

    def attribute(self, name: str) -> str:
        return dict(self.attributes).get(name, "")


@dataclass(frozen=True, order=True)
class Group:
    """A mail-enabled group that already exists in the tenant (a candidate for reuse)."""

    address: str  # primary SMTP address, lower case: the key
    name: str = ""
    dn: str = ""
    guid: str = ""
    external_id: str = ""
    recipient_type: str = ""  # MailUniversalSecurityGroup, MailUniversalDistributionGroup, GroupMailbox
    members: frozenset[str] = field(default_factory=frozenset)  # mailbox addresses (direct members)
    other_members: int = 0  # direct members that are not mailboxes (groups, contacts, users without mailbox)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", norm_id(self.address))


@dataclass(frozen=True, order=True)
class Grant:
    """One legacy per-mailbox grant held by an app's service principal."""

    app_id: str
    mailbox: str  # primary SMTP address, lower case
    right: Right = Right.SEND_AS

    def __post_init__(self) -> None:
        object.__setattr__(self, "app_id", norm_id(self.app_id))
        object.__setattr__(self, "mailbox", norm_id(self.mailbox))
        object.__setattr__(self, "right", Right(self.right))


@dataclass(frozen=True)
class Scope:
    """A management scope (or an attribute filter) that an assignment is bound to."""

    key: str  # plan-local key, e.g. "S001"
    name: str  # object name in Exchange
    filter: str  # OPATH RecipientRestrictionFilter
    groups: tuple[str, ...] = ()  # plan group keys it matches


@dataclass(frozen=True)
class Assignment:
    """A role assignment of an app to a scope."""

    key: str  # plan-local key, e.g. "A0001"
    app_id: str
    role: str
    scope: str  # plan scope key
    name: str = ""
    batch: int = 0


@dataclass(frozen=True)
class Batch:
    number: int  # 1 = pilot
    apps: tuple[str, ...]  # app ids
    note: str = ""
