"""Apply a plan batch by batch without an access gap or an over-grant, resumably; undo a batch exactly.

journal.py (SQLite journal and lock) · context.py (guarded clients, settings, control) · steps.py (idempotent
ensure steps, drift check) · runner.py (execute) · rollback.py · status.py. `connect()` builds the tenant clients
from a connection profile; `check_permissions()` is the preflight that stops a run before any write when the app
lacks a permission the run needs.
"""

from __future__ import annotations

from pathlib import Path

from migrator.errors import TenantError
from migrator.model import EXCHANGE_MANAGE_AS_APP

WRITE_ROLE_IDS = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "29232cdf-9323-42fd-ade2-1d097af3e4de": "Exchange Administrator",
}
EXCHANGE_MANAGE = EXCHANGE_MANAGE_AS_APP
GRAPH_READ = {"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All",
              "AppRoleAssignment.ReadWrite.All"}
GRAPH_WRITE = {"AppRoleAssignment.ReadWrite.All", "Directory.ReadWrite.All"}


class Connection:
    """The tenant clients of one profile, with the limiter and token provider behind them (for the benchmark)."""

    def __init__(self, profile_path: Path, *, limiter=None) -> None:
        from migrator.exchange.auth import TokenProvider
        from migrator.exchange.exo import ExchangeClient
        from migrator.exchange.graph import GraphClient
        from migrator.exchange.http import ApiSession
        from migrator.exchange.profile import load_profile
        from migrator.exchange.ratelimit import AdaptiveLimiter

        self.profile = load_profile(profile_path)
        self.tokens = TokenProvider(self.profile)
        self.limiter = limiter or AdaptiveLimiter()
        self.session = ApiSession(self.profile, self.tokens, self.limiter)
        self.exo = ExchangeClient(self.session, self.profile)
        self.graph = GraphClient(self.session, self.profile)


def _claims(token: str) -> dict:
    import jwt

    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}


def check_permissions(conn: Connection, *, graph_write: bool = False, exchange: bool = True) -> None:
    """Stop before any write when the app's tokens lack what the run needs (docs/exchange.md §4 and §5).

    Reads the `roles` (application permissions) and `wids` (Entra directory roles) claims of the tokens the run
    will use. A token the tool cannot decode (opaque, as some clouds issue) is not judged: the calls will tell.
    The run itself needs Exchange.ManageAsApp, the Exchange role and a Graph read permission; `graph_write`
    (AppRoleAssignment.ReadWrite.All) is demanded only of the profile that does the cut-over's Entra writes
    (`--cutover-profile`, checked when the cut-over first needs it, with `exchange=False`): without it the
    cut-over is handed over to a privileged admin (entra.py).
    """
    problems = []
    if exchange:
        exo = _claims(conn.tokens.token(conn.profile.exchange_resource))
        if exo:
            if EXCHANGE_MANAGE not in set(exo.get("roles") or ()):
                problems.append(f"the app lacks the application permission {EXCHANGE_MANAGE} on Office 365 Exchange "
                                "Online (grant it with admin consent)")
            if not set(exo.get("wids") or ()) & set(WRITE_ROLE_IDS):
                problems.append("the app holds no Entra role that may change Exchange (assign it Exchange "
                                "Administrator)")
    graph = _claims(conn.tokens.token(conn.profile.graph_resource))
    if graph:
        roles = set(graph.get("roles") or ())
        if not roles & GRAPH_READ:
            problems.append("the app cannot read service principals in Microsoft Graph (grant Application.Read.All)")
        if graph_write and not roles & GRAPH_WRITE:
            problems.append("the app cannot change app-role assignments in Microsoft Graph, which the cut-over and "
                            "its rollback need (grant AppRoleAssignment.ReadWrite.All to this profile's app)")
    if problems:
        who = f"profile {conn.profile.name!r}: " if not exchange else ""
        raise TenantError(f"{who}missing permission, nothing was written: " + "; ".join(problems))


def can_write_entra(conn: Connection) -> bool | None:
    """Whether the profile's Graph token carries a permission to change app-role assignments (None: the token
    cannot be read, so only the call will tell)."""
    graph = _claims(conn.tokens.token(conn.profile.graph_resource))
    if not graph:
        return None
    return bool(set(graph.get("roles") or ()) & GRAPH_WRITE)
