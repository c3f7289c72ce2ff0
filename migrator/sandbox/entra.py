"""Entra pieces of the sandbox beyond service principals: token lifetime policies and app registrations.

Token lifetime policies (Graph `tokenLifetimePolicy`): `definition` is a list of JSON strings such as
`{"TokenLifetimePolicy":{"Version":1,"AccessTokenLifetime":"04:00:00"}}`; `isOrganizationDefault` makes a policy
apply to every app; otherwise it applies to the service principals it is assigned to (`appliesTo`). An app's access
tokens live as long as its assigned policy says, else the organisation default's, else `settings.token_lifetime`.

App registrations (Graph `application`): `requiredResourceAccess` lists the permissions the app *requests*. Removing
an app-role assignment (the cut-over) leaves the request in place, so "Grant admin consent" re-adds the claim.

Fixture keys (both optional):
  "token_lifetime_policies": [{"id", "display_name", "access_token_lifetime": "4:00:00" | "definition": [...],
                               "is_organization_default": false, "applies_to": [app_id, ...]}]
  apps[i].required_resource_access: [{"resource", "permission"}]  (default: the app's app_roles)
"""

from __future__ import annotations

import json
import re

_TIMESPAN = re.compile(r"^\s*(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?\s*$")


class FixturePolicyError(ValueError):
    pass


def parse_timespan(text: str) -> float:
    """A .NET TimeSpan as token lifetime policies write it: `[d.]h:mm:ss[.fff]` -> seconds. ValueError otherwise."""
    m = _TIMESPAN.match(str(text or ""))
    if not m:
        raise ValueError(f"not a time span: {text!r}")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    if minutes > 59 or seconds > 59:
        raise ValueError(f"not a time span: {text!r}")
    return float(days * 86400 + hours * 3600 + minutes * 60 + seconds)


def access_token_lifetime(definition: list) -> float | None:
    """The AccessTokenLifetime a policy's definition sets (None when it sets none). ValueError when unreadable."""
    found = None
    for entry in definition or ():
        data = json.loads(entry) if isinstance(entry, str) else entry
        body = (data or {}).get("TokenLifetimePolicy")
        if not isinstance(body, dict):
            raise ValueError("no TokenLifetimePolicy object in the definition")
        if "AccessTokenLifetime" in body:
            found = parse_timespan(body["AccessTokenLifetime"])
    return found


def load_policies(state, data: dict) -> None:
    """Read the fixture's token lifetime policies and the apps' requested permissions into the state."""
    from migrator.sandbox.state import det_uuid

    state.token_policies = []
    for i, p in enumerate(data.get("token_lifetime_policies") or ()):
        where = f"token_lifetime_policies[{i}]"
        if "definition" in p:
            definition = list(p["definition"])
        elif "access_token_lifetime" in p:
            parse_timespan(p["access_token_lifetime"])
            definition = [json.dumps({"TokenLifetimePolicy": {"Version": 1,
                                                              "AccessTokenLifetime": p["access_token_lifetime"]}},
                                     separators=(",", ":"))]
        else:
            raise FixturePolicyError(f"fixture {where}: needs access_token_lifetime or definition")
        sp_ids = []
        for app_id in p.get("applies_to") or ():
            app = state.apps.get(str(app_id).strip().lower())
            if app is None:
                raise FixturePolicyError(f"fixture {where}.applies_to: unknown app {app_id!r}")
            sp_ids.append(app.object_id)
        name = p.get("display_name") or f"policy {i + 1}"
        state.token_policies.append({
            "id": str(p.get("id") or det_uuid("token-lifetime-policy", state.tenant_id, name)).lower(),
            "displayName": name, "definition": definition, "deletedDateTime": None,
            "isOrganizationDefault": bool(p.get("is_organization_default", False)), "appliesTo": sp_ids})
    state.requested_roles = {}
    for a in list(data.get("apps") or ()):
        app_id = str(a.get("app_id") or "").strip().lower()
        wanted = a.get("required_resource_access")
        if wanted is None:
            wanted = a.get("app_roles") or ()
        state.requested_roles[app_id] = sorted({(r.get("resource"), r.get("permission")) for r in wanted})


def apply_lifetimes(state) -> None:
    """Tell the timeline how long each app's access tokens live under the policies (unreadable ones: ignored, as
    Entra refuses to store an invalid definition in the first place)."""
    org = None
    assigned: dict[str, float] = {}
    for p in state.token_policies:
        try:
            life = access_token_lifetime(p["definition"])
        except ValueError:
            continue
        if life is None:
            continue
        if p["isOrganizationDefault"]:
            org = life if org is None else max(org, life)
        for sp_id in p["appliesTo"]:
            assigned[sp_id] = max(assigned.get(sp_id, 0.0), life)
    lifetimes = {}
    for app in state.apps.values():
        if app.is_admin:
            continue
        life = assigned.get(app.object_id, org)
        if life is not None:
            lifetimes[app.app_id] = life
    state.timeline.lifetimes = lifetimes


def dump_policies(state) -> list[dict]:
    from migrator.sandbox.state import App

    by_sp: dict[str, App] = {a.object_id: a for a in state.apps.values()}
    return [{"id": p["id"], "display_name": p["displayName"], "definition": list(p["definition"]),
             "is_organization_default": p["isOrganizationDefault"],
             "applies_to": [by_sp[s].app_id for s in p["appliesTo"] if s in by_sp]} for p in state.token_policies]


def policy_dict(p: dict) -> dict:
    """A policy as Graph returns it (without the sandbox's own appliesTo list)."""
    return {"id": p["id"], "deletedDateTime": None, "definition": list(p["definition"]),
            "displayName": p["displayName"], "isOrganizationDefault": p["isOrganizationDefault"]}


def application_dict(state, app) -> dict:
    """The app registration (Graph `application`) with its requiredResourceAccess."""
    from migrator.sandbox.state import det_uuid

    by_resource: dict[str, list[dict]] = {}
    for resource_name, permission in state.requested_roles.get(app.app_id, ()):
        resource = state.resources.get(resource_name)
        if resource is None:
            continue
        role = next((r for r in resource["appRoles"] if r["value"] == permission), None)
        if role is not None:
            by_resource.setdefault(resource["appId"], []).append({"id": role["id"], "type": "Role"})
    return {"id": det_uuid("application", app.app_id), "appId": app.app_id, "displayName": app.display_name,
            "signInAudience": "AzureADMyOrg",
            "requiredResourceAccess": [{"resourceAppId": rid, "resourceAccess": access}
                                       for rid, access in sorted(by_resource.items())]}
