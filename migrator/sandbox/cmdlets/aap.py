"""Application Access Policies: Get-/New-/Set-/Remove-/Test-ApplicationAccessPolicy (sandbox/aap.py holds the model
and Microsoft's evaluation rules; docs/exchange.md §8).

Identity of a policy: `<tenant id>\\<app id>:<scope SID>;<scope ExternalDirectoryObjectId>`, as Exchange shows it.
Get- lags behind New-/Set-/Remove- like the other admin reads (readlag.py, kind "policy"); Test- and the data plane
follow the live configuration.
New- takes several AppIds and makes one policy per app. Set- changes the Description only. Test- reads the
configuration at once (the Graph/EWS data plane sees policy changes `access_policy_delay` later).
Errors: an unknown scope or policy is ManagementObjectNotFoundException; a scope that is not a security principal
(distribution list, Microsoft 365 group, shared/room mailbox), the same app and scope twice, and a tenant out of
policy space ("The total size of App Access Policies exceeded the limit.") are refused. The exception types and
texts of the last three are the sandbox's choice (UNVERIFIED).
"""

from __future__ import annotations

import re

from migrator.sandbox import aap
from migrator.sandbox.api import Caller, CmdletError, CmdletResult
from migrator.sandbox.cmdlets.base import Params, _given, _not_found, _one, cmdlet
from migrator.sandbox.state import TenantState, sid_for

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Policies share a fixed amount of space (Microsoft: about 300 with a one-space description): the sandbox charges
# POLICY_COST plus the description's length per policy against POLICY_SPACE, so 300 one-character descriptions fit
# exactly and longer descriptions fit fewer.
POLICY_COST = 100
POLICY_SPACE = aap.MAX_POLICIES * (POLICY_COST + 1)
SPACE_EXCEEDED = "The total size of App Access Policies exceeded the limit."


def policy_identity(state: TenantState, p: aap.AccessPolicy) -> str:
    return f"{state.tenant_id}\\{p.app_id}:{p.scope_sid};{p.scope_external_id}"


def policy_row(state: TenantState, p: aap.AccessPolicy) -> dict:
    group = state.recipients.get(p.scope)
    name = group.name if group is not None else p.scope_name
    return {"ScopeName": name, "ScopeIdentity": name, "Identity": policy_identity(state, p), "AppId": p.app_id,
            "ScopeIdentityRaw": f"{p.scope_sid};{p.scope_external_id}", "Description": p.description,
            "AccessRight": p.access_right, "ShardType": "All", "IsValid": group is not None,
            "ObjectState": "Unchanged"}


def _space_used(state: TenantState) -> int:
    return sum(POLICY_COST + max(len(p.description), 1) for p in state.access_policies)


def _find(state: TenantState, identity: str) -> list[aap.AccessPolicy]:
    key = identity.strip().lower()
    return [p for p in state.access_policies if policy_identity(state, p).lower() == key]


def _one_policy(state: TenantState, identity: str | None, cmdlet_name: str) -> aap.AccessPolicy:
    hits = _find(state, identity or "") if _given(identity) else []
    if len(hits) != 1:
        raise _not_found(state, identity or "", cmdlet_name)
    return hits[0]


def _app_ids(p: Params, name: str = "AppId") -> list[str]:
    values = [v.strip().lower() for raw in p.list(name) for v in raw.split(",") if v.strip()]
    if not values:
        raise CmdletError("ParameterBindingException", "Cannot process command because of one or more missing "
                          f"mandatory parameters: {name}.", cmdlet=p.cmdlet)
    for v in values:
        if not _GUID.match(v):
            raise CmdletError("ParameterBindingException", f"Cannot bind parameter '{name}'. \"{v}\" is not a valid "
                              "application id (a GUID).", cmdlet=p.cmdlet)
    return list(dict.fromkeys(values))


def _changed(state: TenantState, app_ids) -> None:
    state.sync_mail_access(list(app_ids))


@cmdlet("Get-ApplicationAccessPolicy", ("Identity",))
def get_application_access_policy(state: TenantState, p: Params, caller: Caller):
    # A policy created, changed or removed lately shows as it was to a lagging read (readlag.py): kind "policy",
    # key its Identity in lower case, snapshot its row then (None: it did not exist).
    rows_by_key = {policy_identity(state, pol).lower(): policy_row(state, pol) for pol in state.access_policies}
    for key, before in state.read_lag.stale_of("policy").items():
        if before is None:
            rows_by_key.pop(key, None)
        else:
            rows_by_key[key] = dict(before)
    rows = list(rows_by_key.values())
    identity = p.str("Identity")
    if _given(identity):
        key = identity.strip().lower()
        hit = [r for r in rows if r["Identity"].lower() == key]
        if hit:  # unknown identity: EVERY policy (the hazard, docs/exchange.md §3)
            rows = hit
    return CmdletResult(sorted(rows, key=lambda r: r["Identity"]))


@cmdlet("New-ApplicationAccessPolicy", ("AccessRight", "AppId", "PolicyScopeGroupId", "Description"), write=True)
def new_application_access_policy(state: TenantState, p: Params, caller: Caller):
    right_text = p.str("AccessRight", required=True).strip()
    right = next((r for r in aap.ACCESS_RIGHTS if r.lower() == right_text.lower()), None)
    if right is None:
        raise CmdletError("ParameterBindingException", f"Cannot bind parameter 'AccessRight'. Cannot convert value "
                          f"\"{right_text}\" to type \"Microsoft.Exchange.Data.ApplicationAccessPolicyRight\". "
                          f"Valid values: {', '.join(aap.ACCESS_RIGHTS)}.", cmdlet=p.cmdlet)
    app_ids = _app_ids(p)
    scope = _one(state, p.str("PolicyScopeGroupId", required=True), p.cmdlet)
    if not aap.scope_type_ok(scope):
        raise CmdletError("InvalidOperationException", f"The recipient '{scope.name}' "
                          f"({scope.recipient_type_details}) can't be used as the policy scope: it isn't a security "
                          "principal. Use a mail-enabled security group or a user mailbox.", cmdlet=p.cmdlet)
    description = p.str("Description") or ""
    for app_id in app_ids:
        if any(q.app_id == app_id and q.scope == scope.guid for q in state.access_policies):
            raise CmdletError("ADObjectAlreadyExistsException", f"An application access policy for app {app_id} "
                              f"and scope '{scope.name}' already exists.", cmdlet=p.cmdlet)
    if _space_used(state) + len(app_ids) * (POLICY_COST + max(len(description), 1)) > POLICY_SPACE:
        raise CmdletError("InvalidOperationException", SPACE_EXCEEDED, cmdlet=p.cmdlet)
    now = state.clock.now()
    made = [aap.AccessPolicy(app_id=a, scope=scope.guid, access_right=right, description=description, created=now,
                             scope_sid=sid_for(scope.guid), scope_external_id=scope.external_id,
                             scope_name=scope.name) for a in app_ids]
    for pol in made:
        state.read_lag.wrote("policy", policy_identity(state, pol).lower(), None)
    state.access_policies.extend(made)
    _changed(state, app_ids)
    return CmdletResult([policy_row(state, pol) for pol in made])


@cmdlet("Set-ApplicationAccessPolicy", ("Identity", "Description"), write=True)
def set_application_access_policy(state: TenantState, p: Params, caller: Caller):
    pol = _one_policy(state, p.str("Identity", required=True), p.cmdlet)
    description = p.str("Description", required=True)
    if _space_used(state) - max(len(pol.description), 1) + max(len(description), 1) > POLICY_SPACE:
        raise CmdletError("InvalidOperationException", SPACE_EXCEEDED, cmdlet=p.cmdlet)
    state.read_lag.wrote("policy", policy_identity(state, pol).lower(), policy_row(state, pol))
    pol.description = description
    return CmdletResult()


@cmdlet("Remove-ApplicationAccessPolicy", ("Identity",), write=True)
def remove_application_access_policy(state: TenantState, p: Params, caller: Caller):
    pol = _one_policy(state, p.str("Identity", required=True), p.cmdlet)
    state.read_lag.wrote("policy", policy_identity(state, pol).lower(), policy_row(state, pol))
    state.access_policies.remove(pol)
    _changed(state, [pol.app_id])
    return CmdletResult()


@cmdlet("Test-ApplicationAccessPolicy", ("Identity", "AppId"))
def test_application_access_policy(state: TenantState, p: Params, caller: Caller):
    target = _one(state, p.str("Identity", required=True), p.cmdlet)
    rows = []
    for app_id in _app_ids(p):
        granted = aap.access_check(state, app_id, target.guid)
        rows.append({"AppId": app_id, "Mailbox": target.name, "MailboxId": target.external_id,
                     "MailboxSid": sid_for(target.guid), "AccessCheckResult": "Granted" if granted else "Denied"})
    return CmdletResult(rows)
