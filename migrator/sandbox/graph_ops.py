"""The Microsoft Graph v1.0 subset of the sandbox: service principals, their app-role assignments, users.

Functions return JSON-ready dicts (or lists, which the server pages with `@odata.nextLink`) and raise GraphError
with Graph's status, code and message. Writing an app-role assignment changes which claims the app's next tokens
carry, so it is recorded in the timeline (the SMTP cut-over is exactly this: deleting SMTP.SendAsApp).
"""

from __future__ import annotations

import re
import uuid

from migrator.sandbox.api import Caller, GraphError
from migrator.sandbox.state import App, TenantState

READ_ROLES = {"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
              "AppRoleAssignment.ReadWrite.All", "Directory.ReadWrite.All"}
WRITE_ROLES = {"AppRoleAssignment.ReadWrite.All", "Directory.ReadWrite.All"}
USER_ROLES = {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}


def _require(caller: Caller, roles: set[str]) -> None:
    if not (caller.roles & roles):
        raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def _guid(value: str) -> str:
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise GraphError(400, "Request_BadRequest", f"Invalid object identifier '{value}'.") from None


def _missing(what: str) -> GraphError:
    return GraphError(404, "Request_ResourceNotFound", f"Resource '{what}' does not exist or one of its queried "
                      "reference-property objects are not present.")


def _sp_dict(state: TenantState, app: App) -> dict:
    return {"id": app.object_id, "appId": app.app_id, "displayName": app.display_name,
            "servicePrincipalType": "Application", "accountEnabled": True, "appOwnerOrganizationId": state.tenant_id,
            "servicePrincipalNames": [app.app_id], "appRoles": [], "tags": []}


def _all_sps(state: TenantState) -> list[dict]:
    rows = [_sp_dict(state, a) for a in state.apps.values()] + [dict(r) for r in state.resources.values()]
    return sorted(rows, key=lambda r: r["id"])


def _find_sp(state: TenantState, field: str, value: str, caller: Caller) -> dict:
    _require(caller, READ_ROLES)
    value = _guid(value)
    for row in _all_sps(state):
        if row[field] == value:
            return row
    raise _missing(value)


def get_service_principal(state: TenantState, sp_id: str, *, caller: Caller) -> dict:
    """GET /servicePrincipals/{id}"""
    return _find_sp(state, "id", sp_id, caller)


def get_service_principal_by_app_id(state: TenantState, app_id: str, *, caller: Caller) -> dict:
    """GET /servicePrincipals(appId='{appId}')"""
    return _find_sp(state, "appId", app_id, caller)


_FILTER = re.compile(r"^\s*(appId|displayName|id)\s+eq\s+'((?:[^']|'')*)'\s*$", re.I)


def list_service_principals(state: TenantState, *, caller: Caller, filter: str | None = None) -> list[dict]:
    """GET /servicePrincipals[?$filter=appId eq '...']"""
    _require(caller, READ_ROLES)
    rows = _all_sps(state)
    if filter:
        m = _FILTER.match(filter)
        if not m:
            raise GraphError(400, "BadRequest", f"Invalid filter clause: {filter}")
        prop = {"appid": "appId", "displayname": "displayName", "id": "id"}[m.group(1).lower()]
        value = m.group(2).replace("''", "'")
        rows = [r for r in rows if str(r[prop]).lower() == value.lower()]
    return rows


def _principal(state: TenantState, sp_id: str) -> App:
    sp_id = _guid(sp_id)
    app = state.app_by_sp_id(sp_id)
    if app is None:
        raise _missing(sp_id)
    return app


def list_app_role_assignments(state: TenantState, sp_id: str, *, caller: Caller) -> list[dict]:
    """GET /servicePrincipals/{id}/appRoleAssignments

    Within `graph_replication_delay` of a grant or deletion a read may reach a replica that has not seen it yet:
    every other such read (deterministically) answers the state from before the change. On top of that, the read
    lag of a fault profile (`read_lag_s`, readlag.py) shows every read the state from before a write until the
    write's own delay has elapsed."""
    _require(caller, READ_ROLES)
    app = _principal(state, sp_id)
    stale = state.read_lag.stale("app_roles", app.object_id)  # read-after-write lag (readlag.py)
    seen = stale.before if stale is not None else state.app_role_assignments.get(app.object_id, {})
    rows = {a["id"]: dict(a) for a in seen.values()}
    now, lag = state.clock.now(), state.settings.graph_replication_delay
    recent = [c for c in state.graph_changes if c[1] == app.object_id and now - c[0] < lag]
    if recent:
        state.graph_reads += 1
        if state.graph_reads % 2:  # this read hits a stale replica: undo the recent changes, newest first
            for _, _, op, row in reversed(recent):
                if op == "delete":
                    rows[row["id"]] = dict(row)
                else:
                    rows.pop(row["id"], None)
    return sorted(rows.values(), key=lambda a: a["id"])


def list_app_role_assigned_to(state: TenantState, resource_sp_id: str, *, caller: Caller) -> list[dict]:
    """GET /servicePrincipals/{resource id}/appRoleAssignedTo: every app-role assignment granted *on* a resource
    (Microsoft Graph, Office 365 Exchange Online), whoever holds it: how to find every app consented Mail.Read."""
    _require(caller, READ_ROLES)
    rid = _guid(resource_sp_id)
    if not any(r["id"] == rid for r in state.resources.values()) and state.app_by_sp_id(rid) is None:
        raise _missing(rid)
    rows = [dict(a) for by_id in state.app_role_assignments.values() for a in by_id.values()
            if a["resourceId"] == rid]
    return sorted(rows, key=lambda a: a["id"])


def _before_write(state: TenantState, app: App) -> None:
    """Reads that lag keep seeing the SP's assignments as they are now until this write is visible."""
    if state.read_lag.active:
        state.read_lag.wrote("app_roles", app.object_id,
                             {k: dict(v) for k, v in state.app_role_assignments.get(app.object_id, {}).items()})


def _record_change(state: TenantState, sp_id: str, op: str, row: dict) -> None:
    lag = state.settings.graph_replication_delay
    now = state.clock.now()
    state.graph_changes = [c for c in state.graph_changes if now - c[0] < lag]
    if lag > 0:
        state.graph_changes.append((now, sp_id, op, dict(row)))


def grant_app_role(state: TenantState, sp_id: str, body: dict, *, caller: Caller) -> dict:
    """POST /servicePrincipals/{id}/appRoleAssignments  {principalId, resourceId, appRoleId} -> 201"""
    from migrator.sandbox.fixture import grant_app_role as _grant

    _require(caller, WRITE_ROLES)
    app = _principal(state, sp_id)
    body = body or {}
    for key in ("principalId", "resourceId", "appRoleId"):
        if not body.get(key):
            raise GraphError(400, "Request_BadRequest", f"A value is required for property '{key}' of resource "
                             "'AppRoleAssignment'.")
    if _guid(body["principalId"]) != app.object_id:
        raise GraphError(400, "Request_BadRequest", "The principalId in the body does not match the service "
                         "principal in the URL.")
    resource = next((r for r in state.resources.values() if r["id"] == _guid(body["resourceId"])), None)
    if resource is None:
        raise _missing(body["resourceId"])
    role_id = _guid(body["appRoleId"])
    if not any(r["id"] == role_id for r in resource["appRoles"]):
        raise GraphError(400, "Request_BadRequest", "Permission being assigned was not found on application "
                         f"'{resource['appId']}'.")
    if any(a["resourceId"] == resource["id"] and a["appRoleId"] == role_id
           for a in state.app_role_assignments.get(app.object_id, {}).values()):
        raise GraphError(400, "Request_BadRequest", "Permission being assigned already exists on the object")
    _before_write(state, app)
    row = _grant(state, app, resource, role_id, created=state.clock.now())
    _record_change(state, app.object_id, "grant", row)
    state.timeline.note(state.clock.now(), "change", graph="grant_app_role", app_id=app.app_id,
                        resource=resource["displayName"], app_role_id=role_id)
    state.sync_access([app.app_id])
    return dict(row)


def delete_app_role_assignment(state: TenantState, sp_id: str, assignment_id: str, *, caller: Caller) -> None:
    """DELETE /servicePrincipals/{id}/appRoleAssignments/{assignmentId} -> 204"""
    _require(caller, WRITE_ROLES)
    app = _principal(state, sp_id)
    rows = state.app_role_assignments.get(app.object_id, {})
    if assignment_id not in rows:
        raise _missing(assignment_id)
    _before_write(state, app)
    row = rows.pop(assignment_id)
    _record_change(state, app.object_id, "delete", row)
    state.timeline.note(state.clock.now(), "change", graph="delete_app_role_assignment", app_id=app.app_id,
                        resource=row["resourceDisplayName"], app_role_id=row["appRoleId"])
    state.sync_access([app.app_id])


def list_users(state: TenantState, *, caller: Caller) -> list[dict]:
    """GET /users (the server pages it by $top and @odata.nextLink)."""
    _require(caller, USER_ROLES)
    rows = [{"id": r.external_id, "userPrincipalName": r.upn or r.primary_smtp, "mail": r.primary_smtp,
             "displayName": r.display_name, "mailNickname": r.alias,
             "proxyAddresses": list(r.email_addresses)}
            for r in state.recipients.values() if r.kind == "mailbox"]
    return sorted(rows, key=lambda r: r["id"])


# ---- token lifetime policies and app registrations (entra.py) ---------------------------------------------------
POLICY_READ = {"Policy.Read.All", "Policy.ReadWrite.ApplicationConfiguration"}
APP_WRITE = {"Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"}


def list_token_lifetime_policies(state: TenantState, *, caller: Caller) -> list[dict]:
    """GET /policies/tokenLifetimePolicies (Policy.Read.All)"""
    from migrator.sandbox.entra import policy_dict

    _require(caller, POLICY_READ)
    return [policy_dict(p) for p in sorted(state.token_policies, key=lambda p: p["id"])]


def token_lifetime_policy_applies_to(state: TenantState, policy_id: str, *, caller: Caller) -> list[dict]:
    """GET /policies/tokenLifetimePolicies/{id}/appliesTo: the directory objects the policy is assigned to."""
    _require(caller, POLICY_READ)
    policy = next((p for p in state.token_policies if p["id"] == str(policy_id).strip().lower()), None)
    if policy is None:
        raise _missing(policy_id)
    out = []
    for sp_id in policy["appliesTo"]:
        app = state.app_by_sp_id(sp_id)
        if app is not None:
            out.append({"@odata.type": "#microsoft.graph.servicePrincipal", "id": app.object_id,
                        "appId": app.app_id, "displayName": app.display_name})
    return out


def sp_token_lifetime_policies(state: TenantState, sp_id: str, *, caller: Caller) -> list[dict]:
    """GET /servicePrincipals/{id}/tokenLifetimePolicies (Policy.Read.All and Application.ReadWrite.*)"""
    from migrator.sandbox.entra import policy_dict

    _require(caller, POLICY_READ)
    _require(caller, APP_WRITE)
    app = _principal(state, sp_id)
    return [policy_dict(p) for p in state.token_policies if app.object_id in p["appliesTo"]]


def list_applications(state: TenantState, *, caller: Caller, app_id: str | None = None) -> list[dict]:
    """GET /applications[?$filter=appId eq '...'] and /applications(appId='...'): app registrations."""
    from migrator.sandbox.entra import application_dict

    _require(caller, READ_ROLES | {"Application.ReadWrite.All"})
    apps = [a for a in state.apps.values() if not a.is_admin]
    if app_id is not None:
        apps = [a for a in apps if a.app_id == str(app_id).strip().lower()]
    return [application_dict(state, a) for a in sorted(apps, key=lambda a: a.app_id)]
