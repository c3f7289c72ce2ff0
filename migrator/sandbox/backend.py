"""The one interface between the sandbox's HTTP side and its tenant state.

The HTTP modules (tokens, http_exchange, http_graph, server) talk only to a `Backend`. In production that is
`state_backend.StateBackend`, an adapter around `state.TenantState`; HTTP unit tests use a small stand-in.
Keeping the seam here lets either side change its internals without the other noticing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from migrator.model import GRAPH_APP_ID
from migrator.sandbox.api import Caller, CmdletError, CmdletResult, GraphError

EXCHANGE_RESOURCE = "https://outlook.office365.com"
GRAPH_RESOURCE = "https://graph.microsoft.com"


@dataclass(frozen=True)
class AppCredentials:
    """An app registration as the token service sees it (credentials never leave the sandbox)."""

    client_id: str
    object_id: str  # the enterprise application (service principal) object id
    display_name: str = ""
    secrets: tuple[str, ...] = ()
    certificates: tuple[x509.Certificate, ...] = ()

    def __repr__(self) -> str:  # secrets stay out of reprs and logs
        return f"AppCredentials(client_id={self.client_id!r}, secrets=<{len(self.secrets)}>)"


class Backend(Protocol):
    tenant_id: str  # GUID, lower case
    tenant_domain: str  # contoso.onmicrosoft.com

    # identity (token service)
    def app(self, client_id: str) -> AppCredentials | None: ...
    def issue_claims(self, client_id: str, audience: str) -> dict: ...  # aud tid appid oid roles iat nbf exp
    def directory_roles(self, client_id: str) -> frozenset[str]: ...
    def now(self) -> float: ...  # the sandbox clock (tokens' iat/exp are on it)

    # Exchange: rows with Microsoft's field names (+ .warnings); raises CmdletError
    def invoke(self, cmdlet: str, params: dict, caller: Caller) -> CmdletResult: ...

    # Graph (objects already in Graph's JSON shape); raise GraphError
    def graph_service_principals(self, app_id: str | None, caller: Caller) -> list[dict]: ...
    def graph_service_principal(self, sp_id: str, caller: Caller) -> dict: ...
    def graph_app_role_assignments(self, sp_id: str, caller: Caller) -> list[dict]: ...
    def graph_grant_app_role(self, sp_id: str, body: dict, caller: Caller) -> dict: ...
    def graph_delete_app_role_assignment(self, sp_id: str, assignment_id: str, caller: Caller) -> None: ...
    def graph_users(self, caller: Caller) -> list[dict]: ...
    # any other read of graph_ops.py by name (token lifetime policies, app registrations)
    def graph_call(self, op: str, *args, caller: Caller, **kwargs): ...
    # an app's own Graph call on a mailbox (graph_data.py): "ok" | "denied" | "unknown_mailbox"
    def graph_mailbox(self, claims: dict, mailbox: str, permissions: tuple[str, ...]) -> str: ...

    # debug (read-only)
    def timeline(self) -> dict: ...  # {"events": [...], ...}
    def check(self) -> dict: ...


__all__ = [
    "EXCHANGE_RESOURCE",
    "GRAPH_APP_ID",
    "GRAPH_RESOURCE",
    "AppCredentials",
    "Backend",
    "Caller",
    "CmdletError",
    "CmdletResult",
    "GraphError",
]
