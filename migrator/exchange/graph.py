"""Microsoft Graph v1.0: service principals and their app-role assignments; paging; $batch where it saves calls."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from migrator.exchange.access import by_http_method, read, write
from migrator.exchange.errors import ApiError, NotFound, Throttled
from migrator.exchange.http import ApiSession, parse_retry_after
from migrator.exchange.interface import GraphApi
from migrator.exchange.profile import Profile
from migrator.model import EXCHANGE_ONLINE_APP_ID

BATCH_MAX = 20  # Graph's limit per $batch request


def _check_id(what: str, value: str) -> str:
    if not value or not str(value).strip():
        raise ValueError(f"{what}: empty id")
    return quote(str(value).strip(), safe="")


class GraphClient(GraphApi):
    """Microsoft Graph v1.0; the executor's typed reads come from GraphApi (interface.py)."""

    def __init__(self, session: ApiSession, profile: Profile, *, batch_attempts: int = 6) -> None:
        self.session, self.profile = session, profile
        self.base = profile.graph_base.rstrip("/")
        self.batch_attempts = batch_attempts

    def _op(self, path: str) -> str:
        return f"GET {path}"

    @by_http_method
    def request(self, method: str, path: str, *, json: Any = None, operation: str | None = None) -> Any:
        url = path if path.startswith("https://") else f"{self.base}{path}"
        return self.session.request(method, url, resource=self.profile.graph_resource, service="graph",
                                    operation=operation or f"{method} {path.split('?')[0]}", json=json,
                                    headers={"Content-Type": "application/json"} if json is not None else None)

    @read
    def list(self, path: str, *, operation: str | None = None) -> list[dict]:
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
        return self.list(f"/servicePrincipals?$select={select}&$top=999", operation="GET /servicePrincipals")

    # -- app-role assignments --------------------------------------------------------------------------
    @read
    def list_app_role_assignments(self, sp_id: str) -> list[dict]:
        ident = _check_id("appRoleAssignments", sp_id)
        return self.list(f"/servicePrincipals/{ident}/appRoleAssignments",
                         operation="GET /servicePrincipals/{id}/appRoleAssignments")

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

    @read
    def list_app_role_assignments_many(self, sp_ids: list[str]) -> dict[str, list[dict]]:
        """appRoleAssignments of many SPs through $batch (20 per request); 429s inside a batch are retried."""
        requests_ = {str(i): f"/servicePrincipals/{_check_id('appRoleAssignments', sp)}/appRoleAssignments"
                     for i, sp in enumerate(sp_ids)}
        bodies = self.batch_get(requests_, operation="POST /$batch (appRoleAssignments)")
        out: dict[str, list[dict]] = {}
        for i, sp in enumerate(sp_ids):
            body = bodies[str(i)]
            rows = list(body.get("value") or [])
            next_link = body.get("@odata.nextLink")
            if next_link:
                rows.extend(self.list(next_link, operation="GET /servicePrincipals/{id}/appRoleAssignments"))
            out[sp] = rows
        return out

    @read
    def batch_get(self, paths: dict[str, str], *, operation: str = "POST /$batch") -> dict[str, dict]:
        """Run GETs through $batch. Returns {id: body}; a 404 inner answer gives {} (absent); others raise."""
        pending = dict(paths)
        results: dict[str, dict] = {}
        attempts = 0
        while pending:
            attempts += 1
            ids = list(pending)
            retry_after = 0.0
            for start in range(0, len(ids), BATCH_MAX):
                chunk = ids[start:start + BATCH_MAX]
                payload = {"requests": [{"id": i, "method": "GET", "url": pending[i]} for i in chunk]}
                data = self.request("POST", "/$batch", json=payload, operation=operation) or {}
                for answer in data.get("responses") or []:
                    rid, status = str(answer.get("id")), int(answer.get("status", 0))
                    if rid not in pending:
                        continue
                    if 200 <= status < 300:
                        results[rid] = answer.get("body") or {}
                        del pending[rid]
                    elif status == 404:
                        results[rid] = {}
                        del pending[rid]
                    elif status in (429, 503, 504):
                        headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
                        ra = parse_retry_after(headers.get("retry-after"))
                        retry_after = max(retry_after, 1.0 if ra is None else ra)
                        self.session.limiters["graph"].on_throttle(retry_after)
                    else:
                        err = (answer.get("body") or {}).get("error") or {}
                        raise ApiError(f"HTTP {status} {err.get('code', '')}: {err.get('message', '')}",
                                       status=status, code=str(err.get("code") or ""), operation=f"GET {pending[rid]}")
            if pending:
                if attempts >= self.batch_attempts:
                    raise Throttled(f"{len(pending)} requests inside $batch still throttled after {attempts} tries",
                                    status=429, operation=operation)
                self.session._sleep(min(retry_after, self.session.max_wait))
        return results
