"""A minimal stand-in for the sandbox's tenant state, so the HTTP side (server, tokens, faults) is tested on its
own. It implements migrator.sandbox.backend.Backend with a handful of mailboxes and two apps."""

from __future__ import annotations

import datetime as dt
import threading

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from migrator.model import EXCHANGE_ONLINE_APP_ID
from migrator.sandbox.api import CmdletError, CmdletResult, GraphError
from migrator.sandbox.backend import GRAPH_APP_ID, AppCredentials

TENANT_ID = "5e2f6a1c-0d6b-4f7e-9a51-3c1f0b8d2e11"
ADMIN_ID = "a1a1a1a1-0000-4000-8000-000000000001"
ADMIN_OID = "a1a1a1a1-0000-4000-8000-0000000000aa"
NOROLE_ID = "b2b2b2b2-0000-4000-8000-000000000002"
READER_ID = "c3c3c3c3-0000-4000-8000-000000000003"


class ManualClock:
    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t


def make_cert(cn: str = "standin-app"):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert


_CERT_CACHE: dict[str, tuple] = {}


def shared_cert():
    """One app certificate per test run: RSA key generation is the slow part of a stand-in."""
    if "app" not in _CERT_CACHE:
        _CERT_CACHE["app"] = make_cert()
    return _CERT_CACHE["app"]


class StandIn:
    tenant_id = TENANT_ID
    tenant_domain = "fabrikam.onmicrosoft.com"

    def __init__(self, *, mailboxes: int = 5, admin_secret: str = "s3cret-admin", token_lifetime: float = 3600,
                 clock: ManualClock | None = None) -> None:
        self.clock = clock or ManualClock()
        self.token_lifetime = token_lifetime
        self.key_pem, self.cert = shared_cert()
        self.apps = {
            ADMIN_ID: {"oid": ADMIN_OID, "secrets": (admin_secret,), "certs": (self.cert,),
                       "roles": {EXCHANGE_ONLINE_APP_ID: ["Exchange.ManageAsApp"],
                                 GRAPH_APP_ID: ["Application.Read.All", "AppRoleAssignment.ReadWrite.All",
                                                "User.Read.All"]},
                       "dir": frozenset({"Exchange Administrator"})},
            NOROLE_ID: {"oid": "b2b2b2b2-0000-4000-8000-0000000000bb", "secrets": ("s3cret-norole",), "certs": (),
                        "roles": {}, "dir": frozenset({"Exchange Administrator"})},
            READER_ID: {"oid": "c3c3c3c3-0000-4000-8000-0000000000cc", "secrets": ("s3cret-reader",), "certs": (),
                        "roles": {EXCHANGE_ONLINE_APP_ID: ["Exchange.ManageAsApp"]},
                        "dir": frozenset({"Global Reader"})},
        }
        self.mailboxes = [{"Name": f"user{i}", "Alias": f"user{i}", "PrimarySmtpAddress": f"user{i}@fabrikam.com",
                           "Guid": f"00000000-0000-4000-8000-{i:012d}", "RecipientTypeDetails": "UserMailbox",
                           "Department": "Sales" if i % 2 else "Finance"} for i in range(mailboxes)]
        self.writes: list[tuple[str, dict]] = []
        self.assignments: dict[str, dict] = {}
        self.lock = threading.RLock()

    # identity
    def now(self) -> float:
        return self.clock.now()

    def app(self, client_id):
        a = self.apps.get(client_id)
        if a is None:
            return None
        return AppCredentials(client_id, a["oid"], "standin", a["secrets"], a["certs"])

    def issue_claims(self, client_id, audience):
        resource = {"https://outlook.office365.com": EXCHANGE_ONLINE_APP_ID,
                    "https://graph.microsoft.com": GRAPH_APP_ID}[audience]
        now = int(self.now())
        return {"aud": audience, "tid": self.tenant_id, "appid": client_id, "oid": self.apps[client_id]["oid"],
                "roles": list(self.apps[client_id]["roles"].get(resource, [])), "iat": now, "nbf": now,
                "exp": now + int(self.token_lifetime)}

    def directory_roles(self, client_id):
        a = self.apps.get(client_id)
        return a["dir"] if a else frozenset()

    # exchange
    def invoke(self, cmdlet, params, caller):
        name = cmdlet.lower()
        if name == "get-mailbox":
            ident = params.get("Identity")
            if ident is None:
                return CmdletResult([dict(m) for m in self.mailboxes], ["standin warning"])
            rows = [dict(m) for m in self.mailboxes
                    if str(ident).lower() in (m["Name"], m["PrimarySmtpAddress"], m["Guid"])]
            if not rows:
                raise CmdletError("ManagementObjectNotFoundException",
                                  f"The operation couldn't be performed because object '{ident}' couldn't be found "
                                  f"on 'NAMPR03A001.prod.outlook.com'.")
            return CmdletResult(rows)
        if name == "set-mailbox":
            self.writes.append((cmdlet, dict(params)))
            return CmdletResult([])
        raise CmdletError("CommandNotFoundException", f"The term '{cmdlet}' is not recognized as a cmdlet.",
                          http_status=400)

    # graph
    def _sps(self):
        return [{"id": a["oid"], "appId": cid, "displayName": f"app {cid[:4]}"} for cid, a in self.apps.items()]

    def graph_service_principals(self, app_id, caller):
        return [s for s in self._sps() if app_id is None or s["appId"] == app_id.lower()]

    def graph_service_principal(self, sp_id, caller):
        for s in self._sps():
            if s["id"] == sp_id:
                return s
        raise GraphError(404, "Request_ResourceNotFound", f"Resource '{sp_id}' does not exist or one of its "
                                                          "queried reference-property objects are not present.")

    def graph_app_role_assignments(self, sp_id, caller):
        self.graph_service_principal(sp_id, caller)
        return [a for a in self.assignments.values() if a["principalId"] == sp_id]

    def graph_grant_app_role(self, sp_id, body, caller):
        self.graph_service_principal(sp_id, caller)
        aid = f"asg{len(self.assignments)}"
        row = {"id": aid, "principalId": sp_id, "resourceId": body.get("resourceId"), "appRoleId": body.get("appRoleId")}
        self.assignments[aid] = row
        self.writes.append(("grant", row))
        return row

    def graph_delete_app_role_assignment(self, sp_id, assignment_id, caller):
        if assignment_id not in self.assignments:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{assignment_id}' does not exist.")
        del self.assignments[assignment_id]

    def graph_users(self, caller):
        return [{"id": m["Guid"], "userPrincipalName": m["PrimarySmtpAddress"], "mail": m["PrimarySmtpAddress"]}
                for m in self.mailboxes]

    def timeline(self):
        return {"events": [{"kind": "write", "cmdlet": c} for c, _ in self.writes]}

    def check(self):
        return {"gaps": [], "overgrants": []}


class VerifyingSession(requests.Session):
    """A requests Session that passes `verify` on every request: REQUESTS_CA_BUNDLE overrides a Session's own
    `verify` (docs/design.md §7), a per-request one wins. Usable as msal's http_client."""

    def __init__(self, ca_bundle) -> None:
        super().__init__()
        self._ca = str(ca_bundle)

    def request(self, method, url, **kwargs):
        kwargs["verify"] = self._ca
        return super().request(method, url, **kwargs)
