"""The sandbox's SMTP submission endpoint: STARTTLS, then `AUTH XOAUTH2`, answered from the tenant's data plane.

What Exchange Online's smtp.office365.com:587 does for an app that signs in with client credentials, as far as the
public record goes (docs/exchange.md §1, SMTP):
- the client must STARTTLS before AUTH; XOAUTH2's initial response is base64 of
  `user=<mailbox>\\x01auth=Bearer <token>\\x01\\x01`, the token issued for `https://outlook.office365.com`;
- `235 2.7.0 Authentication successful` when the app may send as that mailbox *now* (the same data plane the
  timeline checker reads: claim, legacy grants, propagated RBAC, token age), `535 5.7.3 Authentication
  unsuccessful` otherwise (a bad, expired or foreign token too), `535 5.7.139` when SMTP AUTH is disabled for the
  tenant or the mailbox (the mailbox's own setting wins when it is set);
- a message whose envelope or header From is another mailbox, which the authenticated one holds no SendAs on, is
  refused at the end of DATA with `554 5.2.0 ...SendAsDeniedException...`; accepted messages are discarded (the
  last few are kept in memory for tests).
Every AUTH answer is recorded (`attempts`, and a "smtp" note on the timeline) so a test can compare what the
protocol said with what the timeline predicts. Tokens never reach a log or a record.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import email
import email.utils
import logging
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from migrator.sandbox.backend import EXCHANGE_RESOURCE
from migrator.sandbox.tokens import TokenRejected, TokenService

log = logging.getLogger("migrator.sandbox.smtp")


class _NoLoginDataWarning(logging.Filter):
    """aiosmtpd warns that Session.login_data is deprecated each time it sets it itself, on every sign-in."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_NoLoginDataWarning())

HOSTNAME = "sandbox.outlook.office365.com"
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_DENIED = "535 5.7.3 Authentication unsuccessful [sandbox]"
AUTH_DISABLED = ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
                 "{where}. Visit https://aka.ms/smtp_auth_disabled for more information. [sandbox]")
BASIC_DISABLED = "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [sandbox]"
SEND_AS_DENIED = ("554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; "
                  "Failed to process message due to a permanent exception with message [BeginDiagnosticData]"
                  "Cannot submit message. [sandbox]")
KEPT_MESSAGES = 50
KEPT_ATTEMPTS = 100_000


class SmtpBackend(Protocol):
    """What the SMTP endpoint asks the tenant (implemented by state_backend.StateBackend)."""

    # "ok" | "denied" | "disabled_tenant" | "disabled_mailbox"
    def smtp_auth(self, claims: dict, mailbox: str, *, at: float | None = None) -> str: ...
    def smtp_may_send_from(self, mailbox: str, from_address: str) -> bool: ...
    def smtp_note(self, **data: Any) -> None: ...  # record an answer on the timeline
    def now(self) -> float: ...


@dataclass(frozen=True)
class SmtpAttempt:
    """One AUTH answer: when (sandbox clock), which app, as which mailbox, and the reply's first three digits."""

    t: float
    app_id: str
    mailbox: str
    code: int
    token_iat: float | None  # None: the token itself was refused (bad signature, expired, another audience)
    token_claim: bool | None
    verdict: str = ""  # "ok" | "denied" | "disabled_tenant" | "disabled_mailbox"


def parse_xoauth2(blob: bytes) -> tuple[str, str] | None:
    """(user, token) from an XOAUTH2 initial response (already base64-decoded), or None when malformed."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
    user, auth = fields.get("user", "").strip(), fields.get("auth", "")
    scheme, _, token = auth.partition(" ")
    if not user or scheme.lower() != "bearer" or not token.strip():
        return None
    return user, token.strip()


class _Handler:
    """aiosmtpd handler: the `auth_XOAUTH2` mechanism and the DATA decision."""

    def __init__(self, endpoint: SmtpEndpoint) -> None:
        self.endpoint = endpoint

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            raw: Any = args[1]
        else:
            raw = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(raw, bytes):
                return AuthResult(success=False, handled=False, message=AUTH_DENIED)
        try:
            blob = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return AuthResult(success=False, handled=False, message=AUTH_DENIED)
        parsed = parse_xoauth2(blob)
        if parsed is None:
            return AuthResult(success=False, handled=False, message=AUTH_DENIED)
        mailbox, token = parsed
        verdict = self.endpoint.authenticate(mailbox, token)
        if verdict == "ok":
            return AuthResult(success=True, auth_data=mailbox.lower(), message=AUTH_OK)
        if verdict.startswith("disabled"):
            where = "Tenant" if verdict == "disabled_tenant" else "Mailbox"
            return AuthResult(success=False, handled=False, message=AUTH_DISABLED.format(where=where))
        return AuthResult(success=False, handled=False, message=AUTH_DENIED)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return AuthResult(success=False, handled=False, message=BASIC_DISABLED)  # basic auth is retired

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        mailbox = str(session.auth_data or "")
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content or "").encode()
        header_from = email.utils.parseaddr(email.message_from_bytes(content).get("From", ""))[1]
        for address in {str(envelope.mail_from or ""), header_from} - {""}:
            if not self.endpoint.may_send_from(mailbox, address):
                return SEND_AS_DENIED
        message_id = str(uuid.uuid4())
        self.endpoint.keep(mailbox, envelope, message_id)
        return f"250 2.0.0 OK <{message_id}@{HOSTNAME}> [Hostname={HOSTNAME}]"


class _Smtp(SMTP):
    """aiosmtpd's SMTP with room for OAuth: an XOAUTH2 initial response (a JWT in base64) is a few kB, more than the
    RFC 5321 line limit aiosmtpd enforces by default; Exchange Online accepts it on one line."""

    line_length_limit = 16 * 1024

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        # Per connection: aiosmtpd keeps this on the class and clears and grows it as sessions go.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit,
                                                           {"AUTH": self.line_length_limit})


class _Controller(Controller):
    """aiosmtpd's threaded controller on a socket bound beforehand, so port 0 (any free port) works."""

    def __init__(self, handler: _Handler, sock: socket.socket, **smtp_kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **smtp_kwargs)
        self._sock = sock

    def factory(self) -> SMTP:
        return _Smtp(self.handler, **self.SMTP_kwargs)

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


class SmtpEndpoint:
    """SMTP submission on `host`:`port` (STARTTLS with the sandbox's certificate), in a background thread."""

    def __init__(self, backend: SmtpBackend, tokens: TokenService, tls_context: ssl.SSLContext,
                 lock: threading.RLock, host: str = "127.0.0.1", port: int = 0) -> None:
        self.backend, self.tokens, self.lock = backend, tokens, lock
        self.attempts: deque[SmtpAttempt] = deque(maxlen=KEPT_ATTEMPTS)
        self.messages: deque[dict] = deque(maxlen=KEPT_MESSAGES)
        sock = socket.create_server((host, port), reuse_port=False)
        self.host, self.port = sock.getsockname()[:2]
        self._controller = _Controller(
            _Handler(self), sock, server_hostname=HOSTNAME, ident="Microsoft ESMTP MAIL Service (migrator sandbox)",
            tls_context=tls_context, require_starttls=True, auth_required=True, auth_require_tls=True,
            auth_exclude_mechanism=["PLAIN"], data_size_limit=35 * 1024 * 1024, enable_SMTPUTF8=False)

    # ---- decisions (called from the endpoint's event-loop thread) -------------------------------------------
    def authenticate(self, mailbox: str, token: str) -> str:
        with self.lock:
            try:
                claims: dict | None = self.tokens.verified_claims(f"Bearer {token}", EXCHANGE_RESOURCE)
            except TokenRejected:
                claims = None
            at = self.backend.now()  # one instant for the decision and its record, so a replay asks the same
            verdict = "denied" if claims is None else self.backend.smtp_auth(claims, mailbox, at=at)
            code = 235 if verdict == "ok" else 535
            app_id = str((claims or {}).get("appid", ""))
            attempt = SmtpAttempt(at, app_id, mailbox.lower(), code,
                                  float(claims["iat"]) if claims and "iat" in claims else None,
                                  None if claims is None else "SMTP.SendAsApp" in (claims.get("roles") or ()),
                                  verdict)
            self.attempts.append(attempt)
            self.backend.smtp_note(app_id=app_id, mailbox=mailbox.lower(), code=code, verdict=verdict)
        return verdict

    def may_send_from(self, mailbox: str, address: str) -> bool:
        with self.lock:
            return self.backend.smtp_may_send_from(mailbox, address)

    def keep(self, mailbox: str, envelope: Envelope, message_id: str) -> None:
        self.messages.append({"id": message_id, "mailbox": mailbox, "mail_from": envelope.mail_from,
                              "rcpt_tos": list(envelope.rcpt_tos), "size": len(envelope.content or b""),
                              "time": time.time()})

    # ---- life cycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        try:
            self._controller.stop(no_assert=True)
        except (RuntimeError, asyncio.CancelledError):  # already stopped, or its loop is gone
            pass
        finally:
            self._controller._sock.close()
