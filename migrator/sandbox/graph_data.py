"""The Graph mailbox data plane of the sandbox: an app's own calls on a mailbox (`/v1.0/users/{id}/messages`,
`sendMail`, `events`, `contacts`, `mailboxSettings`), answered by the Graph/EWS access rules (mailaccess.py).

A call is served when one of the permissions that serve it (Mail.Read, Mail.ReadWrite, Mail.ReadBasic[.All] read
messages; Mail.Send sends; Calendars.*, Contacts.*, MailboxSettings.* the rest) can be used on the mailbox with the
caller's token: the token carries it and the app's access policy allows the mailbox, or an `Application ...` role
serving it has the mailbox in scope (as the data plane sees both, with their delays). Denied: 403
`ErrorAccessDenied` "Access to OData is disabled." (what Microsoft documents for a call an access policy refuses);
an unknown mailbox: 404 `ErrorInvalidUser`. No mail is stored: a served read answers an empty collection, a served
send 202. Every answer is kept (`GraphDataAttempt`) so tests and demos can replay it against the timeline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# (HTTP method, resource) -> the permissions any of which serves the call
ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "messages"): ("Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic", "Mail.ReadBasic.All"),
    ("POST", "messages"): ("Mail.ReadWrite",),
    ("POST", "sendMail"): ("Mail.Send",),
    ("GET", "events"): ("Calendars.Read", "Calendars.ReadWrite"),
    ("POST", "events"): ("Calendars.ReadWrite",),
    ("GET", "contacts"): ("Contacts.Read", "Contacts.ReadWrite"),
    ("POST", "contacts"): ("Contacts.ReadWrite",),
    ("GET", "mailboxSettings"): ("MailboxSettings.Read", "MailboxSettings.ReadWrite"),
    ("PATCH", "mailboxSettings"): ("MailboxSettings.ReadWrite",),
}
MAILBOX_PATH = re.compile(r"^users/([^/]+)/(messages|sendMail|events|contacts|mailboxSettings)$")


@dataclass(frozen=True)
class GraphDataAttempt:
    t: float
    app_id: str
    mailbox: str
    method: str
    resource: str
    token_iat: float
    token_roles: tuple[str, ...]
    verdict: str  # "ok" | "denied" | "unknown_mailbox" | "unsupported"


def permissions_for(method: str, resource: str) -> tuple[str, ...]:
    return ROUTES.get((method.upper(), resource), ())


def verdict(state, claims: dict, mailbox: str, permissions: tuple[str, ...], *, at: float | None = None) -> str:
    """"ok", "denied" or "unknown_mailbox" for a verified Graph token's call on `mailbox`."""
    if state.mailbox_by_address(mailbox) is None:
        return "unknown_mailbox"
    app_id = str(claims.get("appid") or claims.get("azp") or "")
    roles = set(claims.get("roles") or ())
    issued = float(claims.get("iat", 0))
    served = any(state.can_use_mailbox(app_id, p, mailbox, token_has=p in roles, token_issued_at=issued, at=at)
                 for p in permissions)
    return "ok" if served else "denied"
