"""The sandbox tenant's state: recipients, service principals, permissions, groups, scopes, role assignments and
Entra app-role assignments, with every access-relevant change written to a Timeline.

`TenantState.invoke(cmdlet, params, caller=)` runs an Exchange cmdlet (cmdlets.py); the `graph_*` methods serve the
Graph subset (graph_ops.py); `can_send_as()` is the data plane (dataplane.py). One lock serialises everything, so
the threaded HTTP server may call in from any thread.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import threading
import uuid
from dataclasses import dataclass, field

from migrator.model import (
    AAP_PERMISSIONS,
    EXCHANGE_ONLINE_APP_ID,
    FILTERABLE_ATTRIBUTES,
    RBAC_ROLE_SMTP_SEND_AS,
    SMTP_SEND_AS_APP,
    aap_permissions_of_role,
)
from migrator.sandbox import aap, opath
from migrator.sandbox.api import Caller, CmdletError, CmdletResult, GraphError
from migrator.sandbox.clock import Clock
from migrator.sandbox.entra import apply_lifetimes
from migrator.sandbox.identity import IdentityIndex, recipient_keys, service_principal_keys
from migrator.sandbox.readlag import ReadLag
from migrator.sandbox.settings import SandboxSettings
from migrator.sandbox.timeline import Timeline

IMAP_POP_CLAIMS = ("IMAP.AccessAsApp", "POP.AccessAsApp")
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXCHANGE_RESOURCE_NAME = "Office 365 Exchange Online"
GRAPH_RESOURCE_NAME = "Microsoft Graph"
EXCHANGE_AUDIENCE = "https://outlook.office365.com"
GRAPH_AUDIENCE = "https://graph.microsoft.com"

# App roles the two resource service principals offer. Ids are Microsoft's where we know them; the others are
# derived deterministically (clients must look them up in `appRoles`, as with a real tenant).
KNOWN_ROLE_IDS = {
    (EXCHANGE_RESOURCE_NAME, "Exchange.ManageAsApp"): "dc50a0fb-09a3-484d-be87-e023b12c6440",
    (EXCHANGE_RESOURCE_NAME, "full_access_as_app"): "dc890d15-9560-4a4c-9b7f-a736ec74ec40",
    (GRAPH_RESOURCE_NAME, "Mail.Send"): "b633e1c5-b582-4048-a93e-9f11b44c7e96",
    (GRAPH_RESOURCE_NAME, "Mail.Read"): "810c84a8-4a9e-49e6-bf7d-12d183f40d01",
    (GRAPH_RESOURCE_NAME, "Mail.ReadBasic"): "6be147d2-ea4f-4b5a-a3fa-3eab6f3c140a",
    (GRAPH_RESOURCE_NAME, "Mail.ReadBasic.All"): "693c5e45-0940-467d-9b8a-1022fb9d42ef",
    (GRAPH_RESOURCE_NAME, "Mail.ReadWrite"): "e2a3a72e-5f79-4c64-b1b1-878b674786c9",
    (GRAPH_RESOURCE_NAME, "Application.Read.All"): "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    (GRAPH_RESOURCE_NAME, "AppRoleAssignment.ReadWrite.All"): "06b708a9-e830-4db3-a914-8e69da51d44f",
    (GRAPH_RESOURCE_NAME, "User.Read.All"): "df021288-bdef-4463-88db-98f22de89214",
    (GRAPH_RESOURCE_NAME, "Policy.Read.All"): "246dd0d5-5bd0-4def-940b-0421030a5b68",
}
RESOURCE_ROLES = {
    EXCHANGE_RESOURCE_NAME: ("Exchange.ManageAsApp", "full_access_as_app", SMTP_SEND_AS_APP, "IMAP.AccessAsApp",
                             "POP.AccessAsApp", "Mail.Send", "Mail.Read", "Mail.ReadWrite", "EWS.AccessAsApp"),
    GRAPH_RESOURCE_NAME: ("Mail.Send", "Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic", "Mail.ReadBasic.All",
                          "MailboxSettings.Read", "MailboxSettings.ReadWrite", "Calendars.Read",
                          "Calendars.ReadWrite", "Contacts.Read", "Contacts.ReadWrite", "Application.Read.All",
                          "AppRoleAssignment.ReadWrite.All", "User.Read.All", "Directory.Read.All",
                          "Application.ReadWrite.All", "Policy.Read.All",
                          "Policy.ReadWrite.ApplicationConfiguration"),
}
RESOURCE_APP_IDS = {EXCHANGE_RESOURCE_NAME: EXCHANGE_ONLINE_APP_ID, GRAPH_RESOURCE_NAME: GRAPH_APP_ID}
AUDIENCE_RESOURCE = {EXCHANGE_AUDIENCE: EXCHANGE_RESOURCE_NAME, GRAPH_AUDIENCE: GRAPH_RESOURCE_NAME,
                     EXCHANGE_ONLINE_APP_ID: EXCHANGE_RESOURCE_NAME, GRAPH_APP_ID: GRAPH_RESOURCE_NAME}

MAILBOX_TYPES = ("UserMailbox", "SharedMailbox", "RoomMailbox", "EquipmentMailbox", "SchedulingMailbox")
GROUP_TYPES = {"Security": "MailUniversalSecurityGroup", "Distribution": "MailUniversalDistributionGroup",
               "Microsoft365": "GroupMailbox", "Unified": "GroupMailbox"}
_NS = uuid.UUID("5f1c1d2e-9a57-4c39-9b0c-6d1b2f6f0a11")


# Recipient.extra key of a mailbox's own SMTP AUTH switch (Set-CASMailbox -SmtpClientAuthenticationDisabled).
SMTP_AUTH_DISABLED = "smtp_client_authentication_disabled"


def det_uuid(*parts: str) -> str:
    """A stable GUID from names: fixtures without ids load the same way every time."""
    return str(uuid.uuid5(_NS, "|".join(parts)))


def default_pointer_name(entra_name: str) -> str:
    """The DisplayName the sandbox gives an Exchange pointer when none is set: unlike the Entra name on purpose, as
    in Microsoft's examples, so that matching a trustee by the Entra name alone fails here as it would live."""
    return f"EXO SP for {entra_name}"


def sid_for(key: str) -> str:
    """A stable Windows SID for an object (Exchange shows one for orphaned trustees)."""
    h = hashlib.sha256(key.encode()).digest()
    nums = [int.from_bytes(h[i:i + 4], "little") for i in (0, 4, 8)]
    return f"S-1-5-21-{nums[0]}-{nums[1]}-{nums[2]}-{1000 + h[12] * 256 + h[13]}"


_DN_SPECIAL = re.compile(r'[,+"\\<>;=#]|^ | $')


def escape_dn(value: str) -> str:
    if not _DN_SPECIAL.search(value):
        return value
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;=' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


@dataclass(slots=True)
class Recipient:
    guid: str
    kind: str  # "mailbox" | "group"
    name: str
    alias: str
    display_name: str
    primary_smtp: str
    upn: str = ""
    external_id: str = ""
    dn: str = ""
    cn: str = ""
    recipient_type_details: str = "UserMailbox"
    email_addresses: list[str] = field(default_factory=list)  # "SMTP:primary", "smtp:secondary"
    attributes: dict[str, str] = field(default_factory=dict)
    hidden: bool = False
    created: float = 0.0
    # groups
    group_type: str = ""  # Security | Distribution | Microsoft365
    members: dict[str, None] = field(default_factory=dict)  # guid -> None (ordered set of direct members)
    extra: dict = field(default_factory=dict)  # ManagedBy, MemberJoinRestriction, Notes...

    @property
    def is_group(self) -> bool:
        return self.kind == "group"

    @property
    def recipient_type(self) -> str:
        if self.kind == "mailbox":
            return "UserMailbox"
        return "MailUniversalSecurityGroup" if self.group_type == "Security" else "MailUniversalDistributionGroup"


@dataclass
class App:
    """An Entra application with its service principal; `exchange_pointer` is Exchange's New-ServicePrincipal."""

    app_id: str
    object_id: str
    display_name: str  # the Entra (enterprise application) name
    exchange_pointer: bool = False
    # The Exchange pointer's own DisplayName (New-ServicePrincipal -DisplayName): what permission rows show for the
    # trustee, often unlike the Entra name (Microsoft's examples: "EXO Serviceprincipal for EntraAD App ...").
    pointer_name: str = ""
    exchange_guid: str = ""
    secret: str | None = field(default=None, repr=False)  # never in reprs, logs or tracebacks
    certificate_pem: str | None = field(default=None, repr=False)
    directory_roles: set[str] = field(default_factory=set)
    is_admin: bool = False
    pointer_created: float = 0.0


@dataclass(slots=True)
class PermissionRow:
    """One ACE: a RecipientPermission (SendAs) or a MailboxPermission (FullAccess...)."""

    mailbox: str  # recipient guid
    trustee: tuple  # ("app", app_id) | ("recipient", guid) | ("self",) | ("sid", sid)
    access_rights: list[str]
    deny: bool = False
    is_inherited: bool = False
    inheritance_type: str = "None"
    # The ACE names one of the trustee's other SIDs: `-Trustee`/`-User` queries miss it, full scans show it
    # (docs/exchange.md §3 hazard). Set from the fixture key "other_sid".
    other_sid: bool = False
    seq: int = 0  # insertion order (set by PermissionTable)


class PermissionTable:
    """ACEs indexed by mailbox and by trustee: a 100k-mailbox tenant answers per-mailbox and per-app reads without
    scanning every row. Iterates in insertion order."""

    def __init__(self) -> None:
        self._rows: dict[int, PermissionRow] = {}
        self._by_mailbox: dict[str, dict[int, PermissionRow]] = {}
        self._by_trustee: dict[tuple, dict[int, PermissionRow]] = {}
        self._seq = 0

    def append(self, row: PermissionRow) -> PermissionRow:
        self._seq = seq = self._seq + 1
        row.seq = seq
        self._rows[seq] = row
        by_m = self._by_mailbox.get(row.mailbox)
        if by_m is None:
            by_m = self._by_mailbox[row.mailbox] = {}
        by_m[seq] = row
        by_t = self._by_trustee.get(row.trustee)
        if by_t is None:
            by_t = self._by_trustee[row.trustee] = {}
        by_t[seq] = row
        return row

    def remove(self, row: PermissionRow) -> None:
        self._rows.pop(row.seq, None)
        self._by_mailbox.get(row.mailbox, {}).pop(row.seq, None)
        self._by_trustee.get(row.trustee, {}).pop(row.seq, None)

    def for_mailbox(self, guid: str) -> list[PermissionRow]:
        return list(self._by_mailbox.get(guid, {}).values())

    def for_trustee(self, trustee: tuple) -> list[PermissionRow]:
        return list(self._by_trustee.get(trustee, {}).values())

    def drop_mailbox(self, guid: str) -> None:
        for row in self.for_mailbox(guid):
            self.remove(row)

    def __iter__(self):
        return iter(list(self._rows.values()))

    def __len__(self) -> int:
        return len(self._rows)


@dataclass
class ManagementScope:
    name: str
    guid: str
    filter: str
    ast: object
    exclusive: bool = False
    recipient_root: str | None = None
    created: float = 0.0
    hidden: bool = False  # created behind a RecipientGroupScope assignment


@dataclass
class RoleAssignment:
    name: str
    guid: str
    role: str
    app_id: str  # the assignee's app id (its SP ObjectId is shown)
    scope_kind: str  # "custom" | "group" | "au" | "organization"
    scope_ref: str = ""  # scope name | group guid | AU id
    enabled: bool = True
    created: float = 0.0


@dataclass
class AdministrativeUnit:
    id: str
    display_name: str
    members: set[str] = field(default_factory=set)  # recipient guids


class _FilterIndex:
    """opath.FilterIndex over the tenant's recipients (items are recipient guids)."""

    def __init__(self, state: TenantState) -> None:
        self.state = state

    def universe(self) -> set:
        return set(self.state.recipients)

    def values(self, guid: str, key: str) -> list[str]:
        return self.state.property_values(self.state.recipients[guid], key)

    def direct_members(self, dn_lower: str) -> set:
        group = self.state._by_dn.get(dn_lower)
        return set(group.members) if group is not None else set()

    def lookup(self, key: str, value: str):
        return None  # scanning 100k recipients per filter is fast enough; MemberOfGroup has its own index


FILTER_PROPERTIES = ("MemberOfGroup", "Name", "Alias", "DisplayName", "PrimarySmtpAddress", "WindowsEmailAddress",
                     "EmailAddresses", "UserPrincipalName", "RecipientType", "RecipientTypeDetails", "Guid",
                     "ExternalDirectoryObjectId", "DistinguishedName", "HiddenFromAddressListsEnabled",
                     ) + FILTERABLE_ATTRIBUTES


@dataclass(frozen=True)
class AppAccess:
    """What one app can reach now: effective SendAs grants, RBAC scope (mailbox addresses) and the Entra claim."""

    sendas: frozenset[str]
    rbac: frozenset[str]
    claim: bool


class TenantState:
    """Everything the sandbox tenant knows. Build with `from_fixture`; save with `to_fixture`."""

    def __init__(self, *, clock: Clock | None = None, settings: SandboxSettings | None = None) -> None:
        self.clock = clock or Clock()
        self.settings = settings or SandboxSettings()
        self.lock = threading.RLock()
        self.tenant_id = ""
        self.domain = ""
        self.default_domain = ""
        self.tenant_name = ""
        self.dn_suffix = ""
        self.server = "NAMPR03A001.prod.outlook.com"
        self.recipients: dict[str, Recipient] = {}
        self.apps: dict[str, App] = {}  # app_id -> App (includes the admin app)
        self.admin_app_id = ""
        # A second admin app (fixture key "cutover_admin"): the privileged profile that holds the Graph write
        # permission a least-privilege run leaves out, used only for the cut-over and its rollback.
        self.cutover_admin_app_id = ""
        self.recipient_permissions = PermissionTable()
        self.mailbox_permissions = PermissionTable()
        self.scopes: dict[str, ManagementScope] = {}  # lower name -> scope
        self.assignments: dict[str, RoleAssignment] = {}  # lower name -> assignment
        self.admin_units: dict[str, AdministrativeUnit] = {}
        self.access_policies: list[aap.AccessPolicy] = []  # Application Access Policies (sandbox/aap.py)
        self.resources: dict[str, dict] = {}  # resource display name -> Graph SP dict (with appRoles)
        self.app_role_assignments: dict[str, dict[str, dict]] = {}  # principal SP id -> {assignment id: dict}
        self.token_policies: list[dict] = []  # Graph tokenLifetimePolicy dicts + "appliesTo" (SP ids); entra.py
        self.requested_roles: dict[str, list[tuple[str, str]]] = {}  # app_id -> requiredResourceAccess
        # (time, principal SP id, "grant" | "delete", row): app-role assignment writes, for replication lag
        self.graph_changes: list[tuple[float, str, str, dict]] = []
        self.graph_reads = 0  # counts reads of appRoleAssignments (picks the replica a read in the lag hits)
        # Read-after-write lag of the admin reads (readlag.py): off until a fault profile sets `read_lag_s`.
        self.read_lag = ReadLag(self.clock.now)
        self._recipient_ids = IdentityIndex()
        self._sp_ids = IdentityIndex()
        self._by_dn: dict[str, Recipient] = {}
        self._dn_of: dict[str, str] = {}  # guid -> the DN it is indexed under
        self._scope_cache: dict[tuple, frozenset] = {}
        self.timeline = Timeline(self.settings, self.clock.now())
        self._sendas_now: dict[str, set[str]] = {}  # app_id -> mailbox addresses (last recorded)
        self._fullaccess_now: dict[str, set[str]] = {}
        self._rbac_now: dict[str, set[str]] = {}
        self.call_counts: dict[str, int] = {}
        # Set-TransportConfig -SmtpClientAuthenticationDisabled: SMTP AUTH off for every mailbox whose own CAS
        # setting (Recipient.extra[SMTP_AUTH_DISABLED]: True, False or absent) does not say otherwise.
        self.smtp_auth_disabled = False

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_fixture(cls, data: dict, *, clock: Clock | None = None,
                     settings: SandboxSettings | None = None) -> TenantState:
        from migrator.sandbox.fixture import load_fixture

        state = cls(clock=clock, settings=settings)
        with state.lock:
            load_fixture(state, data)
            state.timeline = Timeline(state.settings, state.clock.now())
            apply_lifetimes(state)
            state._sendas_now, state._fullaccess_now, state._rbac_now = {}, {}, {}
            state.timeline.loading = True
            state.sync_access(None)
            state.timeline.loading = False
        return state

    def to_fixture(self, *, include_secrets: bool = False) -> dict:
        """The state as a fixture dict. Client secrets are left out (null) unless asked for, so a saved tenant
        never carries a credential; loading it generates a new admin secret."""
        from migrator.sandbox.fixture import dump_fixture

        with self.lock:
            return dump_fixture(self, include_secrets=include_secrets)

    def snapshot(self) -> dict:
        """A deep copy of the state as a fixture dict (what `to_fixture` gives, safe to keep)."""
        return copy.deepcopy(self.to_fixture())

    # ------------------------------------------------------------------------------------------------ index
    def add_recipient(self, rec: Recipient) -> None:
        self.recipients[rec.guid] = rec
        self.reindex(rec)

    def reindex(self, rec: Recipient) -> None:
        old = self._dn_of.pop(rec.guid, None)
        if old is not None and self._by_dn.get(old) is rec:
            del self._by_dn[old]
        if rec.dn:
            self._by_dn[rec.dn.lower()] = rec
            self._dn_of[rec.guid] = rec.dn.lower()
        self._recipient_ids.put(rec.guid, recipient_keys(rec))

    def drop_recipient(self, rec: Recipient) -> None:
        self.recipients.pop(rec.guid, None)
        self._recipient_ids.drop(rec.guid)
        old = self._dn_of.pop(rec.guid, None)
        if old is not None and self._by_dn.get(old) is rec:
            del self._by_dn[old]
        for other in self.recipients.values():
            other.members.pop(rec.guid, None)
        for au in self.admin_units.values():
            au.members.discard(rec.guid)
        self.recipient_permissions.drop_mailbox(rec.guid)
        self.mailbox_permissions.drop_mailbox(rec.guid)

    def index_app(self, app: App) -> None:
        if app.exchange_pointer:
            self._sp_ids.put(app.app_id, service_principal_keys(app, sid_for("sp:" + app.app_id)))
        else:
            self._sp_ids.drop(app.app_id)

    def find_recipients(self, identity: str, *, include_unreplicated: bool = False) -> list[Recipient]:
        hits = [self.recipients[g] for g in self._recipient_ids.find(identity)]
        if not include_unreplicated:
            hits = [r for r in hits if self.replicated(r)]
        return sorted(hits, key=lambda r: r.guid)

    def replicated(self, rec: Recipient) -> bool:
        """A new group is invisible to other cmdlets for `replication_delay` seconds."""
        delay = self.settings.replication_delay
        return not (rec.is_group and delay > 0 and self.clock.now() < rec.created + delay)

    def find_sps(self, identity: str) -> list[App]:
        return sorted((self.apps[a] for a in self._sp_ids.find(identity)), key=lambda a: a.object_id)

    def mailbox_by_address(self, address: str) -> Recipient | None:
        for r in self.find_recipients(address, include_unreplicated=True):
            if r.kind == "mailbox":
                return r
        return None

    def app_by_sp_id(self, sp_id: str) -> App | None:
        sp_id = (sp_id or "").lower()
        for app in self.apps.values():
            if app.object_id == sp_id:
                return app
        return None

    def property_values(self, rec: Recipient, key: str) -> list[str]:
        """A recipient's values for an OPATH/output property (lower-case key); [] when unset."""
        simple = {
            "name": rec.name, "alias": rec.alias, "displayname": rec.display_name,
            "primarysmtpaddress": rec.primary_smtp, "windowsemailaddress": rec.primary_smtp,
            "userprincipalname": rec.upn, "recipienttype": rec.recipient_type,
            "recipienttypedetails": rec.recipient_type_details, "guid": rec.guid,
            "externaldirectoryobjectid": rec.external_id, "distinguishedname": rec.dn,
            "hiddenfromaddresslistsenabled": str(rec.hidden),
        }
        if key in simple:
            return [simple[key]] if simple[key] else []
        if key == "emailaddresses":
            return [a.split(":", 1)[1] if ":" in a else a for a in rec.email_addresses] + list(rec.email_addresses)
        if key == "memberofgroup":
            return [g.dn for g in self.recipients.values() if g.is_group and rec.guid in g.members]
        for attr, value in rec.attributes.items():
            if attr.lower() == key:
                return [value] if value else []
        return []

    # ------------------------------------------------------------------------------------------------ scopes
    def parse_filter(self, text: str):
        return opath.parse(text, known_properties=FILTER_PROPERTIES)

    def filter_members(self, ast) -> set[str]:
        return opath.evaluate(ast, _FilterIndex(self))

    def assignment_targets(self, ra: RoleAssignment) -> frozenset[str]:
        """Recipient guids an assignment covers, as configured now (direct members only, as Exchange does)."""
        key = (ra.scope_kind, ra.scope_ref.lower())
        hit = self._scope_cache.get(key)
        if hit is not None:
            return hit
        if ra.scope_kind == "organization":
            result = frozenset(self.recipients)
        elif ra.scope_kind == "custom":
            scope = self.scopes.get(ra.scope_ref.lower())
            result = frozenset(self.filter_members(scope.ast)) if scope else frozenset()
        elif ra.scope_kind == "group":
            group = self.recipients.get(ra.scope_ref)
            result = frozenset(group.members) if group else frozenset()
        elif ra.scope_kind == "au":
            au = self.admin_units.get(ra.scope_ref.lower())
            result = frozenset(au.members) if au else frozenset()
        else:
            result = frozenset()
        self._scope_cache[key] = result
        return result

    def invalidate_scopes(self) -> None:
        self._scope_cache.clear()

    # ------------------------------------------------------------------------------------------------ access
    def claim_now(self, app_id: str) -> bool:
        """The app's Entra SP holds SMTP.SendAsApp on Exchange Online (tokens issued now carry the claim)."""
        return SMTP_SEND_AS_APP in self.token_roles(app_id, EXCHANGE_AUDIENCE)

    def imap_claim_now(self, app_id: str) -> bool:
        """The app's Entra SP holds IMAP.AccessAsApp or POP.AccessAsApp (its tokens may open mailboxes by IMAP/POP)."""
        roles = self.token_roles(app_id, EXCHANGE_AUDIENCE)
        return any(r in roles for r in IMAP_POP_CLAIMS)

    def effective_sendas(self, app: App) -> set[str]:
        """Mailbox addresses the app holds an allowed, not denied, SendAs grant on (needs its Exchange pointer)."""
        if not app.exchange_pointer:
            return set()
        allow: set[str] = set()
        deny: set[str] = set()
        for row in self.recipient_permissions.for_trustee(("app", app.app_id)):
            if "SendAs" in row.access_rights:
                (deny if row.deny else allow).add(row.mailbox)
        return {self.recipients[g].primary_smtp for g in allow - deny
                if g in self.recipients and self.recipients[g].kind == "mailbox"}

    def effective_fullaccess(self, app: App) -> set[str]:
        """Mailbox addresses the app holds an allowed, not denied, explicit FullAccess grant on (needs its pointer).
        FullAccess carries SMTP (with the SMTP.SendAsApp claim) and IMAP/POP (with their claims)."""
        if not app.exchange_pointer:
            return set()
        allow: set[str] = set()
        deny: set[str] = set()
        for row in self.mailbox_permissions.for_trustee(("app", app.app_id)):
            if "FullAccess" in row.access_rights:
                (deny if row.deny else allow).add(row.mailbox)
        return {self.recipients[g].primary_smtp for g in allow - deny
                if g in self.recipients and self.recipients[g].kind == "mailbox"}

    def effective_rbac(self, app: App) -> set[str]:
        """Mailbox addresses in scope of the app's enabled `Application SMTP.SendAsApp` assignments, as configured."""
        if not app.exchange_pointer:
            return set()
        guids: set[str] = set()
        for ra in self.assignments.values():
            if ra.app_id == app.app_id and ra.enabled and ra.role.lower() == RBAC_ROLE_SMTP_SEND_AS.lower():
                guids |= self.assignment_targets(ra)
        return {self.recipients[g].primary_smtp for g in guids
                if g in self.recipients and self.recipients[g].kind == "mailbox"}

    def sync_access(self, app_ids) -> None:
        """Record in the timeline what changed in the given apps' access (None: every app)."""
        t = self.clock.now()
        apps = self.apps.values() if app_ids is None else [self.apps[a] for a in app_ids if a in self.apps]
        for app in apps:
            if app.is_admin:
                continue
            for table, compute, setter in ((self._sendas_now, self.effective_sendas, self.timeline.set_sendas),
                                           (self._fullaccess_now, self.effective_fullaccess,
                                            self.timeline.set_fullaccess),
                                           (self._rbac_now, self.effective_rbac, self.timeline.set_rbac)):
                new = compute(app)
                old = table.get(app.app_id, set())
                for mbx in new - old:
                    setter(t, app.app_id, mbx, True)
                for mbx in old - new:
                    setter(t, app.app_id, mbx, False)
                table[app.app_id] = new
            self.timeline.set_claim(t, app.app_id, self.claim_now(app.app_id))
            self.timeline.set_imap_claim(t, app.app_id, self.imap_claim_now(app.app_id))
        self.sync_mail_access(app_ids)

    # ------------------------------------------------------------------------------------------------ Graph/EWS
    def mail_claims(self, app: App) -> set[str]:
        """The AAP-fenced permissions (model.AAP_PERMISSIONS) consented to the app, each on its own resource."""
        out = set()
        for resource_name in {r for r, _role in AAP_PERMISSIONS.values()}:
            resource = self.resources[resource_name]
            by_id = {r["id"]: r["value"] for r in resource["appRoles"]}
            out |= {by_id[a["appRoleId"]] for a in self.app_role_assignments.get(app.object_id, {}).values()
                    if a["resourceId"] == resource["id"] and a["appRoleId"] in by_id
                    and AAP_PERMISSIONS.get(by_id[a["appRoleId"]], ("",))[0] == resource_name}
        return out

    def mail_rbac(self, app: App) -> dict[str, frozenset[str]]:
        """Per AAP-fenced permission: mailbox addresses in scope of the app's enabled roles serving it."""
        if not app.exchange_pointer:
            return {}
        guids: dict[str, set[str]] = {}
        for ra in self.assignments.values():
            perms = aap_permissions_of_role(ra.role) if ra.app_id == app.app_id and ra.enabled else frozenset()
            for perm in perms:
                guids.setdefault(perm, set()).update(self.assignment_targets(ra))
        return {perm: frozenset(self.recipients[g].primary_smtp for g in gs
                                if g in self.recipients and self.recipients[g].kind == "mailbox")
                for perm, gs in guids.items()}

    def sync_mail_access(self, app_ids) -> None:
        """Record Graph/EWS reach changes (mailaccess.py) of the given apps (None: every app) and of every app
        holding an Application Access Policy (group membership anywhere may move its nested members)."""
        t = self.clock.now()
        record = self.timeline.mail
        if app_ids is None:
            record.universe = frozenset(r.primary_smtp for r in self.recipients.values() if r.kind == "mailbox")
            chosen = [a for a in self.apps.values() if not a.is_admin]
        else:
            wanted = {a for a in app_ids} | {p.app_id for p in self.access_policies}
            chosen = [self.apps[a] for a in sorted(wanted) if a in self.apps and not self.apps[a].is_admin]
        for app in chosen:
            claims, rbac = self.mail_claims(app), self.mail_rbac(app)
            if not claims and not any(rbac.values()) and not record.tracked(app.app_id) and \
                    not aap.policies_of(self, app.app_id):
                continue
            record.record(self.timeline, t, app.app_id, claims=claims,
                          policy=aap.allowed_mailboxes(self, app.app_id), rbac=rbac)

    def can_use_mailbox(self, app_id: str, permission: str, mailbox: str, *, token_has: bool | None = None,
                        token_issued_at: float | None = None, at: float | None = None) -> bool:
        """The Graph/EWS data plane: may the app use `permission` (Mail.Read, full_access_as_app, ...) on
        `mailbox` at `at` (default now) with a token issued at `token_issued_at` (default `at`)? `token_has`:
        whether the token carries the permission; None: what the token service saw at the issue."""
        with self.lock:
            app_id = (app_id or "").strip().lower()
            t = self.clock.now() if at is None else at
            issued = t if token_issued_at is None else token_issued_at
            if issued > t or t >= issued + self.timeline.life(app_id):
                return False
            mbx = self.mailbox_by_address(mailbox)
            if mbx is None:
                return False
            record = self.timeline.mail
            if token_has is None:
                token_has = record.claim_seen_at(self.timeline, app_id, permission, issued)
            return record.can_use(self.timeline, app_id, permission, mbx.primary_smtp, t, token_has=token_has)

    # ------------------------------------------------------------------------------------------------ observers
    # What tools and tests may read of the tenant as a whole (Sandbox.census/access/pairs_seen wrap these).
    def census(self) -> dict:
        with self.lock:
            return {"tenant": self.tenant_name,
                    "mailboxes": sum(1 for r in self.recipients.values() if r.kind == "mailbox"),
                    "apps": sum(1 for a in self.apps.values() if not a.is_admin)}

    def sendas_grants(self) -> set[tuple[str, str]]:
        """(app_id, mailbox) for every effective SendAs grant an app holds now."""
        with self.lock:
            return {(app.app_id, mbx) for app in self.apps.values() for mbx in self.effective_sendas(app)}

    def smtp_reach_grants(self) -> set[tuple[str, str]]:
        """(app_id, mailbox) the loaded tenant let each app send as: SendAs, FullAccess with the SMTP.SendAsApp
        claim (any FullAccess under the union rule), the RBAC role in scope (timeline.original_reach)."""
        from migrator.sandbox.timeline import original_reach

        with self.lock:
            return original_reach(self.timeline)[0]

    def access_now(self, app_ids=None) -> dict[str, AppAccess]:
        """Per app (every non-admin app, or those of `app_ids` that exist): SendAs grants, RBAC scope, claim."""
        with self.lock:
            chosen = ([a for a in self.apps.values() if not a.is_admin] if app_ids is None
                      else [self.apps[a.lower()] for a in app_ids if a.lower() in self.apps])
            return {app.app_id: AppAccess(frozenset(self.effective_sendas(app)), frozenset(self.effective_rbac(app)),
                                          self.claim_now(app.app_id)) for app in chosen}

    def mail_access_now(self, app_ids=None) -> dict[str, dict[str, frozenset[str] | None]]:
        """Per app followed on Graph/EWS (or those of `app_ids`): per AAP-fenced permission, the mailboxes a token
        issued now and the data plane now serve (None: every mailbox), as `can_use_mailbox` answers."""
        with self.lock:
            record, t = self.timeline.mail, self.clock.now()
            apps = sorted({a for a, _p in record.rbac} if app_ids is None else {a.lower() for a in app_ids})
            out: dict[str, dict[str, frozenset[str] | None]] = {}
            for app in apps:
                for perm in sorted(p for a, p in record.rbac if a == app):
                    rbac = record.rbac_effective_at(self.timeline, app, perm, t)
                    if record.claim_seen_at(self.timeline, app, perm, t):
                        policy = record.policy_effective_at(self.timeline, app, t)
                        out.setdefault(app, {})[perm] = None if policy is None else policy | rbac
                    else:
                        out.setdefault(app, {})[perm] = rbac
            return out

    def pairs_seen(self) -> set[tuple[str, str]]:
        """Every (app_id, mailbox) pair the timeline has followed (SendAs, FullAccess or RBAC at some time)."""
        with self.lock:
            return set(self.timeline.sendas) | set(self.timeline.fullaccess) | set(self.timeline.rbac)

    def apps_with_assignments(self) -> set[str]:
        return {ra.app_id for ra in self.assignments.values()}

    # ------------------------------------------------------------------------------------------------ tokens
    def find_client(self, client_id: str) -> App | None:
        """The Entra app a token request names (client_id), or None."""
        return self.apps.get((client_id or "").strip().lower())

    def token_roles(self, app_id: str, audience: str) -> list[str]:
        """App roles consented to the app on the resource of `audience` (the token's `roles` claim)."""
        resource_name = AUDIENCE_RESOURCE.get((audience or "").rstrip("/").lower())
        app = self.apps.get((app_id or "").lower())
        if resource_name is None or app is None:
            return []
        resource = self.resources[resource_name]
        by_id = {r["id"]: r["value"] for r in resource["appRoles"]}
        roles = {by_id[a["appRoleId"]] for a in self.app_role_assignments.get(app.object_id, {}).values()
                 if a["resourceId"] == resource["id"] and a["appRoleId"] in by_id}
        return sorted(roles)

    def issue_token(self, app_id: str, audience: str) -> dict:
        """Claims for a new access token (the token service signs them): records the issue in the timeline."""
        with self.lock:
            app = self.apps[(app_id or "").lower()]
            now = self.clock.now()
            roles = self.token_roles(app.app_id, audience)
            if not app.is_admin and AUDIENCE_RESOURCE.get(audience.rstrip("/").lower()) == EXCHANGE_RESOURCE_NAME:
                # The token service sees an SMTP.SendAsApp grant or removal only once Graph has replicated it.
                seen = self.timeline.claim_seen_at(app.app_id, now)
                roles = sorted((set(roles) - {SMTP_SEND_AS_APP}) | ({SMTP_SEND_AS_APP} if seen else set()))
            resource_name = AUDIENCE_RESOURCE.get(audience.rstrip("/").lower())
            if not app.is_admin:  # AAP-fenced permissions: also as the token service has seen them replicated
                fenced = {p for p, (r, _role) in AAP_PERMISSIONS.items() if r == resource_name}
                seen_perms = {p for p in fenced if (app.app_id, p) in self.timeline.mail.claim
                              and self.timeline.mail.claim_seen_at(self.timeline, app.app_id, p, now)}
                tracked = {p for p in fenced if (app.app_id, p) in self.timeline.mail.claim}
                roles = sorted((set(roles) - tracked) | seen_perms)
            # The admin's tokens live apart (settings.admin_token_lifetime): it sends no mail, so the timeline
            # checker's lifetimes (token_lifetime, or a token lifetime policy) concern the apps' tokens only.
            life = self.settings.admin_token_lifetime if app.is_admin else self.timeline.life(app.app_id)
            claims = {"aud": audience, "tid": self.tenant_id, "appid": app.app_id, "oid": app.object_id,
                      "roles": roles, "iat": int(now), "nbf": int(now), "exp": int(now + life)}
            self.timeline.note(now, "token", app_id=app.app_id, audience=audience,
                               claim=SMTP_SEND_AS_APP in roles and audience.rstrip("/") == EXCHANGE_AUDIENCE)
            return claims

    def caller_for(self, app_id: str, audience: str = EXCHANGE_AUDIENCE) -> Caller:
        """The Caller a valid token of this app would make (for tests and the server)."""
        app = self.apps[(app_id or "").lower()]
        return Caller(app.app_id, frozenset(self.token_roles(app.app_id, audience)),
                      frozenset(app.directory_roles))

    def admin_caller(self, audience: str = EXCHANGE_AUDIENCE) -> Caller:
        return self.caller_for(self.admin_app_id, audience)

    # ------------------------------------------------------------------------------------------------ API
    def invoke(self, cmdlet: str, params: dict | None = None, *, caller: Caller) -> CmdletResult:
        """Run one Exchange cmdlet; rows are JSON-ready dicts with Microsoft's field names."""
        from migrator.sandbox.cmdlets import run_cmdlet

        with self.lock:
            self.call_counts[cmdlet] = self.call_counts.get(cmdlet, 0) + 1
            return run_cmdlet(self, cmdlet, dict(params or {}), caller)

    def can_send_as(self, app_id: str, mailbox: str, *, token_claim: bool | None = None,
                    token_issued_at: float | None = None, at: float | None = None) -> bool:
        """The data plane: could the app authenticate as `mailbox` (SMTP AUTH XOAUTH2) at `at` (default now)?"""
        from migrator.sandbox.dataplane import can_send_as

        with self.lock:
            return can_send_as(self, app_id, mailbox, token_claim=token_claim, token_issued_at=token_issued_at,
                               at=at)

    def check(self, original_grants=None, *, original_imap=None, until: float | None = None):
        """The timeline checker (timeline.check); None: the original reach is what the loaded tenant granted."""
        from migrator.sandbox.timeline import check

        return check(self.timeline, original_grants, original_imap=original_imap, until=until)

    # Graph: thin wrappers so the server needs only the state object.
    def graph(self, op: str, *args, caller: Caller, **kwargs):
        from migrator.sandbox import graph_ops

        with self.lock:
            fn = getattr(graph_ops, op, None)
            if fn is None or op.startswith("_"):
                raise GraphError(400, "Request_BadRequest", f"Unsupported operation {op!r}")
            return fn(self, *args, caller=caller, **kwargs)


def graph_assignment_id(principal_id: str, resource_id: str, role_id: str) -> str:
    """Graph's appRoleAssignment ids are base64url strings; ours are stable for the same triple."""
    raw = hashlib.sha256(f"{principal_id}|{resource_id}|{role_id}".encode()).digest()[:32]
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


__all__ = [
    "AdministrativeUnit",
    "App",
    "AppAccess",
    "Caller",
    "CmdletError",
    "CmdletResult",
    "GraphError",
    "ManagementScope",
    "PermissionRow",
    "PermissionTable",
    "Recipient",
    "RoleAssignment",
    "TenantState",
    "det_uuid",
    "sid_for",
]
