"""One SMTP AUTH probe, as an app's own relay would sign in: STARTTLS, `AUTH XOAUTH2`, then `MAIL FROM` and `RSET`.

Nothing is ever sent: the probe stops before RCPT/DATA. The reply codes tell apart what matters to a migration
(docs/exchange.md §1, SMTP): 235 signed in; 535 5.7.3 no permission for that mailbox (also while a change has
not propagated); 535 5.7.139 SMTP AUTH disabled for the tenant or the mailbox. The token is a secret: it is never
logged and never part of a result or an error message.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from dataclasses import dataclass

# What each answer means for the question "can this app send as this mailbox?"
GRANTED = "granted"  # 235 at AUTH (and MAIL FROM accepted)
DENIED = "denied"  # 535 5.7.3
DISABLED = "smtp-auth-disabled"  # 535 5.7.139
ERROR = "error"  # anything else: the probe could not tell (network, TLS, unexpected code)


@dataclass(frozen=True)
class ProbeAnswer:
    """What the server said. `code`/`text` are of the deciding reply (AUTH, or MAIL FROM after a 235)."""

    outcome: str  # GRANTED | DENIED | DISABLED | ERROR
    code: int
    text: str
    stage: str  # "connect" | "starttls" | "auth" | "mail"

    @property
    def enhanced(self) -> str:
        """The enhanced status code (e.g. "5.7.3"), when the reply has one."""
        parts = self.text.split(maxsplit=1)
        return parts[0] if parts and parts[0].count(".") == 2 and parts[0][0].isdigit() else ""


def xoauth2_initial_response(mailbox: str, token: str) -> str:
    """Base64 of `user=<mailbox>^Aauth=Bearer <token>^A^A` (the XOAUTH2 initial client response)."""
    raw = f"user={mailbox}\x01auth=Bearer {token}\x01\x01".encode()
    return base64.b64encode(raw).decode("ascii")


def classify_auth(code: int, text: str) -> str:
    if code == 235:
        return GRANTED
    if code == 535 and "5.7.139" in text:
        return DISABLED
    if code == 535:
        return DENIED
    return ERROR


def probe(host: str, port: int, mailbox: str, token: str, *, ca_bundle: str | None = None,
          timeout: float = 30.0, local_hostname: str | None = None) -> ProbeAnswer:
    """Sign in as `mailbox` with `token` and try `MAIL FROM:<mailbox>`; then RSET and QUIT. Never raises for a
    server's answer; a network or TLS failure comes back as an ERROR answer naming the stage."""
    context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    stage = "connect"
    try:
        with smtplib.SMTP(host, port, timeout=timeout, local_hostname=local_hostname) as client:
            client.ehlo()
            stage = "starttls"
            code, reply = client.starttls(context=context)
            if code != 220:
                return ProbeAnswer(ERROR, code, _text(reply), stage)
            client.ehlo()
            stage = "auth"
            code, reply = client.docmd("AUTH", "XOAUTH2 " + xoauth2_initial_response(mailbox, token))
            if code == 334:  # a challenge instead of a verdict: answer it empty, as XOAUTH2 clients do
                code, reply = client.docmd("")
            outcome = classify_auth(code, _text(reply))
            if outcome != GRANTED:
                return ProbeAnswer(outcome, code, _text(reply), stage)
            stage = "mail"
            code, reply = client.docmd("MAIL", f"FROM:<{mailbox}>")
            client.docmd("RSET")
            if code != 250:
                return ProbeAnswer(ERROR, code, _text(reply), stage)
            return ProbeAnswer(GRANTED, 235, "2.7.0 Authentication successful", "auth")
    except (TimeoutError, smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return ProbeAnswer(ERROR, 0, f"{type(exc).__name__}: {exc}", stage)


_SEND_REFUSALS = (smtplib.SMTPDataError, smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused)


@dataclass(frozen=True)
class SendAnswer:
    """A real send: the AUTH reply, then the reply to the message (0 when it never got that far)."""

    auth_code: int
    send_code: int
    text: str  # the last reply's text

    @property
    def sent(self) -> bool:
        return self.auth_code == 235 and self.send_code == 250


def send_message(host: str, port: int, mailbox: str, token: str, *, to: str, subject: str, body: str,
                 ca_bundle: str | None = None, timeout: float = 30.0) -> SendAnswer:
    """Sign in as `mailbox` and send one short message from it to `to`, as the app's relay would. For the sandbox
    (which keeps and discards it) and for tests; never used against a real tenant by the tool's own commands."""
    from email.message import EmailMessage

    context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = mailbox, to, subject
    msg.set_content(body)
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            client.starttls(context=context)
            client.ehlo()
            code, reply = client.docmd("AUTH", "XOAUTH2 " + xoauth2_initial_response(mailbox, token))
            if code != 235:
                return SendAnswer(code, 0, _text(reply))
            try:
                client.send_message(msg, from_addr=mailbox, to_addrs=[to])
            except _SEND_REFUSALS as exc:
                return SendAnswer(235, getattr(exc, "smtp_code", 0), _text(getattr(exc, "smtp_error", b"")))
            return SendAnswer(235, 250, "2.0.0 OK")
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        return SendAnswer(0, 0, f"{type(exc).__name__}: {exc}")


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
