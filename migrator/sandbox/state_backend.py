"""Adapter: the HTTP side's Backend (backend.py) over the tenant state (state.TenantState, graph_ops.py)."""

from __future__ import annotations

from cryptography import x509

from migrator.sandbox.api import Caller, CmdletResult
from migrator.sandbox.backend import AppCredentials
from migrator.sandbox.state import SMTP_AUTH_DISABLED, TenantState


class StateBackend:
    def __init__(self, state: TenantState) -> None:
        self.state = state
        self.tenant_id = state.tenant_id.lower()
        self.tenant_domain = state.domain
        self.admin_client_id = state.admin_app_id
        self._certs: dict[str, tuple[x509.Certificate, ...]] = {}
        # The grant set the timeline checker compares against: effective SendAs grants when the sandbox started.
        self.original_grants = state.sendas_grants()
        # What the apps could send as when the sandbox started: SendAs, and FullAccess with the SMTP claim.
        self.original_reach = state.smtp_reach_grants()

    # ---- identity ----------------------------------------------------------------------------------------
    def app(self, client_id: str) -> AppCredentials | None:
        app = self.state.find_client(client_id)
        if app is None:
            return None
        pem = app.certificate_pem or ""
        if pem and pem not in self._certs:
            self._certs[pem] = tuple(x509.load_pem_x509_certificates(pem.encode()))
        return AppCredentials(app.app_id, app.object_id, app.display_name,
                              (app.secret,) if app.secret else (), self._certs.get(pem, ()))

    def issue_claims(self, client_id: str, audience: str) -> dict:
        return self.state.issue_token(client_id, audience)

    def directory_roles(self, client_id: str) -> frozenset[str]:
        app = self.state.find_client(client_id)
        return frozenset(app.directory_roles) if app else frozenset()

    def now(self) -> float:
        return self.state.clock.now()

    # ---- Exchange and Graph ------------------------------------------------------------------------------
    def invoke(self, cmdlet: str, params: dict, caller: Caller) -> CmdletResult:
        return self.state.invoke(cmdlet, params, caller=caller)

    def graph_service_principals(self, app_id: str | None, caller: Caller) -> list[dict]:
        flt = None if app_id is None else "appId eq '{}'".format(app_id.replace("'", "''"))
        return self.state.graph("list_service_principals", caller=caller, filter=flt)

    def graph_service_principal(self, sp_id: str, caller: Caller) -> dict:
        return self.state.graph("get_service_principal", sp_id, caller=caller)

    def graph_app_role_assignments(self, sp_id: str, caller: Caller) -> list[dict]:
        return self.state.graph("list_app_role_assignments", sp_id, caller=caller)

    def graph_grant_app_role(self, sp_id: str, body: dict, caller: Caller) -> dict:
        return self.state.graph("grant_app_role", sp_id, body, caller=caller)

    def graph_delete_app_role_assignment(self, sp_id: str, assignment_id: str, caller: Caller) -> None:
        self.state.graph("delete_app_role_assignment", sp_id, assignment_id, caller=caller)

    def graph_users(self, caller: Caller) -> list[dict]:
        return self.state.graph("list_users", caller=caller)

    # ---- SMTP submission (sandbox/smtp.py) ------------------------------------------------------------------
    def graph_mailbox(self, claims: dict, mailbox: str, permissions: tuple[str, ...]) -> str:
        """An app's Graph call on a mailbox (graph_data.py): "ok", "denied" or "unknown_mailbox"."""
        from migrator.sandbox.graph_data import verdict

        with self.state.lock:
            return verdict(self.state, claims, mailbox, permissions)

    def smtp_auth(self, claims: dict, mailbox: str, *, at: float | None = None) -> str:
        """AUTH XOAUTH2 as `mailbox` with a verified token: "ok", "denied", "disabled_tenant" or "disabled_mailbox"."""
        from migrator.sandbox.dataplane import can_send_with_claims

        with self.state.lock:
            rec = self.state.mailbox_by_address(mailbox)
            if rec is None:
                return "denied"
            own = rec.extra.get(SMTP_AUTH_DISABLED)
            if own is True:
                return "disabled_mailbox"
            if own is None and self.state.smtp_auth_disabled:
                return "disabled_tenant"
            return "ok" if can_send_with_claims(self.state, claims, rec.primary_smtp, at=at) else "denied"

    def smtp_may_send_from(self, mailbox: str, from_address: str) -> bool:
        """May a session authenticated as `mailbox` send with From `from_address`? Its own addresses, or a mailbox
        it (the authenticated mailbox's user) holds an allowed SendAs grant on."""
        with self.state.lock:
            own = self.state.mailbox_by_address(mailbox)
            target = self.state.mailbox_by_address(from_address)
            if own is None or target is None:
                return False
            if own.guid == target.guid:
                return True
            rows = [r for r in self.state.recipient_permissions.for_mailbox(target.guid)
                    if r.trustee == ("recipient", own.guid) and "SendAs" in r.access_rights]
            return any(not r.deny for r in rows) and not any(r.deny for r in rows)

    def smtp_note(self, **data) -> None:
        with self.state.lock:
            self.state.timeline.note(self.state.clock.now(), "smtp", **data)

    def graph_call(self, op: str, *args, caller: Caller, **kwargs):
        return self.state.graph(op, *args, caller=caller, **kwargs)

    # ---- debug -------------------------------------------------------------------------------------------
    def timeline(self) -> dict:
        with self.state.lock:
            return self.state.timeline.to_dict()

    def check(self) -> dict:
        with self.state.lock:
            return self.state.check(self.original_grants).to_dict()
