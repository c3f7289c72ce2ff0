"""The Microsoft Graph v1.0 subset the tool uses: service principals, their app-role assignments, users, $batch.

Shapes follow Graph: collections as `{"@odata.context", "value", "@odata.nextLink"}`, errors as
`{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}`, 404
`Request_ResourceNotFound`, 403 `Authorization_RequestDenied`, 401 `InvalidAuthenticationToken`.
A `$batch` holds at most 20 requests; each inner request draws on the throttle bucket, so inner 429s come back
inside a 200 reply, as Graph does.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from urllib.parse import parse_qsl, unquote, urlsplit

from migrator.sandbox.backend import GRAPH_RESOURCE, Backend, Caller, GraphError
from migrator.sandbox.faults import CONCURRENCY_TEXT, FaultInjector
from migrator.sandbox.graph_data import MAILBOX_PATH, GraphDataAttempt, permissions_for
from migrator.sandbox.http_exchange import fault_reply
from migrator.sandbox.reply import Reply, Request, json_reply, text_reply
from migrator.sandbox.requestlog import RequestLog
from migrator.sandbox.tokens import TokenRejected, TokenService

READ_APPS = frozenset({"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
                       "Directory.ReadWrite.All", "AppRoleAssignment.ReadWrite.All"})
WRITE_ASSIGNMENTS = frozenset({"AppRoleAssignment.ReadWrite.All"})
READ_USERS = frozenset({"User.Read.All", "User.ReadBasic.All", "User.ReadWrite.All", "Directory.Read.All",
                        "Directory.ReadWrite.All"})
DEFAULT_TOP, MAX_TOP = 100, 999
MAX_BATCH = 20
CURSOR_TTL, MAX_CURSORS = 1800.0, 256
SP_BY_APPID = re.compile(r"^servicePrincipals\(appId='([^']*)'\)(/.*)?$", re.IGNORECASE)
APP_BY_APPID = re.compile(r"^applications\(appId='([^']*)'\)$", re.IGNORECASE)
FILTER_APPID = re.compile(r"^\s*appId\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)


def graph_error(status: int, code: str, message: str, client_request_id: str = "",
                headers: dict[str, str] | None = None) -> Reply:
    inner = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
             "request-id": str(uuid.uuid4()), "client-request-id": client_request_id or str(uuid.uuid4())}
    return json_reply(status, {"error": {"code": code, "message": message, "innerError": inner}}, headers)


def _select(obj: dict, select: str) -> dict:
    wanted = [s.strip() for s in select.split(",") if s.strip()]
    if not wanted:
        return obj
    lower = {k.lower(): k for k in obj}
    return {lower[w.lower()]: obj[lower[w.lower()]] for w in wanted if w.lower() in lower}



def _appid_filter(query: dict) -> str | None:
    """The app id of a `$filter=appId eq '...'` query (None without a filter); any other filter is a 400."""
    flt = query.get("$filter", "")
    if not flt:
        return None
    fm = FILTER_APPID.match(flt)
    if not fm:
        raise GraphError(400, "Request_UnsupportedQuery", f"Unsupported query: $filter={flt}")
    return fm.group(1)

class GraphEndpoint:
    log: RequestLog | None = None  # set by the server: every call received

    def __init__(self, backend: Backend, tokens: TokenService, faults: FaultInjector, lock: threading.RLock) -> None:
        self.backend, self.tokens, self.faults, self.lock = backend, tokens, faults, lock
        self._cursors: OrderedDict[str, tuple[list[dict], float, str]] = OrderedDict()
        self._cursor_lock = threading.Lock()
        self.attempts: list[GraphDataAttempt] = []  # every app call on a mailbox (graph_data.py), in order

    def handle(self, req: Request) -> Reply | None:
        if not req.path.startswith("/v1.0/"):
            return None
        crid = req.header("client-request-id")
        data = MAILBOX_PATH.match(req.path[len("/v1.0/"):])
        if data:  # an app's own call on a mailbox: the data plane, not the tool's API (neither faulted nor logged)
            return self._mailbox_call(req, unquote(data.group(1)), data.group(2), crid)
        try:
            caller = self.tokens.validate(req.header("authorization"), GRAPH_RESOURCE)
        except TokenRejected as exc:
            message = "Access token is empty." if exc.error == "invalid_request" else exc.description
            return graph_error(401, "InvalidAuthenticationToken", message, crid,
                               {"WWW-Authenticate": f'Bearer realm="", error="{exc.error}", '
                                                    'authorization_uri="https://login.microsoftonline.com/common/'
                                                    'oauth2/authorize", client_id="00000003-0000-0000-c000-'
                                                    '000000000000"'})
        rel = req.path[len("/v1.0/"):]
        batch_requests = None
        if rel == "$batch" and req.method == "POST":
            try:
                batch_requests = (req.json() or {})["requests"]
                if not isinstance(batch_requests, list):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                return graph_error(400, "BadRequest", "Invalid batch payload format.", crid)
            write = any(str(r.get("method", "GET")).upper() != "GET" for r in batch_requests if isinstance(r, dict))
        else:
            write = req.method != "GET"
        if self.log is not None:
            self.log.record("graph", f"{req.method} /{rel}", write=write)
        service, tid = "graph", self.backend.tenant_id
        if not self.faults.enter(service, tid):
            self.faults.leave(service, tid)
            return text_reply(429, CONCURRENCY_TEXT)
        try:
            decision = self.faults.decide(service, tid, is_write=write)
            if decision.latency:
                time.sleep(decision.latency)
            imposed = fault_reply(decision, graph=True)
            if imposed is not None:
                return imposed
            if batch_requests is not None:
                reply = self._batch(req, caller, batch_requests)
            else:
                reply = self._route(req.method, rel, req.query, req.body, caller, req.base_url, crid)
            if decision.post_commit_drop and write and reply.status < 400:
                return Reply(status=0, drop=True)  # applied, but the answer never arrives
            return reply
        finally:
            self.faults.leave(service, tid)

    def _mailbox_call(self, req: Request, mailbox: str, resource: str, crid: str) -> Reply:
        try:
            claims = self.tokens.verified_claims(req.header("authorization"), GRAPH_RESOURCE)
        except TokenRejected as exc:
            return graph_error(401, "InvalidAuthenticationToken", exc.description, crid)
        permissions = permissions_for(req.method, resource)
        if not permissions:
            return graph_error(405, "Request_BadRequest", f"{req.method} is not supported on {resource}.", crid)
        with self.lock:
            verdict = self.backend.graph_mailbox(claims, mailbox, permissions)
            self.attempts.append(GraphDataAttempt(self.backend.now(), str(claims.get("appid") or ""),
                                                  mailbox.lower(), req.method, resource,
                                                  float(claims.get("iat", 0)), tuple(claims.get("roles") or ()),
                                                  verdict))
        if verdict == "unknown_mailbox":
            return graph_error(404, "ErrorInvalidUser", f"The requested user '{mailbox}' is invalid.", crid)
        if verdict != "ok":
            return graph_error(403, "ErrorAccessDenied", "Access to OData is disabled.", crid)
        if req.method == "POST" and resource == "sendMail":
            return Reply(202, b"", "text/plain")
        if req.method in ("POST", "PATCH"):
            return json_reply(201 if req.method == "POST" else 200, {})
        if resource == "mailboxSettings":
            return json_reply(200, {"@odata.context": f"{req.base_url}/v1.0/$metadata#users('{mailbox}')/"
                                                      "mailboxSettings", "timeZone": "UTC"})
        return json_reply(200, {"@odata.context": f"{req.base_url}/v1.0/$metadata#users('{mailbox}')/{resource}",
                                "value": []})

    # ---- routing ----------------------------------------------------------------------------------------
    def _route(self, method: str, rel: str, query: dict[str, str], body: bytes, caller: Caller, base: str,
               crid: str) -> Reply:
        try:
            return self._dispatch(method, rel, query, body, caller, base)
        except GraphError as fail:
            return graph_error(fail.status, fail.code, fail.message, crid)
        except _Denied:
            return graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the "
                                                                   "operation.", crid)

    def _dispatch(self, method: str, rel: str, query: dict[str, str], body: bytes, caller: Caller,
                  base: str) -> Reply:
        ctx = f"{base}/v1.0/$metadata"
        select = query.get("$select", "")
        match = SP_BY_APPID.match(rel)
        if match:  # servicePrincipals(appId='...')[/rest]: resolve to the id form
            self._need(caller, READ_APPS)
            with self.lock:
                found = self.backend.graph_service_principals(match.group(1), caller)
            if not found:
                raise GraphError(404, "Request_ResourceNotFound",
                                   f"Resource '{match.group(1)}' does not exist or one of its queried "
                                   "reference-property objects are not present.")
            rel = f"servicePrincipals/{found[0]['id']}{match.group(2) or ''}"
        parts = [unquote(p) for p in rel.split("/") if p]
        if parts[:1] == ["servicePrincipals"] and method == "GET" and len(parts) == 1:
            self._need(caller, READ_APPS)
            app_id = _appid_filter(query)
            with self.lock:
                rows = self.backend.graph_service_principals(app_id, caller)
            return self._collection(rows, query, f"{ctx}#servicePrincipals", f"{base}/v1.0/servicePrincipals")
        if parts[:1] == ["servicePrincipals"] and len(parts) == 2 and method == "GET":
            self._need(caller, READ_APPS)
            with self.lock:
                sp = self.backend.graph_service_principal(parts[1], caller)
            return json_reply(200, {"@odata.context": f"{ctx}#servicePrincipals/$entity", **_select(sp, select)})
        if parts[:1] == ["servicePrincipals"] and len(parts) >= 3 and parts[2] == "appRoleAssignments":
            sp_id = parts[1]
            if method == "GET" and len(parts) == 3:
                self._need(caller, READ_APPS)
                with self.lock:
                    rows = self.backend.graph_app_role_assignments(sp_id, caller)
                return self._collection(rows, query, f"{ctx}#servicePrincipals('{sp_id}')/appRoleAssignments",
                                        f"{base}/v1.0/servicePrincipals/{sp_id}/appRoleAssignments")
            if method == "POST" and len(parts) == 3:
                self._need(caller, WRITE_ASSIGNMENTS)
                try:
                    payload = json.loads(body.decode("utf-8") or "null")
                    if not isinstance(payload, dict):
                        raise ValueError
                except ValueError:
                    raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
                with self.lock:
                    created = self.backend.graph_grant_app_role(sp_id, payload, caller)
                return json_reply(201, {"@odata.context": f"{ctx}#servicePrincipals('{sp_id}')/appRoleAssignments"
                                                          "/$entity", **created})
            if method == "DELETE" and len(parts) == 4:
                self._need(caller, WRITE_ASSIGNMENTS)
                with self.lock:
                    self.backend.graph_delete_app_role_assignment(sp_id, parts[3], caller)
                return Reply(204, b"", "text/plain")
        if parts[:1] == ["servicePrincipals"] and len(parts) == 3 and parts[2] == "appRoleAssignedTo" \
                and method == "GET":
            self._need(caller, READ_APPS)
            with self.lock:
                rows = self.backend.graph_call("list_app_role_assigned_to", parts[1], caller=caller)
            return self._collection(rows, query, f"{ctx}#servicePrincipals('{parts[1]}')/appRoleAssignedTo",
                                    f"{base}/v1.0/{rel}")
        if parts[:1] == ["servicePrincipals"] and len(parts) == 3 and parts[2] == "tokenLifetimePolicies" \
                and method == "GET":
            with self.lock:
                rows = self.backend.graph_call("sp_token_lifetime_policies", parts[1], caller=caller)
            return self._collection(rows, query, f"{ctx}#policies/tokenLifetimePolicies", f"{base}/v1.0/{rel}")
        if parts[:2] == ["policies", "tokenLifetimePolicies"] and method == "GET" and len(parts) in (2, 4):
            if len(parts) == 2:
                with self.lock:
                    rows = self.backend.graph_call("list_token_lifetime_policies", caller=caller)
                return self._collection(rows, query, f"{ctx}#policies/tokenLifetimePolicies",
                                        f"{base}/v1.0/policies/tokenLifetimePolicies")
            if parts[3] == "appliesTo":
                with self.lock:
                    rows = self.backend.graph_call("token_lifetime_policy_applies_to", parts[2], caller=caller)
                return self._collection(rows, query, f"{ctx}#directoryObjects", f"{base}/v1.0/{rel}")
        match_app = APP_BY_APPID.match(rel)
        if match_app and method == "GET":
            with self.lock:
                rows = self.backend.graph_call("list_applications", caller=caller, app_id=match_app.group(1))
            if not rows:
                raise GraphError(404, "Request_ResourceNotFound",
                                 f"Resource '{match_app.group(1)}' does not exist or one of its queried "
                                 "reference-property objects are not present.")
            return json_reply(200, {"@odata.context": f"{ctx}#applications/$entity", **_select(rows[0], select)})
        if parts == ["applications"] and method == "GET":
            app_id = _appid_filter(query)
            with self.lock:
                rows = self.backend.graph_call("list_applications", caller=caller, app_id=app_id)
            return self._collection(rows, query, f"{ctx}#applications", f"{base}/v1.0/applications")
        if parts == ["users"] and method == "GET":
            self._need(caller, READ_USERS)
            token = query.get("$skiptoken")
            if token:
                return self._next_page(token, query, f"{ctx}#users", f"{base}/v1.0/users")
            with self.lock:
                rows = self.backend.graph_users(caller)
            return self._collection(rows, query, f"{ctx}#users", f"{base}/v1.0/users")
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{parts[0] if parts else rel}'.")

    def _need(self, caller: Caller, any_of: frozenset[str]) -> None:
        if not any_of.intersection(caller.roles):
            raise _Denied()

    # ---- collections and paging -------------------------------------------------------------------------
    def _collection(self, rows: list[dict], query: dict[str, str], context: str, link_base: str) -> Reply:
        select = query.get("$select", "")
        rows = [_select(r, select) for r in rows]
        top_text = query.get("$top", "")
        if top_text and not top_text.isdigit():
            raise GraphError(400, "BadRequest", f"Invalid value '{top_text}' for query option $top.")
        top = max(1, min(MAX_TOP, int(top_text))) if top_text else DEFAULT_TOP
        if len(rows) <= top:
            return json_reply(200, {"@odata.context": context, "value": rows})
        cursor_id = secrets.token_urlsafe(12).replace("-", "_")
        with self._cursor_lock:
            self._cursors[cursor_id] = (rows, time.monotonic(), context)
            while len(self._cursors) > MAX_CURSORS:
                self._cursors.popitem(last=False)
        return self._page(cursor_id, rows, 0, top, context, link_base)

    def _next_page(self, token: str, query: dict[str, str], context: str, link_base: str) -> Reply:
        cursor_id, _, rest = token.partition("-")
        offset_text, _, top_text = rest.partition("-")
        with self._cursor_lock:
            entry = self._cursors.get(cursor_id)
        if entry is None or time.monotonic() - entry[1] > CURSOR_TTL or not (offset_text.isdigit()
                                                                             and top_text.isdigit()):
            raise GraphError(400, "Directory_ExpiredPageToken", "The specified page token value has expired "
                                                                  "and can no longer be included in your request.")
        return self._page(cursor_id, entry[0], int(offset_text), int(top_text), context, link_base)

    def _page(self, cursor_id: str, rows: list[dict], offset: int, top: int, context: str, link_base: str) -> Reply:
        payload: dict = {"@odata.context": context, "value": rows[offset: offset + top]}
        if offset + top < len(rows):
            payload["@odata.nextLink"] = f"{link_base}?%24top={top}&%24skiptoken={cursor_id}-{offset + top}-{top}"
        return json_reply(200, payload)

    # ---- $batch -----------------------------------------------------------------------------------------
    def _batch(self, req: Request, caller: Caller, requests_: list) -> Reply:
        crid = req.header("client-request-id")
        if len(requests_) > MAX_BATCH:
            return graph_error(400, "BadRequest", f"Number of requests exceeds the maximum of {MAX_BATCH}.", crid)
        ids = [r.get("id") if isinstance(r, dict) else None for r in requests_]
        if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
            return graph_error(400, "BadRequest", "Every batch request needs a unique, non-empty id.", crid)
        responses = []
        for inner in requests_:
            method = str(inner.get("method", "GET")).upper()
            split = urlsplit(str(inner.get("url", "")))
            rel = split.path.lstrip("/")
            if rel.startswith("v1.0/"):
                rel = rel[len("v1.0/"):]
            query = {k: v for k, v in parse_qsl(split.query, keep_blank_values=True)}
            body = inner.get("body")
            raw = json.dumps(body).encode() if body is not None else b""
            wait = self.faults.inner_throttle("graph", self.backend.tenant_id)
            if wait:
                reply = graph_error(429, "TooManyRequests", "Too many requests", crid, {"Retry-After": str(wait)})
            else:
                reply = self._route(method, rel, query, raw, caller, req.base_url, crid)
            entry: dict = {"id": inner["id"], "status": reply.status,
                           "headers": {"Content-Type": reply.content_type, **reply.headers}}
            if reply.body:
                entry["body"] = json.loads(reply.body)
            responses.append(entry)
        return json_reply(200, {"responses": responses})


class _Denied(Exception):
    pass

