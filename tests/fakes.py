"""An in-memory tenant for the executor's unit tests, with the ExchangeClient/GraphClient methods the executor uses,
fault injection, a manual clock, and its own invariant checker (access gaps and over-grants), so invariants can be
tested without HTTP. Integration tests use the real clients against the sandbox instead.

Faults: `tenant.faults` is a list of Fault(method, nth, mode): on the nth call of `method` (1-based; 0 = every
call), mode "fail" raises a transient ApiError before applying, "drop" applies the write and then raises (the answer
was lost), "crash" applies the write and raises Crash (a BaseException standing for SIGKILL between the write and
the journal record). `tenant.crash_after_writes = n` crashes after the nth applied write.
"""

from __future__ import annotations

import itertools
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field

from migrator.exchange.access import writes
from migrator.exchange.errors import AlreadyExists, ApiError, MemberAlreadyExists, MemberNotFound, NotFound
from migrator.exchange.interface import ExchangeApi, GraphApi
from migrator.model import EXCHANGE_ONLINE_APP_ID, RBAC_ROLE_SMTP_SEND_AS
from migrator.planner import opath
from migrator.planner.plan import Plan, PlanAssignment, PlanBatch, PlanGrant, PlanGroup, PlanScope, write_plan

DN_SUFFIX = "OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,DC=NAMPR03A001,DC=prod,DC=outlook,DC=com"
EXO_SP_ID = "eeeeeeee-0000-0000-0000-000000000001"
SMTP_ROLE_ID = "eeeeeeee-0000-0000-0000-0000000000aa"


class Crash(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the executor catches it."""


class ManualClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


@dataclass
class Fault:
    method: str
    nth: int = 1
    mode: str = "fail"  # fail | drop | crash


@dataclass
class FakeGroup:
    name: str
    alias: str
    address: str
    dn: str
    guid: str
    members: set = field(default_factory=set)
    hidden: bool = False
    created_at: float = 0.0

    def row(self) -> dict:
        return {"Name": self.name, "Alias": self.alias, "PrimarySmtpAddress": self.address,
                "DistinguishedName": self.dn, "Guid": self.guid, "RecipientTypeDetails": "MailUniversalSecurityGroup",
                "HiddenFromAddressListsEnabled": self.hidden, "MemberJoinRestriction": "Closed",
                "MemberDepartRestriction": "Closed"}


# The writes, from the marks on the interface (never a second list kept by hand); remove_service_principal is the
# fake's own name for invoke("Remove-ServicePrincipal").
WRITES = set(writes(ExchangeApi)) | set(writes(GraphApi)) | {"remove_service_principal"}


class FakeTenant:
    def __init__(self, *, clock: ManualClock | None = None, propagation_delay: float = 100.0,
                 token_lifetime: float = 50.0, replication_delay: float = 0.0, claim_rule: str = "documented",
                 trustee_display: str = "display_name") -> None:
        self.clock = clock or ManualClock()
        self.P, self.L, self.R = propagation_delay, token_lifetime, replication_delay
        self.claim_rule, self.trustee_display = claim_rule, trustee_display
        self.mailboxes: dict[str, dict] = {}
        self.sps: dict[str, dict] = {}  # object_id -> {app_id, display_name}
        self.pointers: set[str] = set()
        self.entra: dict[str, list[dict]] = {}  # sp object id -> assignments
        self.sendas: set[tuple[str, str]] = set()  # (mailbox, sp object id)
        self.fullaccess: set[tuple[str, str]] = set()
        self.groups: dict[str, FakeGroup] = {}  # guid -> group
        self.scopes: dict[str, dict] = {}
        self.assignments: dict[str, dict] = {}
        self.access_policies: list[dict] = []  # Get-ApplicationAccessPolicy rows (no evaluation: sandbox/aap.py does)
        self.faults: list[Fault] = []
        self.crash_after_writes: int | None = None
        self.calls: Counter = Counter()
        self.writes = 0
        self.log: list[tuple[str, tuple]] = []
        self.claim_until: dict[str, float] = {}
        self.claimless_until: dict[str, float] = {}
        self.rbac_history: list[tuple[float, frozenset]] = [(-1e18, frozenset())]
        self.original: set[tuple[str, str]] = set()  # (sp object id, mailbox) pairs migrated: must never gap
        self.allowed: set[tuple[str, str]] = set()  # pairs the app could send as before (over-grant reference)
        self.gaps: list[str] = []
        self.overgrants: list[str] = []
        self._seq = itertools.count(1)

    # ---- fixture building ------------------------------------------------------------------------------------
    def add_mailbox(self, address: str) -> None:
        name = address.split("@")[0]
        self.mailboxes[address] = {"PrimarySmtpAddress": address, "Name": name, "Alias": name,
                                   "Identity": name, "Guid": str(uuid.uuid4()), "DistinguishedName":
                                   f"CN={name},{DN_SUFFIX}"}

    def add_app(self, app_id: str, name: str, *, claim: bool = True, pointer: bool = True) -> str:
        oid = str(uuid.UUID(int=len(self.sps) + 0x1000))
        self.sps[oid] = {"app_id": app_id, "display_name": name}
        if pointer:
            self.pointers.add(oid)
        self.entra[oid] = [{"id": str(uuid.uuid4()), "principalId": oid, "resourceId": EXO_SP_ID,
                            "appRoleId": SMTP_ROLE_ID}] if claim else []
        self.claim_until[oid] = float("inf") if claim else -1e18
        self.claimless_until[oid] = -1e18 if claim else float("inf")
        return oid

    def grant(self, mailbox: str, oid: str) -> None:
        self.sendas.add((mailbox, oid))
        self.original.add((oid, mailbox))
        self.allowed.add((oid, mailbox))

    def add_group(self, name: str, members: set[str]) -> FakeGroup:
        guid = str(uuid.uuid4())
        g = FakeGroup(name, name.lower().replace(" ", "-"), f"{name.lower().replace(' ', '-')}@contoso.com",
                      f"CN={name},{DN_SUFFIX}", guid, set(members), created_at=-1e18)
        self.groups[guid] = g
        return g

    def oid_of(self, app_id: str) -> str:
        return next(o for o, sp in self.sps.items() if sp["app_id"] == app_id)

    # ---- the call gate: counting, faults, crash points, invariant check --------------------------------------
    def call(self, method: str, fn, *args):
        if not args:  # log the public method's own arguments (the caller's, or its caller's for FakeExchange._c)
            frame = sys._getframe(1)
            if frame.f_code.co_name == "_c":
                frame = frame.f_back
            args = tuple(v for k, v in frame.f_locals.items() if k not in ("self", "f") and not callable(v))
            args = tuple(tuple(sorted(v)) if isinstance(v, (list, set)) else v for v in args)
        self.calls[method] += 1
        n = self.calls[method]
        fault = next((f for f in self.faults if f.method == method and f.nth in (0, n)), None)
        if fault and fault.mode == "fail":
            raise ApiError("transient failure (injected)", status=503, operation=method)
        result = fn()
        if method in WRITES:
            self.writes += 1
            self.log.append((method, args))
            self.check()
            if fault and fault.mode == "drop":
                raise ApiError("answer lost (injected)", status=504, operation=method)
            if (fault and fault.mode == "crash") or (self.crash_after_writes is not None
                                                     and self.writes >= self.crash_after_writes):
                self.crash_after_writes = None
                raise Crash(f"crash after {method}")
        return result

    # ---- RBAC model --------------------------------------------------------------------------------------------
    def in_scope_now(self) -> frozenset:
        by_dn = {g.dn: g for g in self.groups.values()}
        pairs = set()
        for a in self.assignments.values():
            scope = self.scopes.get(a["scope"])
            if scope is None:
                continue
            for _s, _e, dn in opath._literals(scope["filter"]):
                g = by_dn.get(dn)
                if g is not None:
                    pairs |= {(a["app"], m) for m in g.members}
        return frozenset(pairs)

    def _rbac_changed(self) -> None:
        self.rbac_history.append((self.clock.now(), self.in_scope_now()))

    def rbac_effective(self, pair) -> bool:
        """In scope in every configuration of the last P seconds (the data plane lags)."""
        t = self.clock.now()
        start = max((i for i, (ts, _) in enumerate(self.rbac_history) if ts <= t - self.P), default=0)
        return all(pair in cfg for _, cfg in self.rbac_history[start:])

    def check(self) -> None:
        t = self.clock.now()
        configured = self.in_scope_now()
        for oid, mailbox in sorted(self.original):
            legacy = (mailbox, oid) in self.sendas
            rbac = self.rbac_effective((oid, mailbox))
            claim = t < self.claim_until[oid]
            claimless = t < self.claimless_until[oid]
            if self.claim_rule == "union":
                ok = legacy or rbac if (claim or claimless) else True
            else:
                ok = (not claim or legacy) and (not claimless or rbac)
            if not ok:
                self.gaps.append(f"t={t}: {oid} cannot send as {mailbox} (legacy={legacy}, rbac={rbac}, "
                                 f"claim={claim}, claimless={claimless}) after {self.log[-1][0] if self.log else '-'}")
        for oid, mailbox in sorted(configured | {(o, m) for m, o in self.sendas}):
            if (oid, mailbox) not in self.allowed:
                self.overgrants.append(f"t={t}: {oid} in scope for {mailbox}")

    # ---- state helpers --------------------------------------------------------------------------------------
    def visible(self, g: FakeGroup) -> bool:
        return self.clock.now() >= g.created_at + self.R

    def find_group(self, identity: str, *, visible_only: bool = True) -> FakeGroup | None:
        ident = identity.lower()
        for g in self.groups.values():
            if ident in (g.name.lower(), g.alias.lower(), g.address.lower(), g.dn.lower(), g.guid.lower()):
                return g if (self.visible(g) or not visible_only) else None
        return None

    def mailbox_key(self, identity: str) -> str:
        ident = identity.lower()
        for address, mb in self.mailboxes.items():
            if ident in (address, mb["Name"].lower(), mb["Guid"].lower()):
                return address
        raise NotFound(f"mailbox {identity} not found", operation="resolve")

    def sp_key(self, identity: str) -> str:
        ident = identity.lower()
        for oid, sp in self.sps.items():
            if ident in (oid, sp["app_id"], sp["display_name"].lower()):
                return oid
        raise NotFound(f"trustee {identity} not found", operation="resolve")

    def trustee_text(self, oid: str) -> str:
        return self.sps[oid]["display_name"] if self.trustee_display == "display_name" else oid

    def snapshot(self) -> dict:
        return {
            "sendas": sorted(self.sendas), "fullaccess": sorted(self.fullaccess), "pointers": sorted(self.pointers),
            "entra": {o: sorted((a["resourceId"], a["appRoleId"]) for a in rows) for o, rows in self.entra.items()},
            "groups": sorted((g.name, tuple(sorted(g.members))) for g in self.groups.values()),
            "scopes": sorted(self.scopes), "assignments": sorted(self.assignments),
        }


class FakeExchange(ExchangeApi):
    """ExchangeApi's raw methods (the same signatures as ExchangeClient's, a test checks) over a FakeTenant; the
    typed reads the steps call come from ExchangeApi itself, so the fake and the real client parse alike."""

    def __init__(self, tenant: FakeTenant) -> None:
        self.t = tenant

    def _c(self, method, fn, *args):
        return self.t.call(method, fn, *args)

    def get_mailboxes(self, properties=None):
        return self._c("get_mailboxes", lambda: [dict(m) for m in self.t.mailboxes.values()])

    def get_service_principal(self, identity):
        assert identity, "empty identity"

        def f():
            try:
                oid = self.t.sp_key(identity)
            except NotFound:
                return None
            if oid not in self.t.pointers:
                return None
            sp = self.t.sps[oid]
            return {"ObjectId": oid, "AppId": sp["app_id"], "DisplayName": sp["display_name"], "Identity": oid,
                    "Name": oid}
        return self._c("get_service_principal", f)

    def new_service_principal(self, app_id, object_id, display_name=""):
        def f():
            if object_id in self.t.pointers:
                raise AlreadyExists("exists", operation="New-ServicePrincipal")
            self.t.pointers.add(object_id)
            return {"ObjectId": object_id}
        return self._c("new_service_principal", f)

    def remove_service_principal(self, identity):
        def f():
            oid = self.t.sp_key(identity)
            if oid not in self.t.pointers:
                raise NotFound("no pointer", operation="Remove-ServicePrincipal")
            self.t.pointers.discard(oid)
        return self._c("remove_service_principal", f)

    def invoke(self, cmdlet, params=None, select=None, *, scan=False):
        if cmdlet == "Remove-ServicePrincipal":
            return self.remove_service_principal(params["Identity"])
        raise NotImplementedError(cmdlet)

    def scan_recipient_permissions(self, select=None):
        def f():
            rows = []
            for mailbox, oid in sorted(self.t.sendas):
                rows.append({"Identity": self.t.mailboxes[mailbox]["Name"], "Trustee": self.t.trustee_text(oid),
                             "AccessControlType": "Allow", "AccessRights": ["SendAs"], "IsInherited": False,
                             "InheritanceType": "None"})
            rows.append({"Identity": "x", "Trustee": "NT AUTHORITY\\SELF", "AccessControlType": "Allow",
                         "AccessRights": ["SendAs"], "IsInherited": False, "InheritanceType": "None"})
            return rows
        return self._c("scan_recipient_permissions", f)

    def get_recipient_permissions(self, mailbox, trustee=None):
        assert mailbox
        return [r for r in self.scan_recipient_permissions()
                if r["Identity"] == self.t.mailboxes[self.t.mailbox_key(mailbox)]["Name"]]

    def add_recipient_permission(self, mailbox, trustee):
        def f():
            self.t.sendas.add((self.t.mailbox_key(mailbox), self.t.sp_key(trustee)))
        return self._c("add_recipient_permission", f)

    def remove_recipient_permission(self, mailbox, trustee):
        def f():
            key = (self.t.mailbox_key(mailbox), self.t.sp_key(trustee))
            if key not in self.t.sendas:
                raise NotFound("no such permission", operation="Remove-RecipientPermission")
            self.t.sendas.discard(key)
        return self._c("remove_recipient_permission", f)

    def get_mailbox_permissions(self, mailbox, user=None):
        def f():
            mb = self.t.mailbox_key(mailbox)
            return [{"Identity": mb, "User": self.t.trustee_text(o), "AccessRights": ["FullAccess"],
                     "IsInherited": False, "Deny": False} for m, o in sorted(self.t.fullaccess) if m == mb]
        return self._c("get_mailbox_permissions", f)

    def add_mailbox_permission(self, mailbox, user):
        def f():
            self.t.fullaccess.add((self.t.mailbox_key(mailbox), self.t.sp_key(user)))
        return self._c("add_mailbox_permission", f)

    def remove_mailbox_permission(self, mailbox, user):
        def f():
            key = (self.t.mailbox_key(mailbox), self.t.sp_key(user))
            if key not in self.t.fullaccess:
                raise NotFound("no such permission", operation="Remove-MailboxPermission")
            self.t.fullaccess.discard(key)
        return self._c("remove_mailbox_permission", f)

    def get_distribution_group(self, identity):
        assert identity, "empty identity"

        def f():
            g = self.t.find_group(identity)
            return g.row() if g else None
        return self._c("get_distribution_group", f)

    def new_distribution_group(self, name, alias, primary_smtp=None):
        def f():
            if self.t.find_group(name, visible_only=False) or self.t.find_group(alias, visible_only=False):
                raise AlreadyExists(f"{name} exists", operation="New-DistributionGroup")
            guid = str(uuid.uuid4())
            g = FakeGroup(name, alias, primary_smtp or f"{alias}@contoso.com", f"CN={name},{DN_SUFFIX}", guid,
                          created_at=self.t.clock.now())
            self.t.groups[guid] = g
            return g.row()
        return self._c("new_distribution_group", f)

    def _group(self, identity) -> FakeGroup:
        g = self.t.find_group(identity)
        if g is None:
            raise NotFound(f"group {identity} not found", operation="group")
        return g

    def set_distribution_group(self, identity, **params):
        def f():
            g = self._group(identity)
            if "HiddenFromAddressListsEnabled" in params:
                g.hidden = bool(params["HiddenFromAddressListsEnabled"])
        return self._c("set_distribution_group", f)

    def remove_distribution_group(self, identity):
        def f():
            g = self._group(identity)
            del self.t.groups[g.guid]
            self.t._rbac_changed()
        return self._c("remove_distribution_group", f)

    def get_group_members(self, identity, select=None):
        assert identity

        def f():
            return [{"PrimarySmtpAddress": m, "Name": m.split("@")[0]} for m in sorted(self._group(identity).members)]
        return self._c("get_group_members", f)

    def update_group_members(self, identity, members):
        assert len(members) <= 5000

        def f():
            self._group(identity).members = {self.t.mailbox_key(m) for m in members}
            self.t._rbac_changed()
        return self._c("update_group_members", f)

    def add_group_member(self, identity, member):
        def f():
            g = self._group(identity)
            m = self.t.mailbox_key(member)
            if m in g.members:
                raise MemberAlreadyExists("already a member", operation="Add-DistributionGroupMember",
                                          exception_type="MemberAlreadyExistsException")
            g.members.add(m)
            self.t._rbac_changed()
        return self._c("add_group_member", f)

    def remove_group_member(self, identity, member):
        def f():
            g, m = self._group(identity), self.t.mailbox_key(member)
            if m not in g.members:
                raise MemberNotFound("not a member", operation="Remove-DistributionGroupMember",
                                     exception_type="MemberNotFoundException")
            g.members.discard(m)
            self.t._rbac_changed()
        return self._c("remove_group_member", f)

    def get_management_scope(self, name):
        def f():
            s = self.t.scopes.get(name)
            return {"Name": name, "RecipientFilter": f"({s['filter']})", "Exclusive": False} if s else None
        return self._c("get_management_scope", f)

    def new_management_scope(self, name, recipient_filter):
        def f():
            if name in self.t.scopes:
                raise AlreadyExists("scope exists", operation="New-ManagementScope")
            self.t.scopes[name] = {"filter": recipient_filter}
            self.t._rbac_changed()
            return {"Name": name}
        return self._c("new_management_scope", f)

    def remove_management_scope(self, name):
        def f():
            if name not in self.t.scopes:
                raise NotFound("no scope", operation="Remove-ManagementScope")
            if any(a["scope"] == name for a in self.t.assignments.values()):
                raise ApiError("scope in use", status=400, operation="Remove-ManagementScope")
            del self.t.scopes[name]
            self.t._rbac_changed()
        return self._c("remove_management_scope", f)

    def get_role_assignments(self, role=RBAC_ROLE_SMTP_SEND_AS):
        def f():
            return [{"Name": n, "Role": a["role"], "RoleAssigneeName": a["app"], "RoleAssigneeType": "ServicePrincipal",
                     "CustomResourceScope": a["scope"]} for n, a in sorted(self.t.assignments.items())
                    if a["role"] == role]
        return self._c("get_role_assignments", f)

    def scan_role_assignments(self):
        def f():
            return [{"Name": n, "Role": a["role"], "RoleAssigneeName": a["app"], "RoleAssigneeType": "ServicePrincipal",
                     "CustomResourceScope": a["scope"]} for n, a in sorted(self.t.assignments.items())]
        return self._c("scan_role_assignments", f)

    def new_role_assignment(self, name, role, app, custom_resource_scope):
        def f():
            if name in self.t.assignments:
                raise AlreadyExists("assignment exists", operation="New-ManagementRoleAssignment")
            if custom_resource_scope not in self.t.scopes:
                raise NotFound("no scope", operation="New-ManagementRoleAssignment")
            self.t.assignments[name] = {"role": role, "app": self.t.sp_key(app), "scope": custom_resource_scope}
            self.t._rbac_changed()
        return self._c("new_role_assignment", f)

    def remove_role_assignment(self, name):
        def f():
            if name not in self.t.assignments:
                raise NotFound("no assignment", operation="Remove-ManagementRoleAssignment")
            del self.t.assignments[name]
            self.t._rbac_changed()
        return self._c("remove_role_assignment", f)

    def get_application_access_policies(self):
        return self._c("get_application_access_policies", lambda: [dict(p) for p in self.t.access_policies])

    def new_application_access_policy(self, app_id, scope_group, access_right, description=" "):
        def f():
            identity = f"tenant\\{app_id}:sid-{scope_group};ext-{scope_group}"
            if any(p["Identity"].lower() == identity.lower() for p in self.t.access_policies):
                raise AlreadyExists("policy exists", operation="New-ApplicationAccessPolicy")
            row = {"Identity": identity, "AppId": app_id, "ScopeName": scope_group, "AccessRight": access_right,
                   "Description": description}
            self.t.access_policies.append(row)
            return dict(row)
        return self._c("new_application_access_policy", f)

    def remove_application_access_policy(self, identity):
        def f():
            left = [p for p in self.t.access_policies if p["Identity"].lower() != identity.lower()]
            if len(left) == len(self.t.access_policies):
                raise NotFound("no policy", operation="Remove-ApplicationAccessPolicy")
            self.t.access_policies = left
        return self._c("remove_application_access_policy", f)

    def test_sp_authorization(self, sp_identity, resource=None):
        def f():
            oid = self.t.sp_key(sp_identity)
            mb = self.t.mailbox_key(resource)
            pairs = self.t.in_scope_now()
            return [{"RoleName": a["role"], "InScope": (oid, mb) in pairs, "ScopeType": "CustomRecipientScope"}
                    for a in self.t.assignments.values() if a["app"] == oid]
        return self._c("test_sp_authorization", f)


class FakeGraph(GraphApi):
    """GraphApi's raw methods over a FakeTenant (typed reads from GraphApi)."""

    def __init__(self, tenant: FakeTenant) -> None:
        self.t = tenant

    def get_service_principal_by_app_id(self, app_id):
        def f():
            if app_id == EXCHANGE_ONLINE_APP_ID:
                return {"id": EXO_SP_ID, "appId": app_id, "appRoles": [{"id": SMTP_ROLE_ID, "value": "SMTP.SendAsApp"}]}
            for oid, sp in self.t.sps.items():
                if sp["app_id"] == app_id:
                    return {"id": oid, "appId": app_id, "displayName": sp["display_name"]}
            return None
        return self.t.call("get_service_principal_by_app_id", f)

    def get_resource_service_principal(self, app_id=EXCHANGE_ONLINE_APP_ID):
        return self.get_service_principal_by_app_id(app_id)

    def list_app_role_assignments(self, sp_id):
        return self.t.call("list_app_role_assignments", lambda: [dict(a) for a in self.t.entra.get(sp_id, [])])

    def grant_app_role(self, sp_id, resource_id, app_role_id):
        def f():
            row = {"id": str(uuid.uuid4()), "principalId": sp_id, "resourceId": resource_id, "appRoleId": app_role_id}
            self.t.entra.setdefault(sp_id, []).append(row)
            self.t.claim_until[sp_id] = float("inf")
            self.t.claimless_until[sp_id] = self.t.clock.now() + self.t.L
            return row
        return self.t.call("grant_app_role", f)

    def list_token_lifetime_policies(self):
        return self.t.call("list_token_lifetime_policies", lambda: [dict(p) for p in getattr(self.t, "policies", [])])

    def token_lifetime_policy_applies_to(self, policy_id):
        def f():
            return [{"id": oid} for p in getattr(self.t, "policies", []) if p["id"] == policy_id
                    for oid in p.get("applies_to", [])]
        return self.t.call("token_lifetime_policy_applies_to", f)

    def get_application_by_app_id(self, app_id):
        def f():  # every fake app registration still requests SMTP.SendAsApp (as after a real cut-over)
            return {"id": f"reg-{app_id}", "appId": app_id, "requiredResourceAccess": [
                {"resourceAppId": EXCHANGE_ONLINE_APP_ID, "resourceAccess": [{"id": SMTP_ROLE_ID, "type": "Role"}]}]}
        return self.t.call("get_application_by_app_id", f)

    def delete_app_role_assignment(self, sp_id, assignment_id):
        def f():
            rows = self.t.entra.get(sp_id, [])
            if not any(r["id"] == assignment_id for r in rows):
                raise NotFound("no assignment", operation="DELETE appRoleAssignment")
            self.t.entra[sp_id] = [r for r in rows if r["id"] != assignment_id]
            if not any(r["appRoleId"] == SMTP_ROLE_ID for r in self.t.entra[sp_id]):
                self.t.claim_until[sp_id] = self.t.clock.now() + self.t.L
                self.t.claimless_until[sp_id] = float("inf")
        return self.t.call("delete_app_role_assignment", f)


# ---- a tenant and a matching plan ---------------------------------------------------------------------------------

def make_world(tmp_path, apps: dict[str, set[str]], batches: list[list[str]], *, shared: dict[str, str] | None = None,
               reuse: dict[str, str] | None = None, **tenant_kw):
    """A fake tenant where each app holds SendAs on its mailboxes, and an exact per-app plan for it.

    `reuse` maps an app to the name of an existing group (created in the tenant with exactly its mailboxes) that
    the plan reuses. Returns (tenant, plan_path).
    """
    tenant = FakeTenant(**tenant_kw)
    reuse = reuse or {}
    all_mb = sorted({m for ms in apps.values() for m in ms} | {f"outsider{i}@contoso.com" for i in range(3)})
    for m in all_mb:
        tenant.add_mailbox(m)
    grants, groups, scopes, assignments = [], [], [], []
    batch_of = {a: i + 1 for i, b in enumerate(batches) for a in b}
    for i, (app, mailboxes) in enumerate(sorted(apps.items()), start=1):
        oid = tenant.add_app(app, f"App {i}")
        for m in sorted(mailboxes):
            tenant.grant(m, oid)
            grants.append(PlanGrant(app, f"App {i}", m, "SendAs", "migrate", "", batch_of[app]))
        key, skey = f"G{i:04d}", f"S{i:04d}"
        if app in reuse:
            g = tenant.add_group(reuse[app], set(mailboxes))
            groups.append(PlanGroup(key, g.name, "reuse", g.dn, frozenset(mailboxes), g.alias, g.address,
                                    batch_of[app], 1))
            flt = opath.member_of(g.dn)
        else:
            groups.append(PlanGroup(key, f"RBAC SendAs App {i}", "new", "", frozenset(mailboxes),
                                    f"rbac-sendas-app{i}", f"rbac-sendas-app{i}@contoso.com", batch_of[app], 1))
            flt = opath.member_of_new(key)
        scopes.append(PlanScope(skey, f"RBAC Scope App {i}", flt, (key,), "group", (), batch_of[app]))
        assignments.append(PlanAssignment(f"A{i:05d}", app, f"App {i}", RBAC_ROLE_SMTP_SEND_AS, skey, batch_of[app],
                                          f"RBAC Assignment App {i}"))
    plan_batches = tuple(PlanBatch(i + 1, tuple(sorted(b)), sum(len(apps[a]) for a in b))
                         for i, b in enumerate(batches))
    plan = Plan({"format": 1, "role": RBAC_ROLE_SMTP_SEND_AS}, tuple(grants), tuple(groups), tuple(scopes),
                tuple(assignments), plan_batches)
    path = write_plan(plan, tmp_path / "plan")
    return tenant, path
