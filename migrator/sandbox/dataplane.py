"""The data plane: could app A send (SMTP AUTH XOAUTH2) as mailbox M at time t with a given token?

docs/exchange.md §1: under the documented rule a token carrying the `SMTP.SendAsApp` role claim needs the per-mailbox
SendAs grant, a token without it needs the `Application SMTP.SendAsApp` RBAC role with M in scope. The RBAC part is
seen as configured `propagation_delay` seconds earlier (Test-ServicePrincipalAuthorization sees it at once), the
SendAs part `sendas_delay` seconds earlier (0 by default). Under
the "union" rule either path serves any token. The answer is read from the timeline, so past instants work too.
"""

from __future__ import annotations

from migrator.model import EXCHANGE_ONLINE_APP_ID, SMTP_SEND_AS_APP


def can_send_as(state, app_id: str, mailbox: str, *, token_claim: bool | None = None,
                token_issued_at: float | None = None, at: float | None = None) -> bool:
    """`token_claim`: whether the token carries SMTP.SendAsApp; when None it is read from the claim state the token
    service saw at `token_issued_at` (default: `at`). A token past its lifetime (the app's token lifetime policy,
    else the setting) never works."""
    app_id = (app_id or "").strip().lower()
    t = state.clock.now() if at is None else at
    issued = t if token_issued_at is None else token_issued_at
    if issued > t or t >= issued + state.timeline.life(app_id):
        return False  # not yet issued, or expired
    mbx = state.mailbox_by_address(mailbox)
    if mbx is None:
        return False
    if token_claim is None:  # what the token service saw at the issue (Graph replicates assignments with delay)
        token_claim = state.timeline.claim_seen_at(app_id, issued)
    return state.timeline.can_send(app_id, mbx.primary_smtp, t, token_claim=token_claim)


def can_send_with_claims(state, claims: dict, mailbox: str, *, at: float | None = None) -> bool:
    """Same, for a decoded access token (`appid`, `roles`, `iat`, `aud`): what an SMTP endpoint would check."""
    aud = str(claims.get("aud", "")).rstrip("/")
    if aud not in ("https://outlook.office365.com", "https://outlook.office.com", EXCHANGE_ONLINE_APP_ID):
        return False
    return can_send_as(state, claims.get("appid") or claims.get("azp") or "", mailbox,
                       token_claim=SMTP_SEND_AS_APP in (claims.get("roles") or ()),
                       token_issued_at=float(claims.get("iat", 0)), at=at)
