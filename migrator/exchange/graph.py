"""Microsoft Graph v1.0: service principals and their app-role assignments; paging; $batch where it saves calls."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from migrator.exchange.access import by_http_method, read, write
from migrator.exchange.errors import ApiError, NotFound, ServerError, Throttled
from migrator.exchange.http import ApiSession, parse_retry_after
from migrator.exchange.interface import GraphApi
from migrator.exchange.profile import Profile
from migrator.exchange.ratelimit import fan_out
from migrator.model import EXCHANGE_ONLINE_APP_ID

BATCH_MAX = 20  # Graph's limit per $batch request


def _check_id(what: str, value: str) -> str:
    if not value or not str(value).strip():
        raise ValueError(f"{what}: empty id")
    return quote(str(value).strip(), safe="")


class GraphClient(GraphApi):
    """Microsoft Graph v1.0; the executor's typed reads come from GraphApi (interface.py)."""

    def __init__(self, session: ApiSession, profile: Profile) -> None:
        self.session, self.profile = session, profile
        self.base = profile.graph_base.rstrip("/")

    def _op(self, path: str) -> str:
        return f"GET {path}"

    @by_http_method
    def request(self, method: str, path: str, *, json: Any = None, operation: str | None = None,
                weight: int = 1, report_success: bool = True) -> Any:
        url = path if path.startswith("https://") else f"{self.base}{path}"
        return self.session.request(method, url, resource=self.profile.graph_resource, service="graph",
                                    operation=operation or f"{method} {path.split('?')[0]}", json=json,
                                    headers={"Content-Type": "application/json"} if json is not None else None,
                                    weight=weight, report_success=report_success)

    @read
    def list_all(self, path: str, *, operation: str | None = None) -> list[dict]:
        """GET a collection and follow every absolute @odata.nextLink."""
        out: list[dict] = []
        url: str | None = path
        op = operation or f"GET {path.split('?')[0]}"
        while url:
            data = self.request("GET", url, operation=op) or {}
            out.extend(data.get("value") or [])
            url = data.get("@odata.nextLink")
        return out

    # -- service principals ----------------------------------------------------------------------------
    @read
    def get_service_principal_by_app_id(self, app_id: str) -> dict | None:
        ident = _check_id("servicePrincipals(appId=...)", app_id)
        try:
            return self.request("GET", f"/servicePrincipals(appId='{ident}')",
                                operation="GET /servicePrincipals(appId)")
        except NotFound:
            return None

    @read
    def get_resource_service_principal(self, app_id: str = EXCHANGE_ONLINE_APP_ID) -> dict:
        sp = self.get_service_principal_by_app_id(app_id)
        if sp is None:
            raise ApiError(f"the resource service principal {app_id} is not in the tenant", operation="graph")
        return sp

    @read
    def list_service_principals(self, select: str = "id,appId,displayName") -> list[dict]:
        return self.list_all(f"/servicePrincipals?$select={select}&$top=999", operation="GET /servicePrincipals")

    # -- app-role assignments --------------------------------------------------------------------------
    @read
    def list_app_role_assignments(self, sp_id: str) -> list[dict]:
        ident = _check_id("appRoleAssignments", sp_id)
        return self.list_all(f"/servicePrincipals/{ident}/appRoleAssignments",
                             operation="GET /servicePrincipals/{id}/appRoleAssignments")

    @read
    def list_app_role_assigned_to(self, resource_sp_id: str) -> list[dict]:
        """Every app-role assignment granted on a resource service principal (whoever holds it)."""
        ident = _check_id("appRoleAssignedTo", resource_sp_id)
        return self.list_all(f"/servicePrincipals/{ident}/appRoleAssignedTo",
                             operation="GET /servicePrincipals/{id}/appRoleAssignedTo")

    @write
    def grant_app_role(self, sp_id: str, resource_id: str, app_role_id: str) -> dict:
        ident = _check_id("appRoleAssignments", sp_id)
        _check_id("resourceId", resource_id)
        _check_id("appRoleId", app_role_id)
        return self.request("POST", f"/servicePrincipals/{ident}/appRoleAssignments",
                            json={"principalId": sp_id, "resourceId": resource_id, "appRoleId": app_role_id},
                            operation="POST /servicePrincipals/{id}/appRoleAssignments") or {}

    @write
    def delete_app_role_assignment(self, sp_id: str, assignment_id: str) -> None:
        ident = _check_id("appRoleAssignments", sp_id)
        aid = _check_id("assignment id", assignment_id)
        self.request("DELETE", f"/servicePrincipals/{ident}/appRoleAssignments/{aid}",
                     operation="DELETE /servicePrincipals/{id}/appRoleAssignments/{id}")

    # -- token lifetime policies and app registrations -------------------------------------------------
    @read
    def list_token_lifetime_policies(self) -> list[dict]:
        """Every tokenLifetimePolicy of the tenant (Policy.Read.All): id, displayName, definition (JSON strings),
        isOrganizationDefault."""
        return self.list_all("/policies/tokenLifetimePolicies", operation="GET /policies/tokenLifetimePolicies")

    @read
    def token_lifetime_policy_applies_to(self, policy_id: str) -> list[dict]:
        """The directory objects (service principals, applications) a policy is assigned to (Policy.Read.All)."""
        ident = _check_id("tokenLifetimePolicies", policy_id)
        return self.list_all(f"/policies/tokenLifetimePolicies/{ident}/appliesTo",
                             operation="GET /policies/tokenLifetimePolicies/{id}/appliesTo")

    @read
    def get_application_by_app_id(self, app_id: str) -> dict | None:
        """The app registration (its requiredResourceAccess), or None when the tenant has none for this app id."""
        ident = _check_id("applications(appId=...)", app_id)
        try:
            return self.request("GET", f"/applications(appId='{ident}')", operation="GET /applications(appId)")
        except NotFound:
            return None

    @read
    def list_app_role_assignments_many(self, sp_ids: list[str]) -> dict[str, list[dict]]:
        """appRoleAssignments of many SPs through $batch (20 per request, concurrently, paced by the Graph
        limiter); 429s inside a batch are retried."""
        requests_ = {str(i): f"/servicePrincipals/{_check_id('appRoleAssignments', sp)}/appRoleAssignments"
                     for i, sp in enumerate(sp_ids)}
        bodies = self.batch_get(requests_, operation="POST /$batch (appRoleAssignments)")
        out: dict[str, list[dict]] = {}
        for i, sp in enumerate(sp_ids):
            body = bodies[str(i)]
            rows = list(body.get("value") or [])
            next_link = body.get("@odata.nextLink")
            if next_link:
                rows.extend(self.list_all(next_link, operation="GET /servicePrincipals/{id}/appRoleAssignments"))
            out[sp] = rows
        return out

    @read
    def batch_get(self, paths: dict[str, str], *, operation: str = "POST /$batch",
                  workers: int = 8) -> dict[str, dict]:
        """Run GETs through $batch, BATCH_MAX per request, the chunks concurrently (each through the Graph limiter).
        Returns {id: body}; a 404 inner answer gives {} (absent); other inner errors raise."""
        ids = list(paths)
        chunks = [ids[i:i + BATCH_MAX] for i in range(0, len(ids), BATCH_MAX)]
        results: dict[str, dict] = {}
        for part in fan_out(lambda chunk: self.batch_chunk({i: paths[i] for i in chunk}, operation=operation),
                            chunks, workers=workers):
            results.update(part)
        return results

    @read
    def batch_chunk(self, paths: dict[str, str], *, operation: str = "POST /$batch") -> dict[str, dict]:
        """One $batch of at most BATCH_MAX GETs, paced by the Graph limiter: the request weighs as many units of
        the pace as it holds requests (Graph counts each one against its budget), the limiter hears how many were
        served, and an inner 429 slows the pace like any other. Throttled (or 5xx) inner requests are sent again,
        alone, after their Retry-After, within the session's throttle (server) budget in seconds: never given up
        while that allows."""
        if len(paths) > BATCH_MAX:
            raise ValueError(f"a $batch holds at most {BATCH_MAX} requests")
        session = self.session
        limiter = session.limiters["graph"]
        pending = dict(paths)
        results: dict[str, dict] = {}
        first_retry: dict[str, float] = {}  # kind -> when it first came (its budget runs from there)
        while pending:
            payload = {"requests": [{"id": i, "method": "GET", "url": pending[i]} for i in pending]}
            data = self.request("POST", "/$batch", json=payload, operation=operation, weight=len(pending) + 1,
                                report_success=False) or {}
            served, retry_after, kinds = 1, 0.0, set()  # the outer request itself counts as served
            for answer in data.get("responses") or []:
                rid, status = str(answer.get("id")), int(answer.get("status", 0))
                if rid not in pending:
                    continue
                if 200 <= status < 300 or status == 404:
                    results[rid] = (answer.get("body") or {}) if status != 404 else {}
                    del pending[rid]
                    served += 1
                elif status in (429, 500, 502, 503, 504):
                    headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
                    ra = parse_retry_after(headers.get("retry-after"))
                    retry_after = max(retry_after, 1.0 if ra is None else ra)
                    kinds.add("throttle" if status == 429 else "server")
                else:
                    err = (answer.get("body") or {}).get("error") or {}
                    raise ApiError(f"HTTP {status} {err.get('code', '')}: {err.get('message', '')}",
                                   status=status, code=str(err.get("code") or ""), operation=f"GET {pending[rid]}")
            limiter.on_success(served)
            if "throttle" in kinds:
                limiter.on_throttle(retry_after)
            if pending:
                wait = min(retry_after or 1.0, session.max_wait)  # answers missing from the reply: wait a second
                self._wait_or_give_up(pending, kinds, first_retry, wait, operation)
        return results

    def _wait_or_give_up(self, pending: dict, kinds: set[str], first_retry: dict[str, float], wait: float,
                         operation: str) -> None:
        session = self.session
        now = session._clock()
        for kind in kinds or {"server"}:  # answers missing from the reply: as a server failure
            first_retry.setdefault(kind, now)
            budget = session.budgets[kind].seconds
            if budget is not None and now + wait - first_retry[kind] > budget:
                cls, what, status = (Throttled, "throttled", 429) if kind == "throttle" else \
                    (ServerError, "failing", 503)
                raise cls(f"{len(pending)} requests inside $batch still {what} after {now - first_retry[kind]:.0f} s",
                          status=status, operation=operation, hint="the tenant is busy; try again later")
        session._count(session.retries, operation)
        session._sleep(wait)
