"""`POST /adminapi/beta/{tenant}/InvokeCommand`: the Exchange admin REST endpoint the EXO V3 module calls.

Wire format (docs/exchange.md §4): a `CmdletInput` envelope in, `{"@odata.context", "value", "@odata.nextLink",
"@adminapi.warnings"}` out, `?$select=` trims properties, `Prefer: odata.maxpagesize=N` pages, and the next page
is a POST of the same body to the absolute nextLink. A cursor is a snapshot taken by the first call, so the pages
of one listing never shift under a concurrent write, and re-posting the same nextLink (a retry) gives the same page.
Errors: `{"error": {"code", "message", "details": [{"message": "<ErrId>|<Exception.Type>|<text>"}],
"innererror": {"internalexception": {"message"}}}}`. An unknown or refused cmdlet is answered as Exchange does:
403 with a NUL-byte body labelled `Content-Encoding: gzip` (it is not gzip: clients fail to decode it), the same
shape as a transient NUL 403. A cmdlet that fails part-way answers 200 with `@adminapi.errors` beside its rows.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote

from migrator.model import EXCHANGE_MANAGE_AS_APP
from migrator.sandbox.api import READ_ROLES, WRITE_ROLES
from migrator.sandbox.backend import EXCHANGE_RESOURCE, Backend, Caller, CmdletError
from migrator.sandbox.faults import CONCURRENCY_TEXT, Decision, FaultInjector
from migrator.sandbox.reply import Reply, Request, drop_reply, json_reply, text_reply
from migrator.sandbox.requestlog import RequestLog
from migrator.sandbox.tokens import TokenRejected, TokenService

PATH = re.compile(r"^/adminapi/beta/([^/]+)/InvokeCommand$", re.IGNORECASE)
MANAGE_AS_APP = EXCHANGE_MANAGE_AS_APP
READ_VERBS = ("Get", "Test")
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000
CURSOR_TTL = 1800.0  # seconds a listing snapshot stays pageable (real time)
MAX_CURSORS = 256
# Full .NET names for the short exception types the state may raise.
EXCEPTION_NAMESPACES = {
    "ADObjectAlreadyExistsException": "Microsoft.Exchange.Data.Directory",
    "ManagementObjectNotFoundException": "Microsoft.Exchange.Configuration.Tasks",
    "ManagementObjectAmbiguousException": "Microsoft.Exchange.Configuration.Tasks",
    "CommandNotFoundException": "System.Management.Automation",
    "ParameterBindingException": "System.Management.Automation",
}
# HTTP status per exception type (UNVERIFIED against a live tenant: clients must match on the type, not this).
# CommandNotFoundException never reaches the wire as JSON: it is the NUL 403 (refusal()).
STATUS_BY_EXCEPTION = {"ManagementObjectNotFoundException": 404}
WWW_AUTHENTICATE = ('Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
                    'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
                    'token_types="app_asserted_user_v1 service_asserted_app_v1", '
                    'authorization_uri="https://login.windows.net/common/oauth2/authorize", error="{error}"')


@dataclass
class _Cursor:
    rows: list[dict]
    body_digest: str
    client_id: str
    page_size: int
    created: float


def is_write(cmdlet: str) -> bool:
    return cmdlet.split("-", 1)[0].capitalize() not in READ_VERBS


def full_exception_type(name: str) -> str:
    if "." in name:
        return name
    return f"{EXCEPTION_NAMESPACES.get(name, 'Microsoft.Exchange.Configuration.Tasks')}.{name}"


def exchange_error(status: int, exception_type: str, text: str, errid: str = "") -> Reply:
    full = full_exception_type(exception_type)
    errid = errid or "Ex" + hashlib.sha1(full.encode()).hexdigest()[:6].upper()
    code = {400: "BadRequest", 404: "NotFound", 500: "InternalServerError"}.get(status, "BadRequest")
    return json_reply(status, {"error": {
        "code": code, "message": "Error executing cmdlet",
        "details": [{"code": "Context", "target": "", "message": f"{errid}|{full}|{text}"}],
        "innererror": {"message": "Error executing cmdlet",
                       "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                       "internalexception": {"message": text, "type": full}},
    }})


def _plain_error(status: int, code: str, message: str) -> Reply:
    return json_reply(status, {"error": {"code": code, "message": message}})


def refusal() -> Reply:
    """Exchange's refusal: 403, a NUL-byte body labelled gzip though it is not (requests: ContentDecodingError)."""
    return Reply(403, b"\x00" * 64, "application/json; charset=utf-8", {"Content-Encoding": "gzip"})


def forbidden(decision: Decision | None, message: str) -> Reply:
    if decision is not None and decision.forbidden_nul:
        return refusal()
    return _plain_error(403, "Forbidden", message)


def fault_reply(decision: Decision, *, graph: bool = False) -> Reply | None:
    """The answer a fault decision imposes, or None to serve the request."""
    if decision.kind is None:
        return None
    if decision.kind == "drop":
        return drop_reply()
    if decision.kind == "throttle":
        if decision.throttle_style == "concurrency":
            return text_reply(429, CONCURRENCY_TEXT)
        headers = {"Retry-After": str(decision.retry_after)} if decision.throttle_style == "retry_after" else {}
        if graph:
            return json_reply(429, {"error": {"code": "TooManyRequests", "message": "Too many requests",
                                              "innerError": {"code": "throttledRequest"}}}, headers)
        return json_reply(429, {"error": {"code": "TooManyRequests",
                                          "message": "Too many requests. Please retry after some time."}}, headers)
    if decision.kind == "transient":
        if decision.transient_status == 503:
            return text_reply(503, "<html><body><h1>Service Unavailable</h1></body></html>",
                              content_type="text/html; charset=utf-8")
        if graph:
            return json_reply(500, {"error": {"code": "UnknownError", "message": ""}})
        return _plain_error(500, "InternalServerError", "An internal server error occurred. Please retry.")
    if decision.kind == "nul403":
        return refusal()
    raise ValueError(decision.kind)


def pipeline_failure(cmdlet: str, rows: list[dict]) -> tuple[list[dict], list[str]]:
    """A pipeline that stopped part-way: the rows but the last, and the error for it (ErrId|Type|text)."""
    full = full_exception_type("ManagementObjectNotFoundException")
    text = (f"The operation on {cmdlet} couldn't be completed for every object: the last object couldn't be found "
            f"on the domain controller.")
    errid = "Ex" + hashlib.sha1(f"{full}|{cmdlet}".encode()).hexdigest()[:6].upper()
    return rows[:-1], [f"{errid}|{full}|{text}"]


def page_size_of(prefer: str) -> int:
    match = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", prefer or "", re.IGNORECASE)
    if not match:
        return DEFAULT_PAGE_SIZE
    return max(1, min(MAX_PAGE_SIZE, int(match.group(1))))


def select_fields(rows: list[dict], select: str) -> list[dict]:
    wanted = [s.strip() for s in select.split(",") if s.strip()]
    if not wanted:
        return rows
    out = []
    for row in rows:
        lower = {k.lower(): k for k in row}
        out.append({lower[w.lower()]: row[lower[w.lower()]] for w in wanted if w.lower() in lower})
    return out


class ExchangeEndpoint:
    log: RequestLog | None = None  # set by the server: every cmdlet received

    def __init__(self, backend: Backend, tokens: TokenService, faults: FaultInjector, lock: threading.RLock) -> None:
        self.backend, self.tokens, self.faults, self.lock = backend, tokens, faults, lock
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._cursor_lock = threading.Lock()

    def handle(self, req: Request) -> Reply | None:
        match = PATH.match(req.path)
        if not match:
            return None
        tenant = match.group(1).lower()
        if tenant not in (self.backend.tenant_id.lower(), self.backend.tenant_domain.lower()):
            return _plain_error(404, "NotFound", f"Tenant '{match.group(1)}' was not found.")
        if req.method != "POST":
            return _plain_error(405, "MethodNotAllowed", "InvokeCommand accepts POST only.")
        try:
            caller = self.tokens.validate(req.header("authorization"), EXCHANGE_RESOURCE)
        except TokenRejected as exc:
            header = WWW_AUTHENTICATE.format(error=exc.error) + f', error_description="{exc.description}"'
            return Reply(401, b"", "text/plain", {"WWW-Authenticate": header, "X-Ms-Diagnostics":
                                                  f'2000001;reason="{exc.description}";error_category="{exc.error}"'})
        try:
            envelope = req.json()
            cmd_input = envelope["CmdletInput"]
            cmdlet = cmd_input["CmdletName"]
            params = cmd_input.get("Parameters") or {}
            if not isinstance(cmdlet, str) or not cmdlet.strip() or not isinstance(params, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            return _plain_error(400, "BadRequest",
                                'The request body must be {"CmdletInput": {"CmdletName": "<name>", '
                                '"Parameters": {...}}}.')
        cmdlet = cmdlet.strip()
        if self.log is not None:
            self.log.record("exchange", cmdlet, write=is_write(cmdlet))
        service, tid = "exchange", self.backend.tenant_id
        if not self.faults.enter(service, tid):
            self.faults.leave(service, tid)
            return text_reply(429, CONCURRENCY_TEXT)
        try:
            decision = self.faults.decide(service, tid, is_write=is_write(cmdlet))
            if decision.latency:
                time.sleep(decision.latency)
            imposed = fault_reply(decision)
            if imposed is not None:
                return imposed
            if cmdlet.lower() in self.faults.profile.refused_cmdlets:
                return refusal()
            denied = self._authorize(caller, cmdlet, decision)
            if denied is not None:
                return denied
            return self._serve(req, tenant, caller, cmdlet, params, decision)
        finally:
            self.faults.leave(service, tid)

    def _authorize(self, caller: Caller, cmdlet: str, decision: Decision) -> Reply | None:
        if MANAGE_AS_APP not in caller.roles:
            return forbidden(decision, f"The app '{caller.app_id}' lacks the {MANAGE_AS_APP} application "
                                       "permission on Office 365 Exchange Online.")
        needed = WRITE_ROLES if is_write(cmdlet) else READ_ROLES
        if not needed.intersection(caller.directory_roles):
            return forbidden(decision, f"The app '{caller.app_id}' has no Entra directory role that allows "
                                       f"'{cmdlet}' (needs one of: {', '.join(sorted(needed))}).")
        return None

    def _serve(self, req: Request, tenant: str, caller: Caller, cmdlet: str, params: dict,
               decision: Decision) -> Reply:
        digest = hashlib.sha256(json.dumps({"c": cmdlet.lower(), "p": params}, sort_keys=True,
                                           default=str).encode()).hexdigest()
        skiptoken = req.query.get("$skiptoken")
        warnings: list[str] = []
        errors: list[str] = []
        if skiptoken:
            cursor_id, _, offset_text = skiptoken.rpartition("-")
            cursor = self._cursor(cursor_id)
            if (cursor is None or not offset_text.isdigit() or cursor.client_id != caller.app_id
                    or cursor.body_digest != digest):
                return _plain_error(400, "BadRequest", "The skip token is invalid or has expired, or the body "
                                                       "differs from the request that produced it.")
            offset, rows, page_size = int(offset_text), cursor.rows, cursor.page_size
        else:
            try:
                with self.lock:
                    result = self.backend.invoke(cmdlet, params, caller)
                rows, warnings = list(result), list(getattr(result, "warnings", ()))
            except CmdletError as fail:
                short = fail.exception_type.rsplit(".", 1)[-1]
                if short == "CommandNotFoundException":
                    return refusal()
                status = STATUS_BY_EXCEPTION.get(short) or getattr(fail, "http_status", 0) or 400
                return exchange_error(status, fail.exception_type, fail.message, fail.errid)
            if decision.post_commit_drop:
                return drop_reply()  # the write happened; the client never hears so
            if cmdlet.lower() in self.faults.profile.pipeline_error_cmdlets:
                rows, errors = pipeline_failure(cmdlet, rows)
            rows = select_fields(rows, req.query.get("$select", ""))
            offset, page_size, cursor_id = 0, page_size_of(req.header("prefer")), ""
            if len(rows) > page_size:
                cursor_id = self._save_cursor(_Cursor(rows, digest, caller.app_id, page_size, time.monotonic()))
        page = rows[offset: offset + page_size]
        base = f"{req.base_url}/adminapi/beta/{quote(tenant)}"
        payload: dict = {"@odata.context": f"{base}/$metadata#Collection(Exchange.GenericHashTable)",
                         "adminapi.warnings@odata.type": "#Collection(String)",
                         "@adminapi.warnings": list(warnings), "value": page}
        if errors:
            payload["@adminapi.errors"] = errors
        if offset + page_size < len(rows):
            payload["@odata.nextLink"] = f"{base}/InvokeCommand?%24skiptoken={cursor_id}-{offset + page_size}"
        headers = {"Preference-Applied": f"odata.maxpagesize={page_size}"} if req.header("prefer") else {}
        return json_reply(200, payload, headers)

    def _save_cursor(self, cursor: _Cursor) -> str:
        cursor_id = secrets.token_urlsafe(12).replace("-", "_")
        with self._cursor_lock:
            self._cursors[cursor_id] = cursor
            while len(self._cursors) > MAX_CURSORS:
                self._cursors.popitem(last=False)
        return cursor_id

    def _cursor(self, cursor_id: str) -> _Cursor | None:
        with self._cursor_lock:
            cursor = self._cursors.get(cursor_id)
            if cursor is None or time.monotonic() - cursor.created > CURSOR_TTL:
                self._cursors.pop(cursor_id, None)
                return None
            self._cursors.move_to_end(cursor_id)
            return cursor
