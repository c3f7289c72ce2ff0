"""Typed tenant errors (INTERNALS.md §5). Each carries what an admin needs to act on it, never a secret.

`NotFound` is raised only for a definite "absent" answer (ManagementObjectNotFoundException, Graph 404
Request_ResourceNotFound, and for Remove-DistributionGroupMember MemberNotFoundException: that member is not in the
group); every other failure is some other ApiError, so a failed read is never "absent".
"""

from __future__ import annotations

import json
from typing import Any

from migrator.errors import TenantError
from migrator.exchange.redact import redact, redact_params


class ApiError(TenantError):
    """A call to the tenant failed. Attributes: status, code, exception_type, errid, text, operation, params."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "", exception_type: str = "",
                 errid: str = "", text: str = "", operation: str = "", params: dict | None = None,
                 hint: str = "") -> None:
        self.status, self.code, self.exception_type = status, code, exception_type
        self.errid, self.text, self.operation = errid, redact(text), operation
        self.params = redact_params(params or {})
        self.hint = hint
        parts = [redact(message)]
        if operation:
            parts.insert(0, f"{operation}:")
        if self.params:
            parts.append(f"(parameters {json.dumps(self.params, sort_keys=True, default=str)})")
        if hint:
            parts.append(f"-- {hint}")
        super().__init__(" ".join(parts))


class NotFound(ApiError):
    """The object definitely does not exist (ManagementObjectNotFoundException or Graph 404)."""


class AlreadyExists(ApiError):
    """ADObjectAlreadyExistsException: idempotent success once the caller verified it is its own object."""


class MemberNotFound(NotFound):
    """Remove-DistributionGroupMember on a recipient that is not a direct member (MemberNotFoundException): the
    removal is already done. Unlike a plain NotFound it never means the group or the recipient is missing."""


class MemberAlreadyExists(AlreadyExists):
    """Add-DistributionGroupMember on a recipient that already is a direct member (MemberAlreadyExistsException):
    the addition is already done."""


# Exchange exception types (short names) with a typed error of their own, whatever the HTTP status: (class, the
# words the message starts with). The member ones: docs/exchange.md §3.
TYPED_EXCEPTIONS: dict[str, tuple[type[ApiError], str]] = {
    "ManagementObjectNotFoundException": (NotFound, "not found"),
    "ADObjectAlreadyExistsException": (AlreadyExists, "already exists"),
    "MemberNotFoundException": (MemberNotFound, "not a member"),
    "MemberAlreadyExistsException": (MemberAlreadyExists, "already a member"),
}


class AuthError(ApiError):
    """401 or a token failure: wrong secret/certificate, unknown app or tenant, consent missing."""


class Forbidden(ApiError):
    """403: the app lacks an API permission (Exchange.ManageAsApp, Graph app roles) or an Entra role."""


class CmdletRefused(Forbidden):
    """Exchange refused to run a cmdlet: 403 with a NUL-byte body labelled `Content-Encoding: gzip` (what the
    endpoint answers for an unknown cmdlet, one not offered through InvokeCommand, or one the app's role does not
    include). `.cmdlet` names it. Raised only after the short NUL-403 retry budget: on the wire a transient NUL 403
    and a refusal look the same. Callers with an alternative cmdlet fall back on it."""

    def __init__(self, message: str, *, cmdlet: str = "", **kw: Any) -> None:
        self.cmdlet = cmdlet
        super().__init__(message, **kw)


class ReplyErrors(ApiError):
    """A 200 answer that carries `@adminapi.errors` (e.g. a pipeline that failed part-way): the call failed.
    `.errors` holds their texts (redacted); `.rows` what the answer held besides (never to be taken as complete)."""

    def __init__(self, message: str, *, errors: list[str] | None = None, **kw: Any) -> None:
        self.errors = [redact(e) for e in (errors or [])]
        super().__init__(message, **kw)


class Throttled(ApiError):
    """429 / 503 / the concurrency answer kept coming after every retry."""


class Unreachable(ApiError):
    """No HTTP answer: DNS, connection refused or reset, timeout, TLS verification failure. `.kind` says which
    (tls, dns, refused, timeout, dropped), classified by exception type."""

    def __init__(self, message: str, *, kind: str = "", **kw: Any) -> None:
        self.kind = kind
        super().__init__(message, **kw)


class ServerError(ApiError):
    """5xx (or 408) that outlived the retries."""


def parse_error_body(body: bytes | str | None) -> dict[str, str]:
    """Parse an Exchange REST or Graph error body into code / message / errid / exception_type / text.

    Exchange puts `<ErrId>|<Exception.Type>|<text>` in error.details[].message; Graph has error.code/message.
    A body that is not JSON (the 403 NUL bytes, an HTML proxy page, plain text) gives its printable text only.
    """
    out = {"code": "", "message": "", "errid": "", "exception_type": "", "text": ""}
    if body is None:
        return out
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    printable = "".join(ch for ch in raw if ch.isprintable() or ch in " \t").strip()
    data: Any = None
    if printable.startswith("{"):
        try:
            data = json.loads(printable)
        except ValueError:
            data = None
    if not isinstance(data, dict) or not isinstance(data.get("error"), dict):
        out["text"] = printable[:500]
        out["message"] = out["text"]
        return out
    err = data["error"]
    out["code"] = str(err.get("code") or "")
    out["message"] = str(err.get("message") or "")
    candidates: list[str] = []
    for detail in err.get("details") or []:
        if isinstance(detail, dict) and detail.get("message"):
            candidates.append(str(detail["message"]))
    inner = err.get("innererror") or err.get("innerError") or {}
    if isinstance(inner, dict):
        internal = inner.get("internalexception") or {}
        if isinstance(internal, dict) and internal.get("message"):
            candidates.append(str(internal["message"]))
        if inner.get("message"):
            candidates.append(str(inner["message"]))
    candidates.append(out["message"])
    for cand in candidates:
        pieces = cand.split("|", 2)
        if len(pieces) == 3 and "Exception" in pieces[1]:
            out["errid"], out["exception_type"], out["text"] = (p.strip() for p in pieces)
            break
    if not out["exception_type"]:
        for cand in candidates:  # some answers name the type inline: "...ManagementObjectNotFoundException: ..."
            for token in cand.replace(":", " ").replace("|", " ").split():
                if token.endswith("Exception"):
                    out["exception_type"] = token.rsplit(".", 1)[-1] if "." in token else token
                    break
            if out["exception_type"]:
                break
        out["text"] = out["message"]
    return out


def short_type(exception_type: str) -> str:
    """`Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException` -> the last name."""
    return (exception_type or "").rsplit(".", 1)[-1]
