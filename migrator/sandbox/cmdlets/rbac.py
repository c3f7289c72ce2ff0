"""RBAC for Applications: Get-/New-/Set-/Remove-ManagementScope, Get-/New-/Set-/Remove-ManagementRoleAssignment,
Test-ServicePrincipalAuthorization (configuration view, no propagation delay) and Get-ManagementRole
(Application Access Policies: cmdlets/aap.py)."""

from __future__ import annotations

import copy
from typing import Literal, overload

from migrator.sandbox import opath
from migrator.sandbox.api import Caller, CmdletError, CmdletResult
from migrator.sandbox.cmdlets.base import (
    APPLICATION_ROLES,
    GRANTED,
    MAX_NAME,
    Params,
    _blank,
    _check_name,
    _given,
    _iso,
    _not_found,
    _one,
    _one_sp,
    _opath_error,
    cmdlet,
)
from migrator.sandbox.state import (
    ManagementScope,
    Recipient,
    RoleAssignment,
    TenantState,
    _FilterIndex,
    det_uuid,
)


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


# ---- what a lagging read sees (readlag.py): the scopes and assignments written lately as they were before ------
def _scopes_as_read(state: TenantState) -> dict[str, ManagementScope]:
    view = dict(state.scopes)
    for key, before in state.read_lag.stale_of("scope").items():
        if before is None:
            view.pop(key, None)  # created lately: not seen yet
        else:
            view[key] = before  # changed or removed lately: seen as it was
    return view


def _assignments_as_read(state: TenantState) -> dict[str, RoleAssignment]:
    view = dict(state.assignments)
    for key, before in state.read_lag.stale_of("assignment").items():
        if before is None:
            view.pop(key, None)
        else:
            view[key] = before
    return view


class _IndexAsRead(_FilterIndex):
    """The filter index with the groups written lately seen as they were (their members then)."""

    def __init__(self, state: TenantState, stale_groups: dict) -> None:
        super().__init__(state)
        self.stale_groups = stale_groups

    def direct_members(self, dn_lower: str) -> set:
        live = self.state._by_dn.get(dn_lower)
        if live is not None and live.guid in self.stale_groups:
            before = self.stale_groups[live.guid]
            return set(before.members) if before is not None else set()
        if live is None:
            for before in self.stale_groups.values():
                if before is not None and before.dn.lower() == dn_lower:
                    return set(before.members)
        return super().direct_members(dn_lower)


def _targets_as_read(state: TenantState, ra: RoleAssignment) -> frozenset[str]:
    """assignment_targets as a lagging read sees them: the scope's filter and the groups' members as read."""
    scopes = state.read_lag.stale_of("scope")
    groups = state.read_lag.stale_of("group")
    if not scopes and not groups:
        return state.assignment_targets(ra)
    if ra.scope_kind == "custom":
        scope = _scopes_as_read(state).get(ra.scope_ref.lower())
        return frozenset(opath.evaluate(scope.ast, _IndexAsRead(state, groups))) if scope else frozenset()
    if ra.scope_kind == "group" and ra.scope_ref in groups:
        before: Recipient | None = groups[ra.scope_ref]
        return frozenset(before.members) if before is not None else frozenset()
    return state.assignment_targets(ra)


@cmdlet("Get-ManagementScope", ("Identity", "Orphan", "Exclusive"))
def get_management_scope(state: TenantState, p: Params, caller: Caller):
    identity = p.str("Identity")
    if identity is not None:
        if _blank(identity):
            raise CmdletError("ParameterBindingException", "Cannot bind argument to parameter 'Identity' because "
                              "it is an empty string.", cmdlet=p.cmdlet)
        key = identity.strip().lower()
        seen = _scopes_as_read(state)
        scope = seen.get(key) or next((s for s in seen.values() if s.guid == key), None)
        if scope is None:
            raise _not_found(state, identity, p.cmdlet)
        return CmdletResult([scope_row(state, scope)])
    scopes = sorted((s for s in _scopes_as_read(state).values() if not s.hidden), key=lambda s: s.name.lower())
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
    state.read_lag.wrote("scope", name.lower(), None)
    state.scopes[name.lower()] = s
    state.invalidate_scopes()
    return CmdletResult([scope_row(state, s)], warnings)


@cmdlet("Set-ManagementScope", ("Identity", "Name", "RecipientRestrictionFilter", "RecipientRoot"), write=True)
def set_management_scope(state: TenantState, p: Params, caller: Caller):
    s = _one_scope(state, p.str("Identity", required=True), p.cmdlet)
    old_key, before = s.name.lower(), copy.copy(s)
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
    state.read_lag.wrote("scope", old_key, before)
    if s.name.lower() != old_key:
        state.read_lag.wrote("scope", s.name.lower(), None)
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
    state.read_lag.wrote("scope", s.name.lower(), copy.copy(s))
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
    assignee = ra.app_id if app is None else (
        app.pointer_name if state.settings.role_assignee_name == "display_name" else app.object_id)
    return {"Name": ra.name, "Identity": ra.name, "Id": ra.name, "Guid": ra.guid, "Role": ra.role,
            "RoleAssignee": assignee, "RoleAssigneeName": assignee, "RoleAssigneeType": "ServicePrincipal",
            "AssignmentMethod": "Direct", "CustomResourceScope": custom, "RecipientWriteScope": write_scope,
            "CustomRecipientWriteScope": custom if ra.scope_kind in ("custom", "group") else None,
            "RecipientGroupScope": group.name if group else None,
            "RecipientAdministrativeUnitScope": ra.scope_ref if ra.scope_kind == "au" else None,
            "ConfigWriteScope": "None", "Enabled": ra.enabled, "IsValid": True,
            "WhenCreated": _iso(ra.created), "WhenCreatedUTC": _iso(ra.created)}


def _one_role(role: str | None, cmdlet: str) -> str:
    canon = {r.lower(): r for r in APPLICATION_ROLES}
    hit = canon.get((role or "").strip().lower())
    if hit is None:
        raise CmdletError("ManagementObjectNotFoundException", f"The operation couldn't be performed because "
                          f"object '{role}' couldn't be found on 'the management role list'.", http_status=404,
                          cmdlet=cmdlet)
    return hit


@overload
def _scope_params(state: TenantState, p: Params, required: Literal[True]) -> tuple[str, str]: ...


@overload
def _scope_params(state: TenantState, p: Params, required: bool) -> tuple[str, str] | None: ...


def _scope_params(state: TenantState, p: Params, required: bool) -> tuple[str, str] | None:
    given = [k for k in ("CustomResourceScope", "RecipientGroupScope", "RecipientAdministrativeUnitScope")
             if not _blank(p.str(k))]
    if len(given) > 1:
        raise CmdletError("ParameterBindingException", "Parameter set cannot be resolved using the specified named "
                          "parameters.", cmdlet=p.cmdlet)
    if not given:
        return ("organization", "") if required else None
    kind = given[0]
    value = p.str(kind, required=True)  # present and not blank (given)
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
    rows = sorted(_assignments_as_read(state).values(), key=lambda a: a.name.lower())
    identity = p.str("Identity")
    if _given(identity):
        key = identity.strip().lower()
        hit = [a for a in rows if a.name.lower() == key or a.guid == key]
        if hit:  # unknown identity: EVERY assignment (the hazard)
            rows = hit
    if _given(role_name := p.str("Role")):
        role = _one_role(role_name, p.cmdlet)
        rows = [a for a in rows if a.role.lower() == role.lower()]
    if _given(assignee := p.str("RoleAssignee")):
        app = _one_sp(state, assignee, p.cmdlet)
        rows = [a for a in rows if a.app_id == app.app_id]
    if p.has("Enabled"):
        rows = [a for a in rows if a.enabled == p.bool("Enabled")]
    if _given(assignee_type := p.str("RoleAssigneeType")) and assignee_type.strip().lower() != "serviceprincipal":
        rows = []  # the sandbox holds application assignments only
    if _given(write_scope := p.str("CustomRecipientWriteScope")):
        name = write_scope.strip().lower()
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
    state.read_lag.wrote("assignment", name.lower(), None)
    state.assignments[name.lower()] = ra
    state.sync_access([app.app_id])
    return CmdletResult([assignment_row(state, ra)])


@cmdlet("Set-ManagementRoleAssignment", ("Identity", "CustomResourceScope", "RecipientGroupScope",
                                         "RecipientAdministrativeUnitScope", "Enabled", "Force"), write=True)
def set_management_role_assignment(state: TenantState, p: Params, caller: Caller):
    ra = _one_assignment(state, p.str("Identity", required=True), p.cmdlet)
    state.read_lag.wrote("assignment", ra.name.lower(), copy.copy(ra))
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
    state.read_lag.wrote("assignment", ra.name.lower(), copy.copy(ra))
    del state.assignments[ra.name.lower()]
    state.sync_access([ra.app_id])
    return CmdletResult()


@cmdlet("Test-ServicePrincipalAuthorization", ("Identity", "Resource"))
def test_service_principal_authorization(state: TenantState, p: Params, caller: Caller):
    """Configuration view: sees RBAC changes without the data plane's propagation delay, as Microsoft documents,
    but through the directory like any Get-*: assignments, scopes and groups written lately show as they were."""
    app = _one_sp(state, p.str("Identity", required=True), p.cmdlet)
    target = None
    if _given(resource := p.str("Resource")):
        target = _one(state, resource, p.cmdlet)
    rows = []
    for ra in sorted(_assignments_as_read(state).values(), key=lambda a: a.name.lower()):
        if ra.app_id != app.app_id or not ra.enabled:
            continue
        custom, _write_scope = _scope_label(state, ra)
        scope_type = {"custom": "CustomRecipientScope", "group": "CustomRecipientScope",
                      "au": "AdministrativeUnit"}.get(ra.scope_kind, "Organization")
        in_scope: object = "Not Run"
        if target is not None:
            in_scope = target.guid in _targets_as_read(state, ra)
        rows.append({"RoleName": ra.role, "GrantedPermissions": GRANTED.get(ra.role, ra.role.replace(
            "Application ", "", 1)), "AllowedResourceScope": custom or "Organization", "ScopeType": scope_type,
            "InScope": in_scope, "Identity": app.object_id})
    return CmdletResult(rows)


@cmdlet("Get-ManagementRole", ("Identity", "RoleType", "Cmdlet"))
def get_management_role(state: TenantState, p: Params, caller: Caller):
    """The `Application ...` roles of RBAC for Applications (RoleType ApplicationImpersonation-like
    "ApplicationPermission" rows; the sandbox holds no other roles)."""
    rows = [{"Name": r, "Identity": r, "RoleType": "ApplicationPermission", "IsRootRole": True,
             "IsEndUserRole": False, "Description": f"{r} for applications (RBAC for Applications)",
             "Guid": det_uuid("management-role", r)} for r in APPLICATION_ROLES]
    identity = p.str("Identity") or ""
    if not _blank(identity):
        rows = [r for r in rows if str(r["Name"]).lower() == identity.strip().lower()]
        if not rows:
            raise _not_found(state, identity, p.cmdlet)
    return CmdletResult(rows)
